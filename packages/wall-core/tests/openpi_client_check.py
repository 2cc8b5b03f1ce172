"""Drive a running ``wall serve`` with an unmodified ``openpi-client`` 0.1.2, as an openpi user would.

Runs INSIDE a virtualenv that holds only openpi-client and its dependencies (``nox -s openpi`` builds one from
``constraints/openpi-client.txt``); it imports openpi_client, numpy and the standard library, nothing of wall.
``test_serve_openpi_client.py`` starts the server and runs this script; by hand::

    wall serve --policy DIR --port 8000 &
    /path/to/openpi-venv/bin/python openpi_client_check.py --port 8000

Checks, in order: the metadata frame carries the observation contract (robot, keys, shapes, dtypes, cameras,
action horizon H and dim A); ``infer`` with an observation built from that contract answers finite
``actions`` [H, A] (``--infers`` times, timed); ``ActionChunkBroker`` over openpi's own key names
(``observation/state``, ``observation/<cam>``, ``prompt``) hands out the chunks row by row, querying once
per H steps; three bad observations (a missing camera, a float image, a camera under an unknown openpi name)
are refused with a one-line message naming the key; the server still answers a new client afterwards.
Prints one JSON line (``median_infer_ms``: client round trip; ``median_server_infer_ms``: the server's own
``server_timing``; what was checked); exit status 1 when any check failed. ``--dump FILE.npz`` saves the first
observation and the chunk it got (plain arrays, no pickle) so the caller can compare with the policy.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import statistics
import sys
import time
from typing import Any

import numpy as np
from openpi_client import action_chunk_broker, base_policy, websocket_client_policy

FREE_SIDE = 64  # the size sent for an image dimension the contract leaves free (-1)
CAM = "observation.images."


class Checks:
    """Named pass/fail records; ``failed`` lists ``name: detail`` for each failed check."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[str] = []

    def check(self, name: str, ok: bool, detail: Any = "") -> bool:
        """Record ``name`` as passed when ``ok``, else as failed with ``detail``; returns ``ok``."""
        if ok:
            self.passed.append(name)
        else:
            self.failed.append(f"{name}: {detail}")
        return ok


class Counting(base_policy.BasePolicy):
    """An openpi policy that forwards to ``inner`` and keeps every ``actions`` chunk [H, A] it returned."""

    def __init__(self, inner: base_policy.BasePolicy) -> None:
        self.inner = inner
        self.chunks: list[np.ndarray] = []

    def infer(self, obs: dict) -> dict:
        """``inner.infer(obs)``, recording its ``actions``."""
        out = self.inner.infer(obs)
        self.chunks.append(np.asarray(out["actions"]))
        return out

    def reset(self) -> None:
        """Reset ``inner``."""
        self.inner.reset()


def read_contract(meta: dict, checks: Checks) -> dict:
    """The one robot's contract dict from the metadata frame, after checking its form (keys, shapes, dtypes,
    cameras, action horizon / dim, and that the top-level ``action_horizon`` / ``action_dim`` agree)."""
    contracts = meta.get("observation_contract")
    checks.check(
        "metadata has observation_contract",
        isinstance(contracts, dict) and len(contracts) == 1,
        f"got {sorted(meta)}",
    )
    if not isinstance(contracts, dict) or not contracts:
        raise SystemExit(f"no observation_contract in the metadata: {sorted(meta)}")
    robot, c = next(iter(contracts.items()))
    checks.check(
        "metadata robots", meta.get("robots") == [robot] and c.get("robot") == robot, meta.get("robots")
    )
    feats = c.get("features", {})
    form_ok = bool(feats) and all(isinstance(f.get("shape"), list) and f.get("dtype") for f in feats.values())
    checks.check("every feature has a shape and a dtype", form_ok, feats)
    for key in ("observation.state", "task"):
        checks.check(f"contract names {key}", key in feats, sorted(feats))
    cams = c.get("cameras", [])
    checks.check(
        "cameras listed and declared as uint8 images",
        bool(cams) and all(feats.get(CAM + k, {}).get("dtype") == "uint8" for k in cams),
        cams,
    )
    h, a = c.get("action_horizon"), c.get("action_dim")
    checks.check(
        "action horizon and dim", isinstance(h, int) and h > 0 and isinstance(a, int) and a > 0, (h, a)
    )
    checks.check(
        "top-level action_horizon / action_dim agree",
        meta.get("action_horizon") == h and meta.get("action_dim") == a,
        meta,
    )
    return c


