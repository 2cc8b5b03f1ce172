"""openpi wire protocol: metadata first, msgpack numpy, concurrent clients, malformed and oversize input."""

import threading

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import wall_robots as wr


class EchoPolicy:
    def infer(self, obs):
        state = np.asarray(obs["observation/state"])
        return {"actions": np.tile(state * 2, (5, 1)), "echo_prompt": obs.get("prompt", "")}

    def reset(self):
        pass


@pytest.fixture
def server():
    with wr.PolicyServer(EchoPolicy(), metadata={"reset_pose": [0, 1]}, max_message_bytes=2**20) as s:
        yield s


def test_codec_round_trip_and_refuses_objects():
    obs = {
        "img": np.arange(12, dtype=np.uint8).reshape(2, 2, 3),
        "x": np.float32(1.5),
        "s": "hi",
        "n": [1, 2],
    }
    back = wr.unpackb(wr.packb(obs))
    assert back["img"].dtype == np.uint8 and np.array_equal(back["img"], obs["img"]) and back["x"] == 1.5
    assert back["s"] == "hi"
    with pytest.raises(ValueError, match="unsupported"):
        wr.packb({"o": np.array([object()], dtype=object)})
    evil = msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]})
    with pytest.raises(ValueError, match="refusing"):
        wr.unpackb(evil)


def test_round_trip_with_concurrent_clients(server):
    results, errors = {}, []

    def run(i):
        try:
            with wr.PolicyClient("127.0.0.1", server.port) as c:
                assert c.metadata == {"reset_pose": [0, 1]}
                for k in range(5):
                    out = c.infer({"observation/state": np.full(3, i + k, np.float32), "prompt": f"c{i}"})
                    assert out["actions"].shape == (5, 3) and np.all(out["actions"] == 2 * (i + k))
                    assert out["echo_prompt"] == f"c{i}" and out["server_timing"]["infer_ms"] >= 0
                results[i] = True
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 6 and server.served == 30


def test_malformed_and_oversize_messages_close_only_that_client(server):
    good = wr.PolicyClient("127.0.0.1", server.port)
    for bad in (b"\xc1\xc1 not msgpack", wr.packb([1, 2, 3]), "text frame"):
        with connect(f"ws://127.0.0.1:{server.port}") as ws:
            ws.recv()  # metadata
            ws.send(bad)
            err = ws.recv()
            assert isinstance(err, str) and len(err) > 10
            with pytest.raises(ConnectionClosed):
                ws.recv()
            assert ws.close_code == 1011
    with connect(f"ws://127.0.0.1:{server.port}", max_size=None) as ws:
        ws.recv()
        ws.send(b"\x00" * (2**20 + 10))
        with pytest.raises(ConnectionClosed):
            ws.recv()
        assert ws.close_code == 1009  # message too big
    with pytest.raises(RuntimeError, match="KeyError"):
        good.infer({"wrong": np.zeros(1)})
    fresh = wr.PolicyClient("127.0.0.1", server.port)  # the server still serves new clients
    assert fresh.infer({"observation/state": np.ones(2)})["actions"].shape == (5, 2)
    assert server.errors == 4
