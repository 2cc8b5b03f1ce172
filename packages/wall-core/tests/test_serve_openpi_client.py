"""An unmodified ``openpi-client`` 0.1.2, in its own virtualenv (no wall package in it), drives a real
``wall serve`` process: metadata with the observation contract, ``infer``, ``ActionChunkBroker``, refused bad
observations; the chunk it receives is the policy's own first draw, and the server logs no traceback.

The client venv's python comes from ``WALL_OPENPI_PYTHON`` (``nox -s openpi`` builds the venv from
``constraints/openpi-client.txt`` and sets it); without it the test is skipped. The client side is
``openpi_client_check.py`` (next to this file), which prints one JSON line.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from wall_core.policy import WallPolicy

OPENPI_PYTHON = os.environ.get("WALL_OPENPI_PYTHON")
CHECK = Path(__file__).with_name("openpi_client_check.py")
pytestmark = pytest.mark.skipif(
    not OPENPI_PYTHON,
    reason="set WALL_OPENPI_PYTHON to the python of a venv with openpi-client==0.1.2 (`nox -s openpi` does)",
)
if OPENPI_PYTHON and not Path(OPENPI_PYTHON).is_file():  # asked for, but wrong: an error, never a skip
    raise FileNotFoundError(
        f"WALL_OPENPI_PYTHON={OPENPI_PYTHON!r} is not a file; point it at the venv's python"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    """Poll ``/healthz`` until the server answers 200; fail with its log when it exits or times out."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(f"wall serve did not come up (rc {proc.poll()}):\n{log.read_text()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def served(tmp_path_factory, make_once):
    """A tiny saved policy served by ``python -m wall_core.cli serve`` on a free port: (folder, port, log)."""
    model, pipe, _ = make_once()
    tmp = tmp_path_factory.mktemp("openpi")
    root = WallPolicy(model, pipe).save_pretrained(tmp / "policy")
    port, log = _free_port(), tmp / "serve.log"
    cmd = [sys.executable, "-m", "wall_core.cli", "serve", "--policy", str(root), "--port", str(port)]
    with log.open("w") as out:  # wide COLUMNS: rich writes each log record on one line
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "400"}
        )
    try:
        _wait_healthy(port, proc, log)
        yield root, port, log
    finally:
        proc.terminate()
        proc.wait(30)


def _log_once(log: Path, pattern: str, count: int, timeout: float = 30.0) -> str:
    """The server log once ``pattern`` has matched ``count`` lines (the server logs a departure after the
    client process is gone); fails with the log after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while len(re.findall(pattern, text := log.read_text())) < count:
        if time.time() > deadline:
            pytest.fail(f"{count} lines matching {pattern!r} expected in the server log:\n{text}")
        time.sleep(0.5)
    return text


def _client_env() -> dict[str, str]:
    """This environment without the paths that would put our packages on the client's ``sys.path``."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def test_openpi_client_drives_wall_serve(served, tmp_path):
    root, port, log = served
    dump = tmp_path / "first.npz"
    cmd = [str(OPENPI_PYTHON), str(CHECK), "--port", str(port), "--infers", "20", "--dump", str(dump)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_client_env())
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(json.dumps(out))  # noqa: T201  (shown with -s: the numbers the README quotes)
    assert out["ok"] and out["failed"] == [] and out["checks"] == 23, out
    shown = (out["openpi_client"], out["robot"], out["action_horizon"], out["action_dim"])
    assert shown == ("0.1.2", "sim", 8, 4)
    assert out["features"] == ["observation.images.corner", "observation.state", "task"]
    assert out["infers"] == 20 and 0 < out["median_server_infer_ms"] <= out["median_infer_ms"] < 10_000
    assert (out["broker_steps"], out["broker_infers"]) == (17, 3)  # 2H + 1 steps, one query per H steps
    refused = out["refused"]
    assert "'observation.images.corner': uint8 [*, *, *]" in refused["missing_camera"]
    assert "'observation.images.corner': got dtype float32" in refused["float_image"]
    assert "unknown observation keys ['observation/wrist_image_left']" in refused["unknown_openpi_camera"]
    # the first chunk the openpi client received is the served policy's own first draw (seed 0)
    with np.load(dump, allow_pickle=False) as z:
        got = z["actions"]
        obs = {k: (str(z[k]) if k == "task" else z[k]) for k in z.files if k != "actions"}
    want = WallPolicy.from_pretrained(root).infer(obs)["actions"]
    assert got.shape == (8, 4) and np.allclose(got, want, atol=1e-5)
    # the server: one WARNING line per refusal, clients leaving without a close frame at INFO, no traceback
    text = _log_once(log, r"INFO .*left without a close frame", 2)  # the main and the last client
    assert len(re.findall(r"WARNING .*policy server: refused a request", text)) == 3, text
    assert "Traceback" not in text and "ERROR" not in text, text
