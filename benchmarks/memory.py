"""Training-memory budget of the real 4.15 B Wall-OSS-0.5 geometry (``wall-oss-0.5`` preset).

The model is built on the meta device (no memory) for the exact parameter, gradient and optimiser-state
bytes of each regime; activations come from :mod:`wall_core.training.memory` (saved-for-backward bytes of
real forwards of 1-2-layer models of the real widths at batch 1, extrapolated exactly to full depth and
to the batch). Peak = weights + optimiser state + max(activations + tied-head gradient, gradients + the
optimiser's per-parameter temporary). The same code predicts a small model's measured peak (torch's
``MemTracker``) within 2% (test_scale_memory.py), with and without activation checkpointing (the real
switch, ``trainer.activation_checkpointing`` / ``WallVLA.set_activation_checkpointing``).

Run: ``python benchmarks/memory.py [--cameras 1 --image-size 448 --text-tokens 128 --action-tokens 64]``
(a few minutes on CPU: ten or so shallow forwards with the 151,936-row embedding).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info

from wall_core.convert.init import released_flat_config
from wall_core.model import WallVLA
from wall_core.model.presets import wall_oss_05_config
from wall_core.training.memory import activation_bytes, activation_costs, peak_bytes, regimes, state_bytes

GIB = 2**30
AUTHOR = released_flat_config()  # the real 4.15 B geometry (flat author config)


def _param_groups(model: WallVLA) -> dict[str, int]:
    groups = {"vision": 0, "language model": 0, "action expert": 0, "other": 0}
    for name, p in model.named_parameters():
        key = (
            "vision"
            if ".visual." in name
            else "language model"
            if name.startswith("backbone.")
            else "action expert"
            if name.startswith("expert.")
            else "other"
        )
        groups[key] += p.numel()
    return groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=448)
    ap.add_argument("--text-tokens", type=int, default=128)
    ap.add_argument("--action-tokens", type=int, default=64)
    ap.add_argument("--lora-rank", type=int, default=16)
    a = ap.parse_args()
    shape = dict(
        cameras=a.cameras, image_size=a.image_size, text_tokens=a.text_tokens, action_tokens=a.action_tokens
    )
    with torch.device("meta"):
        model = WallVLA(wall_oss_05_config())
    groups = _param_groups(model)
    cache: dict[tuple, dict[str, int]] = {}
    rows, results = [], []
    for regime in regimes(a.lora_rank):
        key = (regime.weights, regime.lora, regime.frozen_vision)
        if key not in cache:
            cache[key] = activation_costs(AUTHOR, regime, isolate=True, **shape)
        st = state_bytes(model, regime)
        for batch in (1, 8):
            for ckpt in (False, True):
                act = activation_bytes(AUTHOR, regime, cache[key], batch, ckpt, **shape)
                peak = peak_bytes(st, act)
                res = {"regime": regime.name, "batch": batch, "checkpointing": ckpt, **st, "activations": act}
                results.append({**res, "peak": peak})
                rows.append([regime.name, batch, "yes" if ckpt else "no", st["weights"] / GIB,
                             st["gradients"] / GIB, st["optimizer"] / GIB, act / GIB, peak / GIB])  # fmt: skip
    info = {"machine": machine_info(), "params": groups, "total_params": sum(groups.values()), "shape": shape}
    emit(
        "memory",
        {**info, "rows": results},
        rows,
        ["regime", "batch", "act ckpt", "weights GiB", "grads GiB", "optim GiB", "activ GiB", "peak GiB"],
    )


if __name__ == "__main__":
    main()
