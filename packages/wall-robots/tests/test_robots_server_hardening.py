"""Server hardening (issue 19, finding 10) and the observation contract in the server (issue 18).

Loopback only; every wait is bounded."""

import logging
import socket
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import wall_robots as wr


class StatePolicy:
    """Echoes 2 * state as a [3, S] chunk; ``contract`` optional; ``fail`` raises that exception."""

    def __init__(self, contract=None, fail=None, scale=2.0):
        self._contract, self.fail, self.scale = contract, fail, scale

    def infer(self, obs):
        if self.fail is not None:
            raise self.fail
        state = np.asarray(obs.get("observation.state", np.zeros(2)), np.float64)
        return {"actions": np.tile(state * self.scale, (3, 1))}

    def reset(self):
        pass

    def contract(self):
        return self._contract


def arm_contract(robot="arm"):
    return wr.ObservationContract(
        robot=robot,
        features={
            "observation.state": wr.FeatureSpec((2,), "float32", (-10, 10), names=("j0", "j1")),
            "observation.images.front": wr.FeatureSpec((8, 8, 3), "uint8", (0, 255)),
            "task": wr.FeatureSpec((), "str"),
        },
        action_horizon=3,
        action_dim=2,
        action_low=(-5.0, -5.0),
        action_high=(5.0, 5.0),
    )


def good_obs(**over):
    obs = {
        "observation.state": np.array([1.0, -1.0], np.float32),
        "observation.images.front": np.zeros((8, 8, 3), np.uint8),
        "task": "pick",
    }
    obs.update(over)
    return obs


def refused(port, obs, **kw):
    """Send ``obs`` on a fresh connection; return the server's error text (asserting close 1011)."""
    with connect(f"ws://127.0.0.1:{port}", max_size=None, open_timeout=5, **kw) as ws:
        ws.recv(timeout=5)
        ws.send(wr.packb(obs))
        err = ws.recv(timeout=5)
        assert isinstance(err, str)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1011
    return err


def test_public_bind_refused_unless_allowed_and_warned(caplog):
    with pytest.raises(ValueError, match="allow_public=True"):
        wr.PolicyServer(StatePolicy(), host="0.0.0.0")
    with pytest.raises(ValueError, match="not a loopback"):
        wr.PolicyServer(StatePolicy(), host="192.168.1.20")
    with caplog.at_level(logging.WARNING, logger="wall_robots"):
        wr.PolicyServer(StatePolicy(), host="0.0.0.0", allow_public=True)  # constructed, never started
    assert "PUBLIC" in caplog.text and "WITHOUT a token" in caplog.text
    wr.PolicyServer(StatePolicy(), host="localhost")
    wr.PolicyServer(StatePolicy(), host="::1")


