"""The observation contract a :class:`~wall_core.policy.WallPolicy` publishes, one per robot it drives, in
wall-robots' form (what :class:`wall_robots.PolicyServer` checks and sends in its metadata)."""

from __future__ import annotations

import wall_robots

from .processing import KeyMapping, ObservationContract, Pipeline

__all__ = ["pipeline_contracts", "pipeline_key_map"]
ANY_IMAGE = (-1, -1, -1)  # the image step takes uint8 [h, w, 3] or [3, h, w] of any size


def pipeline_contracts(pipeline: Pipeline) -> dict[str, wall_robots.ObservationContract] | None:
    """``{robot (dataset) name: ObservationContract}`` from the pipeline's contract step (None without one).

    Each robot: its cameras (uint8, any size, either channel layout), ``task`` (str), ``observation.state``
    float [S_robot] when it has state dims; chunks [action_horizon, A_robot] (no declared bounds). Keys the
    key-mapping step drops (LeRobot's bookkeeping columns) and the robot name ``dataset`` are allowed extras.
    """
    try:
        step = pipeline.find(ObservationContract)
    except KeyError:
        return None
    try:
        dropped = tuple(pipeline.find(KeyMapping).drop)
    except KeyError:
        dropped = ()
    out = {}
    for robot, dims in step.robots.items():
        feats = {c: wall_robots.FeatureSpec(ANY_IMAGE, "uint8") for c in step.cameras}
        feats["task"] = wall_robots.FeatureSpec((), "str")
        if dims["state_dim"]:
            feats["observation.state"] = wall_robots.FeatureSpec((dims["state_dim"],), "float32")
        out[robot] = wall_robots.ObservationContract(
            robot, feats, step.action_horizon, dims["action_dim"], extra_keys=("dataset", *dropped)
        )
    return out


def pipeline_key_map(pipeline: Pipeline) -> dict[str, str]:
    """The pipeline's renames (sender name -> our name, e.g. openpi's ``observation/image``), for the server
    to apply before it checks an observation against the contract."""
    try:
        return dict(pipeline.find(KeyMapping).rename)
    except KeyError:
        return {}
