"""A policy server for a two-robot WallPolicy: the robots are in the metadata and the contract, each robot's
observation gets its own chunk width, an unknown or missing robot name is a clear error."""

import numpy as np
import pytest

import wall_robots as wr
from wall_core.policy import WallPolicy
from wall_core.processing import build_pipeline, relative_dims

H = 4


@pytest.fixture(scope="module")
def policy(stats_box, two_robot_model):
    model, specs = two_robot_model(H)
    stats = {
        "aloha": {
            "observation.state": stats_box([-2] * 14, [2] * 14),
            "action": stats_box([-1] * 14, [1] * 14),
        },
        "metaworld": {
            "observation.state": stats_box([0] * 39, [1] * 39),
            "action": stats_box([-1] * 4, [1] * 4),
        },
    }
    rel = {"aloha": relative_dims(specs["aloha"], True)}
    return WallPolicy(model, build_pipeline(model, stats=stats, embodiments=specs, relative=rel))


def _obs(robot):
    n = {"aloha": 14, "metaworld": 39}[robot]
    return {"dataset": robot, "task": "go", "observation.state": np.full(n, 0.5, np.float32),
            "observation.images.corner": np.full((64, 64, 3), 7, np.uint8)}  # fmt: skip


def test_contract_names_each_robot_and_its_widths(policy):
    contracts = policy.contract()
    assert sorted(contracts) == ["aloha", "metaworld"]
    assert contracts["aloha"].action_dim == 14 and contracts["metaworld"].action_dim == 4
    assert contracts["metaworld"].features["observation.state"].shape == (39,)
    contracts["aloha"].validate(
        {**_obs("aloha"), "observation.images.corner": np.zeros((3, 48, 80), np.uint8)}
    )
    with pytest.raises(
        wr.ObservationError, match="'observation.state': got shape \\[39\\]; expected float32 \\[14\\]"
    ):
        contracts["aloha"].validate({**_obs("metaworld"), "dataset": "aloha"})


def test_server_serves_both_robots_and_refuses_unknown_ones(policy):
    with wr.PolicyServer(policy, key_map=policy.key_map) as server:
        with wr.PolicyClient(port=server.port) as client:
            assert client.metadata["robots"] == ["aloha", "metaworld"]
            assert client.metadata["observation_contract"]["aloha"]["action_dim"] == 14
            a = client.infer(_obs("aloha"))["actions"]
            m = client.infer(_obs("metaworld"))["actions"]
        assert np.asarray(a).shape == (H, 14) and np.asarray(m).shape == (H, 4)
        assert np.isfinite(a).all() and np.isfinite(m).all()
        with (
            wr.PolicyClient(port=server.port) as client,
            pytest.raises(
                RuntimeError,
                match="unknown robot 'ur5' under 'dataset'; this policy drives \\['aloha', 'metaworld'\\]",
            ),
        ):
            client.infer({**_obs("aloha"), "dataset": "ur5"})
        with (
            wr.PolicyClient(port=server.port) as client,
            pytest.raises(
                RuntimeError, match="drives robots \\['aloha', 'metaworld'\\]: name one under 'dataset'"
            ),
        ):
            client.infer({k: v for k, v in _obs("aloha").items() if k != "dataset"})
    with pytest.raises(KeyError, match="unknown dataset / robot 'ur5'"):
        policy.infer({**_obs("aloha"), "dataset": "ur5"})  # in process, the pipeline's own check