def test_invalid_port_is_a_clear_error_and_busy_port_fails_fast():
    for port in (70000, -1, "8000", True):
        with pytest.raises(ValueError, match="0..65535"):
            wr.PolicyServer(StatePolicy(), port=port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        t0 = time.perf_counter()
        with pytest.raises(RuntimeError, match="could not listen on 127.0.0.1"):
            wr.PolicyServer(StatePolicy(), port=s.getsockname()[1]).start()
        assert time.perf_counter() - t0 < 5  # today: waits 10 s, then a misleading message


def test_token_authentication():
    with wr.PolicyServer(StatePolicy(), token="s3cret") as server:
        with pytest.raises(InvalidStatus) as e:
            wr.PolicyClient("127.0.0.1", server.port, timeout=5)
        assert e.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            wr.PolicyClient("127.0.0.1", server.port, timeout=5, api_key="wrong")
        with wr.PolicyClient("127.0.0.1", server.port, timeout=5, api_key="s3cret") as c:
            assert c.infer({"observation.state": np.ones(2)})["actions"].shape == (3, 2)
        headers = {"Authorization": "Bearer s3cret"}
        with connect(f"ws://127.0.0.1:{server.port}", additional_headers=headers, open_timeout=5) as ws:
            assert wr.unpackb(ws.recv(timeout=5)) == {}


def test_origin_checked_loopback_pages_only():
    with wr.PolicyServer(StatePolicy()) as server:
        uri = f"ws://127.0.0.1:{server.port}"
        with pytest.raises(InvalidStatus) as e:
            connect(uri, origin="http://evil.example", open_timeout=5)
        assert e.value.response.status_code == 403
        for ok in ("http://localhost:3000", "http://127.0.0.1", "https://[::1]:8443"):
            with connect(uri, origin=ok, open_timeout=5) as ws:
                ws.recv(timeout=5)
    with wr.PolicyServer(StatePolicy(), origins=["https://lab.example"]) as server:
        uri = f"ws://127.0.0.1:{server.port}"
        with connect(uri, origin="https://lab.example", open_timeout=5) as ws:
            ws.recv(timeout=5)
        with pytest.raises(InvalidStatus):  # the loopback default is replaced, not extended
            connect(uri, origin="http://localhost:3000", open_timeout=5)


def test_prompt_and_key_limits():
    with wr.PolicyServer(StatePolicy(), max_prompt_chars=100, max_keys=8) as server:
        err = refused(server.port, {"observation.state": np.ones(2), "prompt": "x" * 101})
        assert "max_prompt_chars=100" in err
        err = refused(
            server.port, {"observation.state": np.ones(2), "prompt": "y" * 5000}
        )  # caught while parsing
        assert "max_prompt_chars=100" in err
        err = refused(server.port, {f"k{i}": i for i in range(100)})
        assert "max_keys=8" in err
        with wr.PolicyClient("127.0.0.1", server.port, timeout=5) as c:
            assert c.infer({"observation.state": np.ones(2), "prompt": "z" * 100})["actions"].shape == (3, 2)
        assert server.errors == 3 and server.served == 1


def test_connection_cap_and_idle_timeout():
    with wr.PolicyServer(StatePolicy(), max_connections=2, idle_timeout_s=0.5) as server:
        uri = f"ws://127.0.0.1:{server.port}"
        with connect(uri, open_timeout=5) as a, connect(uri, open_timeout=5) as b:
            a.recv(timeout=5), b.recv(timeout=5)
            with pytest.raises(InvalidStatus) as e:
                connect(uri, open_timeout=5)
            assert e.value.response.status_code == 503
            t0 = time.perf_counter()
            for ws in (a, b):  # both idle: closed by the server after ~0.5 s
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=5)
                assert ws.close_code == 1000
            assert time.perf_counter() - t0 < 4
        for _ in range(50):  # the slots come back
            if server._active == 0:
                break
            time.sleep(0.05)
        with wr.PolicyClient("127.0.0.1", server.port, timeout=5) as c:
            assert c.infer({"observation.state": np.ones(2)})["actions"].shape == (3, 2)


def test_error_frames_have_no_traceback_or_absolute_path():
    fail = FileNotFoundError("/home/someone/secret/run7/model.safetensors is missing")
    with wr.PolicyServer(StatePolicy(fail=fail)) as server:
        err = refused(server.port, {"observation.state": np.ones(2)})
    assert err == "FileNotFoundError: model.safetensors is missing"  # today: path + 'Traceback'
    assert "Traceback" not in err and "/home" not in err