def _value(key: str, spec: dict, rng: np.random.Generator) -> Any:
    """A valid value for one feature: text, a uint8 image (free dims -> FREE_SIDE, channels last), floats."""
    if spec["dtype"] == "str":
        return "reach the goal"
    dims = [s if s >= 0 else FREE_SIDE for s in spec["shape"]]
    if key.startswith(CAM) and len(dims) == 3 and not {1, 3} & set(dims):
        dims[-1] = 3  # openpi clients send [H, W, C]
    if spec["dtype"] == "uint8":
        return rng.integers(0, 256, dims, dtype=np.uint8)
    if spec["dtype"].startswith("float"):
        lo, hi = spec.get("range", (-1.0, 1.0))
        return rng.uniform(lo, hi, dims).astype(spec["dtype"])
    return np.zeros(dims, dtype=spec["dtype"])


def observation(contract: dict, seed: int = 0) -> dict:
    """A valid observation under the contract's own key names (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    return {k: _value(k, s, rng) for k, s in contract["features"].items()}


def openpi_names(obs: dict) -> dict:
    """The same observation under openpi's usual names (``observation/state``, ``observation/<cam>``,
    ``prompt``), which the server's built-in key mapping turns into the contract's."""
    rename = {"observation.state": "observation/state", "task": "prompt"}
    return {rename.get(k, k.replace(CAM, "observation/")): v for k, v in obs.items()}


def check_chunk(name: str, out: Any, contract: dict, checks: Checks) -> bool:
    """``out["actions"]`` is a finite float array [H, A]."""
    act = out.get("actions") if isinstance(out, dict) else None
    shape = (contract["action_horizon"], contract["action_dim"])
    ok = (
        isinstance(act, np.ndarray)
        and act.dtype.kind == "f"
        and act.shape == shape
        and bool(np.isfinite(act).all())
    )
    return checks.check(
        name, ok, None if act is None else (getattr(act, "shape", None), getattr(act, "dtype", None))
    )


def timed_infers(client: Any, obs: dict, contract: dict, n: int, checks: Checks) -> tuple[float, float]:
    """``n`` timed ``infer`` calls; (median client round trip ms, median server ``infer_ms``)."""
    rtt, server = [], []
    for _ in range(n):
        t = time.perf_counter()
        out = client.infer(obs)
        rtt.append((time.perf_counter() - t) * 1e3)
        server.append(float(out.get("server_timing", {}).get("infer_ms", float("nan"))))
    check_chunk(f"{n} timed infers answer [H, A]", out, contract, checks)
    checks.check("server_timing.infer_ms in every reply", all(np.isfinite(server)), server)
    return statistics.median(rtt), statistics.median(server)


def run_broker(client: Any, obs: dict, contract: dict, checks: Checks) -> tuple[int, int]:
    """2H + 1 steps of ``ActionChunkBroker`` over openpi's key names; (steps, inner infer calls)."""
    h = contract["action_horizon"]
    inner = Counting(client)
    broker = action_chunk_broker.ActionChunkBroker(inner, action_horizon=h)
    steps = [broker.infer(openpi_names(obs))["actions"] for _ in range(2 * h + 1)]
    checks.check("broker: one query per H steps", len(inner.chunks) == 3, len(inner.chunks))
    checks.check(
        "broker: each step is one action [A]",
        all(np.shape(s) == (contract["action_dim"],) for s in steps),
        [np.shape(s) for s in steps],
    )
    rows = [inner.chunks[i // h][i % h] for i in range(len(steps))] if len(inner.chunks) == 3 else []
    checks.check(
        "broker: step i is row i mod H of its chunk",
        bool(rows) and all(np.array_equal(s, r) for s, r in zip(steps, rows)),
        "rows differ",
    )
    for i, chunk in enumerate(inner.chunks):
        check_chunk(f"broker chunk {i} (openpi names) answers [H, A]", {"actions": chunk}, contract, checks)
    broker.reset()
    return len(steps), len(inner.chunks)


def bad_observations(obs: dict, contract: dict) -> dict[str, tuple[dict, str, str]]:
    """name -> (observation, key the refusal must name, phrase it must contain)."""
    cam = CAM + contract["cameras"][0]
    floaty = {**obs, cam: obs[cam].astype(np.float32) / 255.0}
    missing = {k: v for k, v in obs.items() if k != cam}
    foreign = {**openpi_names(obs), "observation/wrist_image_left": obs[cam]}
    return {
        "missing_camera": (missing, cam, "missing observation keys"),
        "float_image": (floaty, cam, "float images are refused"),
        "unknown_openpi_camera": (foreign, "observation/wrist_image_left", "unknown observation keys"),
    }


def check_refusals(host: str, port: int, obs: dict, contract: dict, checks: Checks) -> dict[str, str]:
    """Each bad observation on a new connection (the server closes a refused one): openpi-client raises
    ``RuntimeError`` carrying the server's one-line reason, which names the key; returns name -> reason."""
    reasons = {}
    for name, (bad, key, phrase) in bad_observations(obs, contract).items():
        client = websocket_client_policy.WebsocketClientPolicy(host, port)
        try:
            client.infer(bad)
            reasons[name] = "answered"
        except RuntimeError as e:
            reasons[name] = str(e).removeprefix("Error in inference server:\n")
        text = reasons[name]
        checks.check(
            f"refused {name}, naming {key!r}",
            key in text and phrase in text and "Traceback" not in text and "\n" not in text,
            text,
        )
    after = websocket_client_policy.WebsocketClientPolicy(host, port)
    check_chunk("a new client is served after the refusals", after.infer(obs), contract, checks)
    return reasons


def main(argv: list[str] | None = None) -> int:
    """Run every check against ``ws://HOST:PORT``; print one JSON line; 0 when all passed, else 1."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--infers", type=int, default=20, help="timed infer calls")
    ap.add_argument("--dump", help="write the first observation and its chunk to this .npz")
    args = ap.parse_args(argv)
    checks = Checks()
    version = importlib.metadata.version("openpi-client")
    checks.check("openpi-client is 0.1.2", version == "0.1.2", version)
    leaked = [m for m in ("wall_robots", "wall_core") if importlib.util.find_spec(m) is not None]
    checks.check("no wall package in the client venv", not leaked, leaked)
    client = websocket_client_policy.WebsocketClientPolicy(args.host, args.port)
    contract = read_contract(client.get_server_metadata(), checks)
    obs = observation(contract)
    first = client.infer(obs)
    check_chunk("first infer answers finite [H, A]", first, contract, checks)
    if args.dump:
        np.savez(
            args.dump, actions=np.asarray(first["actions"]), **{k: np.asarray(v) for k, v in obs.items()}
        )
    median_ms, server_ms = timed_infers(client, obs, contract, args.infers, checks)
    steps, queries = run_broker(client, obs, contract, checks)
    refused = check_refusals(args.host, args.port, obs, contract, checks)
    result = {
        "openpi_client": version,
        "robot": contract["robot"],
        "action_horizon": contract["action_horizon"],
        "action_dim": contract["action_dim"],
        "features": sorted(contract["features"]),
        "infers": args.infers,
        "median_infer_ms": round(median_ms, 2),
        "median_server_infer_ms": round(server_ms, 2),
        "broker_steps": steps,
        "broker_infers": queries,
        "refused": refused,
        "checks": len(checks.passed),
        "failed": checks.failed,
        "ok": not checks.failed,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
