"""Thin Lightning wrappers: the module receives a model + objective; the data module wraps wall-data."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

import wall_data

from ..objective import WallObjective
from ..processing import Pipeline
from .guards import NonFiniteGuard
from .optim import OptimConfig, build_optimizer

__all__ = ["WallDataModule", "WallLightningModule", "dataset_names"]
logger = logging.getLogger(__name__)


def dataset_names(specs: list[dict[str, Any]]) -> list[str]:
    """The ``dataset`` name of each entry of ``data.datasets``: its ``name``, else ``<kind><index>``."""
    return [spec.get("name") or f"{spec.get('kind', 'lerobot')}{i}" for i, spec in enumerate(specs)]


class WallLightningModule(L.LightningModule):
    """``training_step`` = objective(model, batch) with flow noise drawn from a per-step generator, so a
    resumed run reproduces an uninterrupted one. Logs the total and every objective term.

    ``guard`` (default: stop) checks each step's loss and gradients; a skipped step (``on_nonfinite="skip"``)
    returns no loss / drops its gradients, so the optimiser does not move. ``history_path``: when given, the
    loss history is rewritten there every ``history_every`` steps (a killed run keeps it)."""

    def __init__(
        self,
        model: torch.nn.Module,
        objective: WallObjective,
        optim: OptimConfig | None = None,
        seed: int = 0,
        guard: NonFiniteGuard | None = None,
        history_path: str | Path | None = None,
        history_every: int = 10,
    ) -> None:
        super().__init__()
        self.model, self.objective, self.optim_cfg, self.seed = model, objective, optim or OptimConfig(), seed
        self.guard = guard or NonFiniteGuard("stop")
        self.history_path = Path(history_path) if history_path is not None else None
        self.history_every = max(1, int(history_every))
        self.history: list[dict[str, float]] = []
        self.config_text: str | None = None  # the run's YAML config, stored in every checkpoint

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        """One batch -> the weighted loss (scalar), or ``None`` when the guard skips a non-finite loss."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.global_step))
        out = self.objective(self.model, batch, generator=gen)
        step = int(self.global_step)
        if not self.guard.loss_ok(out.loss, out.terms, step, batch, batch_idx):
            return None
        bs = batch.batch_size
        self.log("train/loss", out.loss, prog_bar=True, batch_size=bs)
        for k, v in out.terms.items():
            self.log(f"train/{k}", v, prog_bar=True, batch_size=bs)
        per_dataset = {f"{d}/{k}": v for d, terms in out.by_dataset.items() for k, v in terms.items()}
        for k, v in per_dataset.items():  # per-dataset ("channel") losses, every term
            self.log(f"train/{k}", v, batch_size=bs)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self._trainer is not None else float("nan")
        self.history.append(
            {
                "step": int(self.global_step),
                "lr": lr,
                "loss": out.loss.item(),
                **{k: float(v) for k, v in out.terms.items()},
                **{k: float(v) for k, v in per_dataset.items()},
            }
        )
        if self.history_path is not None and len(self.history) % self.history_every == 0:
            self.write_history()
        return out.loss

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Gradient check before the step; a skipped step has its gradients dropped (the optimiser skips it)."""
        if not self.guard.grads_ok(self.model.named_parameters(), int(self.global_step)):
            for p in self.model.parameters():
                p.grad = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the run's config (YAML text) so a resume can compare its settings."""
        if self.config_text is not None:
            checkpoint["wall_train_config"] = self.config_text

    def write_history(self) -> None:
        """Rewrite ``history_path`` (a JSON list of per-step dicts) atomically."""
        if self.history_path is None:
            return
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.history_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.history))
        os.replace(tmp, self.history_path)

    def configure_optimizers(self) -> Any:
        opt, sched = build_optimizer(self.model, self.optim_cfg)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return (
            batch.to(device)
            if hasattr(batch, "to")
            else super().transfer_batch_to_device(batch, device, dataloader_idx)
        )


class WallDataModule(L.LightningDataModule):
    """LeRobot datasets (+ optional VQA corpora) mixed by weight with :class:`wall_data.IndexedMixture`.

    Samples are a pure function of their global index and the loader is a torchdata ``StatefulDataLoader``
    whose position Lightning stores in the checkpoint, so resuming continues the exact sample stream.
    """

    def __init__(
        self,
        datasets: list[dict[str, Any]],
        pipeline: Pipeline,
        batch_size: int = 16,
        num_workers: int = 0,
        action_horizon: int = 16,
        cameras: list[str] | None = None,
        seed: int = 0,
        max_steps: int = 1000,
    ) -> None:
        super().__init__()
        self.specs, self.pipeline = datasets, pipeline
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.max_steps, self.action_horizon, self.cameras = max_steps, action_horizon, cameras
        self.mixture: Dataset | None = None

    def names(self) -> list[str]:
        """Dataset names, as :func:`dataset_names`."""
        return dataset_names(self.specs)

    def build_datasets(self) -> dict[str, Dataset]:
        """One wall-data dataset per entry. Frames keep their stored size: the pipeline's image step resizes
        them once, to the model's size."""
        out: dict[str, Dataset] = {}
        for name, spec in zip(self.names(), self.specs):
            kind = spec.get("kind", "lerobot")
            if kind == "lerobot":
                out[name] = wall_data.LeRobotDataset(
                    spec["root"], action_horizon=self.action_horizon, cameras=self.cameras, name=name
                )
            elif kind == "vqa":
                out[name] = wall_data.VQADataset(spec["root"], name=name)
            else:
                raise ValueError(f"dataset kind must be 'lerobot' or 'vqa', got {kind!r} for {name}")
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.mixture is None:
            dsets = self.build_datasets()
            weights = {n: float(spec.get("weight", 1.0)) for n, spec in zip(self.names(), self.specs)}
            self.mixture = wall_data.IndexedMixture(
                dsets, weights, seed=self.seed, length=(self.max_steps + 1) * self.batch_size
            )

    def train_dataloader(self) -> DataLoader:
        """A stateful loader over the mixture whose ``collate_fn`` is the pipeline."""
        if self.mixture is None:
            raise RuntimeError("call setup() before train_dataloader()")
        # a stateful loader: Lightning checkpoints its position, so a resumed run continues the exact stream
        return StatefulDataLoader(
            self.mixture,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.pipeline,
        )