def test_client_leaving_without_close_frame_logs_one_info_line(caplog):
    with caplog.at_level(logging.INFO), wr.PolicyServer(StatePolicy()) as server:
        with connect(f"ws://127.0.0.1:{server.port}", open_timeout=5, close_timeout=0.1) as ws:
            ws.recv(timeout=5)
            ws.socket.shutdown(socket.SHUT_RDWR)  # vanish like an exiting openpi client: no close frame
        for _ in range(100):
            if "left without a close frame" in caplog.text:
                break
            time.sleep(0.05)
    lines = [r for r in caplog.records if "left without a close frame" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO and lines[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # today: ERROR + traceback


@pytest.mark.parametrize("scale, match", [(np.nan, "NaN"), (1e30, "max_abs")])
def test_non_finite_or_huge_replies_refused_and_counted(scale, match):
    with wr.PolicyServer(StatePolicy(scale=scale)) as server:
        err = refused(server.port, {"observation.state": np.ones(2)})
        assert err.startswith("UnsafeActionError: refused action chunk") and match in err
        assert server.refused_chunks == 1 and server.served == 0


def test_contract_published_and_observations_validated():
    with wr.PolicyServer(StatePolicy(arm_contract()), metadata={"reset_pose": [0, 0]}) as server:
        with wr.PolicyClient("127.0.0.1", server.port, timeout=5) as c:
            meta = c.metadata
            assert meta["reset_pose"] == [0, 0] and meta["robots"] == ["arm"]
            assert meta["action_horizon"] == 3 and meta["action_dim"] == 2
            spec = meta["observation_contract"]["arm"]
            assert spec["cameras"] == ["front"] and spec["action_low"] == [-5.0, -5.0]
            assert spec["features"]["observation.images.front"] == {
                "shape": [8, 8, 3], "dtype": "uint8", "required": True, "range": [0.0, 255.0]
            }  # fmt: skip
            assert wr.ObservationContract.from_dict(spec) == arm_contract()
            np.testing.assert_allclose(c.infer(good_obs())["actions"], [[2, -2]] * 3)
        cases = {
            "missing observation keys": {},
            "'observation.state': float32 [2]": {"state": np.ones(2, np.float32)},
            "unknown observation keys ['observation/image']": good_obs(**{"observation/image": np.zeros(3)}),
            "float images are refused": good_obs(
                **{"observation.images.front": np.zeros((8, 8, 3), np.float32)}
            ),
            "got shape [3]": good_obs(**{"observation.state": np.ones(3, np.float32)}),
            "contains NaN": good_obs(**{"observation.state": np.array([np.nan, 0], np.float32)}),
            "values span [11, 11]": good_obs(**{"observation.state": np.full(2, 11, np.float32)}),
            "unknown robot 'ur5'": good_obs(dataset="ur5"),
            "'task': got int": good_obs(task=3),
        }
        for message, obs in cases.items():
            assert message in refused(server.port, obs), message
        assert server.errors == len(cases) and server.served == 1


def test_several_robots_need_a_name_and_bounds_are_per_robot():
    contracts = {"arm": arm_contract("arm"), "cart": arm_contract("cart")}
    with wr.PolicyServer(StatePolicy(contracts, scale=4.0)) as server:
        assert "name one under 'dataset'" in refused(server.port, good_obs())
        with wr.PolicyClient("127.0.0.1", server.port, timeout=5) as c:
            assert c.infer(good_obs(dataset="cart"))["actions"].shape == (3, 2)
        big = good_obs(dataset="arm", **{"observation.state": np.array([2.0, 0.0], np.float32)})
        assert "outside the declared bounds" in refused(server.port, big)  # 8 > 5
        assert server.refused_chunks == 1


def test_openpi_names_are_mapped_to_the_contract_and_custom_maps_apply():
    contract = wr.ObservationContract(
        robot="libero",
        features={
            "observation.state": wr.FeatureSpec((2,)),
            "observation.images.image": wr.FeatureSpec((8, 8, 3), "uint8"),
            "task": wr.FeatureSpec((), "str"),
        },
        action_horizon=3,
        action_dim=2,
    )
    openpi_obs = {
        "observation/state": np.array([1.0, 2.0], np.float32),
        "observation/image": np.zeros((8, 8, 3), np.uint8),
        "prompt": "pick",
    }
    with wr.PolicyServer(StatePolicy(contract)) as server:
        with wr.PolicyClient("127.0.0.1", server.port, timeout=5) as c:
            np.testing.assert_allclose(c.infer(openpi_obs)["actions"], [[2, 4]] * 3)
        both = {**openpi_obs, "observation.state": np.zeros(2, np.float32)}
        assert "send only one of them" in refused(server.port, both)
    with wr.PolicyServer(
        StatePolicy(contract), builtin_key_map=False, key_map={"joints": "observation.state"}
    ) as server:
        assert "missing observation keys" in refused(server.port, openpi_obs)  # no built-in renaming
        custom = {
            "joints": np.ones(2, np.float32),
            "observation.images.image": np.zeros((8, 8, 3), np.uint8),
            "task": "t",
        }
        with wr.PolicyClient("127.0.0.1", server.port, timeout=5) as c:
            assert c.infer(custom)["actions"].shape == (3, 2)


@pytest.mark.parametrize(
    "frame", [b"", b"\x91" * 5000 + b"\xc0", b"\x93\x01\x02\x03extra", b"not bytes" + b"\xc1"]
)
def test_undecodable_frames_get_a_reason_and_the_server_goes_on(frame):
    """Found by the reliability suite: msgpack's StackError arrived as an error frame with no message."""
    with wr.PolicyServer(StatePolicy()) as server:
        with connect(f"ws://127.0.0.1:{server.port}", open_timeout=5) as ws:
            ws.recv(timeout=5)
            ws.send(frame)
            err = ws.recv(timeout=5)
        assert isinstance(err, str) and "send wall_robots.packb(observation dict)" in err
        with wr.PolicyClient("127.0.0.1", server.port, timeout=5) as c:
            assert c.infer({"observation.state": np.ones(2)})["actions"].shape == (3, 2)
