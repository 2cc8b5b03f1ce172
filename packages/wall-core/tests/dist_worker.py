"""A tiny ``wall_core.training.train`` run for the data-parallel tests (run as a script, never collected).

``python dist_worker.py DATA OUT --devices N --batch-size B --steps S [--resume CKPT] [--save-at K]``:
trains the tiny config below with Lightning (``--strategy`` ddp or fsdp2 over gloo when ``--devices`` > 1;
Lightning re-launches this script for the other ranks) and writes, on rank 0, ``OUT/policy/model.safetensors``,
``OUT/history.json`` and, with ``--save-at K``, ``OUT/step{K}.ckpt`` saved after step K.

The config is chosen so every rank's loss has the same denominator (data-parallel gradients are the mean
of the per-rank means): every row is a robot row, the bin tokenizer gives every chunk the same number of
action tokens, the tasks have equal token counts and the flow loss is the release's "all" reduction.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import numpy as np

import wall_data as wd
from wall_core.training import load_config, train


def make_toy(root: Path) -> Path:
    """A 3-episode LeRobot dataset (state 5, action 2, one 64x64 camera) at ``root``."""
    feats = {
        "observation.state": {"dtype": "float32", "shape": [5]},
        "action": {"dtype": "float32", "shape": [2]},
        "observation.images.cam": {"dtype": "image", "shape": [64, 64, 3]},
    }
    w = wd.LeRobotWriter(root, fps=10, features=feats)
    rng = np.random.default_rng(0)
    for ep in range(3):
        for i in range(20):
            w.add_frame(
                {
                    "observation.state": rng.normal(size=5),
                    "action": np.array([np.sin(i / 3 + ep), np.cos(i / 3)]),
                    "observation.images.cam": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                }
            )
        w.save_episode(task=f"move {ep}")
    return w.finalize()


class SaveAt(L.Callback):
    """Save a full Lightning checkpoint to ``path`` right after optimiser step ``step``."""

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path, weights_only=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--save-at", type=int, default=0)
    ap.add_argument("--strategy", default="ddp", help="ddp | fsdp2 (with --devices > 1)")
    a = ap.parse_args()
    ddp = a.devices > 1
    cfg = load_config(None, [
        f"out_dir={a.out}", f"optim.max_steps={a.steps}", "optim.warmup_steps=1", "optim.lr=1e-3",
        f"data.batch_size={a.batch_size}", "model.action_horizon=4", "model.state_dim=8", "model.action_dim=4",
        "model.cameras=[observation.images.cam]", "model.flow_loss_reduction=all", "tokenizer.kind=bins",
        "trainer.enable_progress_bar=false", "model.backbone_overrides={num_layers: 2}", "trainer.flow_noise=sample",
        "trainer.accelerator=cpu", f"trainer.devices={a.devices}", f"trainer.strategy={a.strategy if ddp else 'auto'}",
        "checkpoint_every=1000", "resume_allow_changes=[trainer.devices,trainer.strategy,data.batch_size]",
    ])  # fmt: skip
    cfg.tokenizer.options = {"num_bins": 32}
    cfg.data.datasets = [{"root": a.data, "kind": "lerobot", "name": "toy"}]
    cfg.resume = a.resume
    out = Path(a.out)
    train(cfg, callbacks=[SaveAt(a.save_at, out / f"step{a.save_at}.ckpt")] if a.save_at else None)


if __name__ == "__main__":
    main()
