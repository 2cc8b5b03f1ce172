"""A tiny ``wall_core.training.train`` run for the data-parallel tests (run as a script, never collected).

``python dist_worker.py DATA OUT --devices N --batch-size B --steps S [--resume CKPT] [--save-at K]``:
trains the tiny config below with Lightning (``--strategy`` ddp or fsdp2 over gloo when ``--devices`` > 1;
Lightning re-launches this script for the other ranks) and writes, on rank 0, ``OUT/policy/model.safetensors``,
``OUT/history.json`` and, with ``--save-at K``, ``OUT/step{K}.ckpt`` saved after step K (a folder of shards
under fsdp2). ``--precision`` / ``--activation-checkpointing`` set those trainer keys; ``--probe-dtypes``
writes ``OUT/dtypes.json``: the input dtype each watched module saw in the first step (rank 0).

By default the config gives every rank's loss the same denominator: every row is a robot row, the bin
tokenizer gives every chunk the same number of action tokens, the tasks have equal token counts and the flow
loss is the release's "all" reduction. ``--uneven`` (FAST tokens, whose count varies per chunk, and the
"valid" flow reduction, which counts padded steps out) gives the ranks different denominators;
``--local-denominators`` turns off the objective's averaging of them over the ranks.
"""

from __future__ import annotations

import argparse
import json
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


WATCH = ("layers.0.input_layernorm", "layers.0.self_attn.q_proj", "expert.layers.0.norm_in",
         "expert.layers.0.qkv_proj", "expert.proj_in", "expert.proj_out", "state_proj")  # fmt: skip


class DtypeProbe(L.Callback):
    """Record the dtype of the first floating input of each :data:`WATCH` module (first call) to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, m in pl_module.model.named_modules():
            if name.endswith(WATCH):
                m.register_forward_pre_hook(self._hook(name), with_kwargs=True)

    def _hook(self, name: str):
        def pre(_m, args, kwargs):
            floats = [
                a
                for a in [*args, *kwargs.values()]
                if hasattr(a, "is_floating_point") and a.is_floating_point()
            ]
            if floats:
                self.seen.setdefault(name, str(floats[0].dtype))

        return pre

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(self.seen))


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
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--probe-dtypes", action="store_true")
    ap.add_argument("--uneven", action="store_true", help="FAST tokens + valid flow reduction (module doc)")
    ap.add_argument("--local-denominators", action="store_true")
    a = ap.parse_args()
    ddp = a.devices > 1
    cfg = load_config(None, [
        f"out_dir={a.out}", f"optim.max_steps={a.steps}", "optim.warmup_steps=1", "optim.lr=1e-3",
        f"data.batch_size={a.batch_size}", "model.action_horizon=4", "model.state_dim=8", "model.action_dim=4",
        "model.cameras=[observation.images.cam]", f"model.flow_loss_reduction={'valid' if a.uneven else 'all'}", f"tokenizer.kind={'fast' if a.uneven else 'bins'}",
        "trainer.enable_progress_bar=false", "model.backbone_overrides={num_layers: 2}", "trainer.flow_noise=sample",
        "trainer.accelerator=cpu", f"trainer.devices={a.devices}", f"trainer.strategy={a.strategy if ddp else 'auto'}",
        "checkpoint_every=1000", f"trainer.precision={a.precision}",
        f"trainer.activation_checkpointing={str(a.activation_checkpointing).lower()}",
        "resume_allow_changes=[trainer.devices,trainer.strategy,data.batch_size,trainer.activation_checkpointing]",
    ])  # fmt: skip
    cfg.tokenizer.options = {"vocab_size": 64} if a.uneven else {"num_bins": 32}
    cfg.trainer.global_loss_denominators = not a.local_denominators
    cfg.data.datasets = [{"root": a.data, "kind": "lerobot", "name": "toy"}]
    cfg.resume = a.resume
    cfg.resume_verify = not (a.resume and Path(a.resume).is_dir())  # shards carry no .sha256
    out = Path(a.out)
    callbacks: list[L.Callback] = [SaveAt(a.save_at, out / f"step{a.save_at}.ckpt")] if a.save_at else []
    if a.probe_dtypes:
        callbacks.append(DtypeProbe(out / "dtypes.json"))
    train(cfg, callbacks=callbacks or None)


if __name__ == "__main__":
    main()
