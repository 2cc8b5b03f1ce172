"""Bad policy folders (flipped bytes, truncations, wrong configs, weights, stats and pipelines, missing files),
bad observations to ``infer`` and bad chunks from the model. A folder must be refused by
``WallPolicy.from_pretrained`` with a clear error; a bad observation by ``infer``; a bad chunk refused and
counted (``UnsafeActionError``), never returned."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

import wall_data as wd
from wall_core.model import WallVLA, WallVLAConfig
from wall_core.policy import WallPolicy
from wall_core.policy_checks import write_checksums
from wall_core.processing import build_pipeline

from . import Case, Outcome, expect_error, flip_byte, flips

CAM = "observation.images.cam"
UNNORM = "pipeline/steps/out01_Unnormalize/tensors.safetensors"
NORM = "pipeline/steps/in03_Normalize/tensors.safetensors"


def write_base(root: Path) -> tuple[Path, dict[str, Any]]:
    """A tiny saved policy (2-layer small backbone, robot ``toy``: state [3], action [2], H = 4) and one
    valid observation for it."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    stats = wd.compute_stats(
        {"observation.state": rng.normal(size=(200, 3)), "action": rng.normal(size=(200, 2))}
    )
    cfg = WallVLAConfig(backbone="small", backbone_overrides={"num_layers": 2}, state_dim=8, action_dim=4,
                        action_horizon=4, cameras=[CAM], image_size=64)  # fmt: skip
    model = WallVLA(cfg)
    policy = WallPolicy(model, build_pipeline(model, stats={"toy": stats}), num_steps=2)
    obs = {
        "observation.state": np.zeros(3, np.float32),
        "task": "reach",
        CAM: np.zeros((48, 40, 3), np.uint8),
    }
    root = policy.save_pretrained(root)
    assert WallPolicy.from_pretrained(root).infer(obs)["actions"].shape == (4, 2)  # the clean input works
    return root, obs


