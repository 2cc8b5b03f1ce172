"""The discrete branch across robots: one FAST tokenizer over the padded canonical layout vs one per embodiment.

Real demo chunks from both simulators: MetaWorld (Sawyer, 4-D actions; scripted experts) and gym-aloha
TransferCube (bimanual ALOHA, 14 joints; scripted expert), each normalised with its own dataset's q01/q99
(the pipeline's rule), chunks of ``--horizon`` steps from every frame. Episodes are split: the last quarter
of each dataset's episodes is held out and only tokenised, never fitted on.

Choices (FAST = DCT over time + BPE, ``scale`` 10):
* **padded**: one tokenizer fitted on both robots' chunks placed in the 26-D canonical layout
  (``wall_data.canonical_registry``), zeros outside each robot's DOF mask; decoded chunks are masked by it.
* **per_embodiment**: one tokenizer per robot on its own DOFs, each with the full vocabulary (ids of the two
  share one id range; the sample's dataset picks the tokenizer, as it picks the stats).
* **per_embodiment_half**: the same with half the vocabulary each (the same number of ids in total as padded
  when the two vocabularies are stacked).

Reported per robot: tokens per chunk (mean), reconstruction RMSE and max |error| on the real DOFs in
normalised units, the share of decodes that are well-formed. Run:
``python benchmarks/tokenizer_embodiments.py [--metaworld ROOT --aloha ROOT] [--quick]`` (without roots it
records small demo sets itself: 2 MetaWorld tasks x 6 episodes and 6 ALOHA episodes, states only).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info

import wall_data as wd
import wall_tokenizer as wt
from wall_core.processing import normalize_tensor

ROBOTS = {"metaworld": "metaworld_sawyer", "aloha": "aloha_bimanual"}


def record_demos(out: Path, episodes: int) -> dict[str, Path]:
    """Small state-only demo sets of both simulators under ``out`` (scripted experts)."""
    import wall_robots as wr
    from wall_robots.aloha_expert import generate_aloha_demos

    wr.generate_demos(["reach-v3", "button-press-topdown-v3"], episodes, out / "metaworld", None, 100, 0.1, 0)
    generate_aloha_demos(episodes, out / "aloha", image_size=None, max_steps=400, seed=0)
    return {"metaworld": out / "metaworld", "aloha": out / "aloha"}


def chunks_of(root: Path, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised action chunks [N, H, A] of every frame, and whether each is held out [N] (last quarter of
    the episodes)."""
    ds = wd.LeRobotDataset(root, action_horizon=horizon, cameras=[])
    stats = wd.load_stats(root / "meta" / "stats.json")
    rows = np.stack([ds.chunk_indices(i)[0] for i in range(len(ds))])
    x = normalize_tensor(torch.from_numpy(ds.arrays["action"][rows]), stats["action"]).numpy()
    ep = ds.arrays["episode_index"].reshape(-1)
    cut = np.quantile(np.unique(ep), 0.75)
    return x.astype(np.float64), ep > cut


def score(tok: wt.ActionTokenizer, test: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Tokens per chunk, RMSE / max error on the real DOFs (``mask`` [A] of a padded layout) and valid share."""
    ids = tok.encode(test)
    res = tok.decode(ids)
    rec = np.asarray(res.actions)
    real = np.ones(test.shape[-1], bool) if mask is None else mask
    err = (rec - test)[..., real]
    return {
        "tokens_per_chunk": float(np.mean([len(i) for i in ids])),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "max_abs_err": float(np.abs(err).max()),
        "valid": float(np.mean(res.valid)),
    }


def compare(data: dict[str, tuple[np.ndarray, np.ndarray]], vocab: int, scale: float) -> dict[str, Any]:
    """Fit the three choices on the fit split; score each robot's held-out chunks."""
    reg = wd.canonical_registry(64, 26, robots=list(ROBOTS.values()))  # only the action layout matters
    space = wd.PaddedSpace(26, 26)
    padded, masks = {}, {}
    for name, (x, _) in data.items():
        padded[name], masks[name] = space.pad_action(x, reg.get(ROBOTS[name]))
    out: dict[str, Any] = {}
    t = time.perf_counter()
    fit_all = np.concatenate([padded[n][~data[n][1]] for n in data]).astype(np.float64)
    shared = wt.FASTTokenizer(scale=scale, vocab_size=vocab).fit(fit_all)
    out["padded"] = {"fit_s": time.perf_counter() - t}
    out["padded"] |= {n: score(shared, padded[n][data[n][1]].astype(np.float64), masks[n]) for n in data}
    for label, v in (("per_embodiment", vocab), ("per_embodiment_half", vocab // 2)):
        t = time.perf_counter()
        toks = {n: wt.FASTTokenizer(scale=scale, vocab_size=v).fit(x[~held]) for n, (x, held) in data.items()}
        out[label] = {"fit_s": time.perf_counter() - t}
        out[label] |= {n: score(toks[n], x[held]) for n, (x, held) in data.items()}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, record or read the demos, compare the choices; prints and returns the results."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--metaworld", type=Path, help="a MetaWorld demo dataset (default: record one)")
    p.add_argument("--aloha", type=Path, help="an ALOHA demo dataset (default: record one)")
    p.add_argument("--episodes", type=int, default=6, help="episodes per task when recording")
    p.add_argument("--horizon", type=int, default=16)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--scale", type=float, default=10.0)
    p.add_argument("--quick", action="store_true", help="record 3 episodes per task")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        roots = {"metaworld": args.metaworld, "aloha": args.aloha}
        if roots["metaworld"] is None or roots["aloha"] is None:
            made = record_demos(Path(tmp), 3 if args.quick else args.episodes)
            roots = {k: v or made[k] for k, v in roots.items()}
        data = {n: chunks_of(Path(r), args.horizon) for n, r in roots.items()}
        res = compare(data, args.vocab, args.scale)
    counts = {n: {"fit_chunks": int((~h).sum()), "test_chunks": int(h.sum())} for n, (_, h) in data.items()}
    rows = [
        [choice, n, r[n]["tokens_per_chunk"], r[n]["rmse"], r[n]["max_abs_err"], r[n]["valid"], r["fit_s"]]
        for choice, r in res.items()
        for n in data
    ]
    cfg = {"horizon": args.horizon, "vocab": args.vocab, "scale": args.scale}
    out = {"machine": machine_info(), "config": cfg, "chunks": counts, "results": res}
    emit(
        "tokenizer_embodiments",
        out,
        rows,
        ["choice", "robot", "tokens/chunk", "rmse", "max_err", "valid", "fit_s"],
    )
    return out


if __name__ == "__main__":
    main()
