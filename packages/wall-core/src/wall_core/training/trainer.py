"""The Lightning ``Trainer`` of a training run (split out of :mod:`wall_core.training.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from .checkpoint_io import ChecksumCheckpointIO
from .fsdp import BF16, fsdp2_strategy
from .precision import trainer_precision
from .progress import ProgressLog

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = ["make_trainer"]


def make_trainer(cfg: TrainConfig, out: Path, callbacks: list[L.Callback] | None) -> L.Trainer:
    """The Lightning trainer of a run: checkpoints under ``out/checkpoints`` (checksummed unless fsdp2),
    precision, strategy, gradient clipping, ``callbacks`` + checkpointing + progress logging."""
    tc = cfg.trainer
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints", every_n_train_steps=cfg.checkpoint_every, save_last=True, save_top_k=0
    )
    fsdp2 = tc.strategy == "fsdp2"  # sharded checkpoints are folders of shards: no single-file checksum
    # under fsdp2, bf16 is FSDP2's MixedPrecisionPolicy (WallLightningModule.fsdp_precision), not a plugin
    prec = trainer_precision("32-true" if fsdp2 and tc.precision in BF16 else tc.precision)
    plugins = [*prec.pop("plugins", []), *([] if fsdp2 else [ChecksumCheckpointIO()])]
    strategy = fsdp2_strategy(tc.devices) if fsdp2 else tc.strategy
    return L.Trainer(
        max_steps=cfg.stop_after or cfg.optim.max_steps, accelerator=tc.accelerator, devices=tc.devices, strategy=strategy,
        **prec, gradient_clip_val=cfg.optim.grad_clip or None, log_every_n_steps=tc.log_every_n_steps,
        enable_progress_bar=tc.enable_progress_bar, default_root_dir=str(out), logger=False,
        callbacks=[*(callbacks or []), ckpt, ProgressLog(when="no-tty")], enable_model_summary=False, deterministic=False,
        plugins=plugins,
    )  # fmt: skip