def _config(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        cfg = yaml.safe_load((folder / "config.yaml").read_text())
        fn(cfg)
        (folder / "config.yaml").write_text(yaml.safe_dump(cfg))

    return edit


def _tensors(rel: str, fn: Callable[[dict[str, torch.Tensor]], Any]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        t = load_file(str(folder / rel))
        fn(t)
        save_file(t, str(folder / rel))

    return edit


def _manifest(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / "pipeline/pipeline.json"
        m = json.loads(path.read_text())
        fn(m)
        path.write_text(json.dumps(m))

    return edit


def _first_float(t: dict[str, torch.Tensor]) -> torch.Tensor:
    return next(v for k, v in sorted(t.items()) if v.is_floating_point() and v.numel() > 1)


def _stat(name: str, value: float, key: str = "action") -> Callable[[dict[str, torch.Tensor]], None]:
    def edit(t: dict[str, torch.Tensor]) -> None:
        t[f"toy|{key}|{name}"] = torch.full_like(t[f"toy|{key}|{name}"], value)

    return edit


def _pop_model_key(key: str, cfg: dict[str, Any]) -> None:
    cfg["model"].pop(key)


def _unlink(rel: str, folder: Path) -> None:
    (folder / rel).unlink()


def _flip(rel: str, at: int, folder: Path) -> None:
    flip_byte(folder / rel, at)


def _step(m: dict[str, Any], side: str, name: str) -> dict[str, Any]:
    return next(s for s in m[side] if s["type"] == name)


CONSISTENT: dict[str, Callable[[Path], Any]] = {  # checksums re-written after the edit
    "config format_version missing": _config(lambda c: c.pop("format_version")),
    "config format_version 2": _config(lambda c: c.update(format_version=2)),
    "config format_version '1'": _config(lambda c: c.update(format_version="1")),
    **{
        f"config model.{k} missing": _config(partial(_pop_model_key, k))
        for k in (
            "action_dim",
            "state_dim",
            "action_horizon",
            "num_steps",
            "cameras",
            "backbone",
            "image_size",
        )
    },
    "config unknown model key": _config(lambda c: c["model"].update(nope=1)),
    "config model.num_steps 20000": _config(lambda c: c["model"].update(num_steps=20000)),
    "config policy.num_steps 20000": _config(lambda c: c["policy"].update(num_steps=20000)),
    "config policy.num_steps 0": _config(lambda c: c["policy"].update(num_steps=0)),
    "config policy.num_steps -3": _config(lambda c: c["policy"].update(num_steps=-3)),
    "config policy.num_steps 'ten'": _config(lambda c: c["policy"].update(num_steps="ten")),
    "config policy.num_steps 2.5": _config(lambda c: c["policy"].update(num_steps=2.5)),
    "config policy.num_steps true": _config(lambda c: c["policy"].update(num_steps=True)),
    "config policy.method 5": _config(lambda c: c["policy"].update(method=5)),
    "config policy unknown key": _config(lambda c: c["policy"].update(horizon=3)),
    "config model.action_horizon 8": _config(lambda c: c["model"].update(action_horizon=8)),
    "config model.action_dim 6": _config(lambda c: c["model"].update(action_dim=6)),
    "config model.cameras other": _config(lambda c: c["model"].update(cameras=["observation.images.x"])),
    "config model.flow_space bogus": _config(lambda c: c["model"].update(flow_space="bogus")),
    "config model section a list": _config(lambda c: c.update(model=[1, 2])),
    "config.yaml a list": lambda f: (f / "config.yaml").write_text("- 1\n- 2\n"),
    "config.yaml empty": lambda f: (f / "config.yaml").write_text(""),
    "config.yaml syntax error": lambda f: (f / "config.yaml").write_text("model: {a: [1, 2\n"),
    "config.yaml python tag": lambda f: (f / "config.yaml").write_text(
        "model: !!python/object/apply:os.system ['touch /tmp/wall-reliability-pwned']\n"
    ),  # fmt: skip
    "config.yaml random bytes": lambda f: (f / "config.yaml").write_bytes(
        np.random.default_rng(3).bytes(200)
    ),
    "weights int64": _tensors(
        "model.safetensors", lambda t: t.update({k: v.to(torch.int64) for k, v in t.items()})
    ),
    "weights one tensor int32": _tensors(
        "model.safetensors", lambda t: t.update({k: v.to(torch.int32) for k, v in list(t.items())[:1]})
    ),  # fmt: skip
    "weights bool": _tensors(
        "model.safetensors", lambda t: t.update({k: v > 0 for k, v in list(t.items())[:3]})
    ),
    "weights NaN": _tensors(
        "model.safetensors", lambda t: _first_float(t).view(-1).__setitem__(0, float("nan"))
    ),
    "weights inf": _tensors(
        "model.safetensors", lambda t: _first_float(t).view(-1).__setitem__(3, float("inf"))
    ),
    "weights tensor missing": _tensors("model.safetensors", lambda t: t.pop(sorted(t)[0])),
    "weights extra tensor": _tensors("model.safetensors", lambda t: t.update(extra=torch.zeros(3))),
    "weights wrong shape": _tensors(
        "model.safetensors",
        lambda t: t.update(
            {k: torch.zeros(*v.shape[:-1], v.shape[-1] + 1) for k, v in list(t.items())[:1] if v.dim()}
        ),
    ),  # fmt: skip
    "weights empty dict": _tensors("model.safetensors", lambda t: t.clear()),
    "weights 7 bytes": lambda f: (f / "model.safetensors").write_bytes(b"\x07" * 7),
    "weights empty file": lambda f: (f / "model.safetensors").write_bytes(b""),
    "weights random bytes": lambda f: (f / "model.safetensors").write_bytes(
        np.random.default_rng(4).bytes(5000)
    ),
    "weights half file": lambda f: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[: (f / "model.safetensors").stat().st_size // 2]
    ),  # fmt: skip
    "weights a pickle": lambda f: torch.save({"x": torch.zeros(2)}, f / "model.safetensors"),
    "stats q01 NaN": _tensors(UNNORM, _stat("q01", float("nan"))),
    "stats q99 inf": _tensors(UNNORM, _stat("q99", float("inf"))),
    "stats q99 1e308": _tensors(UNNORM, _stat("q99", 1e308)),
    "stats q01 -1e308": _tensors(UNNORM, _stat("q01", -1e308)),
    "stats mean NaN": _tensors(UNNORM, _stat("mean", float("nan"))),
    "stats q01 > q99": _tensors(UNNORM, _stat("q01", 50.0)),
    "stats q01 == q99 everywhere": _tensors(
        UNNORM, lambda t: t.update({"toy|action|q99": t["toy|action|q01"].clone()})
    ),
    "stats 3 action dims": _tensors(UNNORM, lambda t: t.update({k: v[:1].repeat(3) for k, v in t.items()})),
    "stats 1 action dim": _tensors(UNNORM, lambda t: t.update({k: v[:1] for k, v in t.items()})),
    "stats tensor missing": _tensors(UNNORM, lambda t: t.pop("toy|action|q99")),
    "state stats NaN": _tensors(NORM, _stat("q01", float("nan"), "observation.state")),
    "state stats 5 dims": _tensors(
        NORM, lambda t: t.update({k: v[:1].repeat(5) for k, v in t.items() if "|observation.state|" in k})
    ),  # fmt: skip
    "unnormaliser removed": _manifest(lambda m: m.update(outputs=m["outputs"][:1])),
    "normaliser removed": _manifest(
        lambda m: m.update(inputs=[s for s in m["inputs"] if s["type"] != "Normalize"])
    ),
    "unknown step type": _manifest(lambda m: m["inputs"][0].update(type="os.system")),
    "step dir escapes the folder": _manifest(lambda m: m["inputs"][0].update(dir="../../etc")),
    "step config unknown argument": _manifest(lambda m: m["inputs"][0]["config"].update(evil=1)),
    "pipeline format_version 9": _manifest(lambda m: m.update(format_version=9)),
    "pipeline.json lacks outputs": _manifest(lambda m: m.pop("outputs")),
    "pipeline.json not JSON": lambda f: (f / "pipeline/pipeline.json").write_text("{nope"),
    "contract horizon 8": _manifest(
        lambda m: _step(m, "inputs", "ObservationContract")["config"].update(action_horizon=8)
    ),
    "contract robot action_dim 3": _manifest(
        lambda m: _step(m, "inputs", "ObservationContract")["config"]["robots"]["toy"].update(action_dim=3)
    ),  # fmt: skip
    "pad step width 6": _manifest(
        lambda m: _step(m, "inputs", "PadToEmbodiment")["config"].update(action_dim=6)
    ),
    "crop step width 6": _manifest(
        lambda m: _step(m, "outputs", "CropToEmbodiment")["config"].update(action_dim=6)
    ),
    "embodiment 9 action dims": _manifest(
        lambda m: _step(m, "outputs", "CropToEmbodiment")["config"]["embodiments"]["toy"].update(
            action_names=[f"a{i}" for i in range(9)]
        )
    ),  # fmt: skip
}
MISSING = ("config.yaml", "model.safetensors", "pipeline/pipeline.json", "checksums.json", UNNORM)
DAMAGED = ("model.safetensors", "config.yaml", "pipeline/pipeline.json", UNNORM, NORM)


def _folder_case(base: Path, work: Path, name: str, edit: Callable[[Path], None], resign: bool) -> Case:
    def run() -> tuple[Outcome, str]:
        folder = work / name.translate(str.maketrans(" /'@<>=", "_______"))
        shutil.copytree(base, folder)
        edit(folder)
        if resign:
            write_checksums(folder)  # the folder is self-consistent: the loader's own checks must refuse it
        if Path("/tmp/wall-reliability-pwned").exists():
            return "silent", "a YAML tag ran code"
        return expect_error(lambda: WallPolicy.from_pretrained(folder))

    return Case("policy", name, run)


def _chunk_cases(base: Path, obs: dict[str, Any]) -> list[Case]:
    box: dict[str, WallPolicy] = {}

    def policy() -> WallPolicy:
        if "p" not in box:
            box["p"] = WallPolicy.from_pretrained(base)
        return box["p"]

    def bad_chunk(value: Any) -> Callable[[], tuple[Outcome, str]]:
        def run() -> tuple[Outcome, str]:
            p = policy()
            real = p.model.predict_actions
            p.model.predict_actions = lambda *a, **k: real(*a, **k) * 0 + torch.as_tensor(value)  # type: ignore[method-assign]
            before = p.refused_chunks
            try:
                outcome = expect_error(lambda: p.infer(obs))
            finally:
                p.model.predict_actions = real  # type: ignore[method-assign]
            return (
                outcome
                if p.refused_chunks == before + 1 or outcome[0] != "clear"
                else ("silent", "not counted")
            )

        return run

    def bad_obs(**over: Any) -> Callable[[], tuple[Outcome, str]]:
        o = {k: v for k, v in {**obs, **over}.items() if v is not None}
        return lambda: expect_error(lambda: policy().infer(o))

    out = [
        Case("policy", f"chunk {v}", bad_chunk(v))
        for v in (float("nan"), float("inf"), -float("inf"), 1e30, 60.0)
    ]
    out.append(
        Case(
            "policy", "chunk NaN in one step", bad_chunk(torch.tensor([0.0, float("nan"), 0.0, 0.0])[:, None])
        )
    )
    obs_cases = {
        "obs state NaN": bad_obs(**{"observation.state": np.array([0, np.nan, 0], np.float32)}),
        "obs state inf": bad_obs(**{"observation.state": np.array([np.inf, 0, 0], np.float32)}),
        "obs state 5 dims": bad_obs(**{"observation.state": np.zeros(5, np.float32)}),
        "obs state strings": bad_obs(**{"observation.state": np.array(["a", "b", "c"])}),
        "obs state missing": bad_obs(**{"observation.state": None}),
        "obs camera missing": bad_obs(**{CAM: None}),
        "obs camera 2-D": bad_obs(**{CAM: np.zeros((48, 40), np.uint8)}),
        "obs camera 4 channels": bad_obs(**{CAM: np.zeros((48, 40, 4), np.uint8)}),
        "obs camera a string": bad_obs(**{CAM: "image.png"}),
        "obs task missing": bad_obs(task=None),
        "obs task an int": bad_obs(task=5),
        "obs unknown robot": bad_obs(dataset="other_robot"),
    }
    return out + [Case("policy", n, fn) for n, fn in obs_cases.items()]


def cases(work: Path) -> list[Case]:
    """Every policy case; the clean policy folder is written once under ``work``."""
    base, obs = write_base(work / "base")
    out = [_folder_case(base, work, n, e, resign=True) for n, e in CONSISTENT.items()]
    out += [_folder_case(base, work, f"missing {rel}", partial(_unlink, rel), resign=False)
            for rel in MISSING]  # fmt: skip
    for rel in DAMAGED:
        size = (base / rel).stat().st_size
        out += [_folder_case(base, work, f"flip {rel} @{at}", partial(_flip, rel, at), resign=False)
                for at in flips(size, 4)]  # fmt: skip
    return out + _chunk_cases(base, obs)
