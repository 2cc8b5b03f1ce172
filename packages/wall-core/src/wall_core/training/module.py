"""Thin Lightning wrappers: the module receives a model + objective; the data module wraps wall-data."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

import wall_data

from ..objective import WallObjective
from ..processing import Pipeline
from .guards import NonFiniteGuard
from .optim import OptimConfig, build_optimizer

__all__ = ["FLOW_NOISE", "WallDataModule", "WallLightningModule", "dataset_names", "row_generators"]
logger = logging.getLogger(__name__)
FLOW_NOISE = ("batch", "sample")


WORLD_KEY = "wall_world_size"


def rescale_loader_position(checkpoint: dict[str, Any], saved_world: int, new_world: int) -> None:
    """In place: every saved train-loader position (``samples_yielded`` of one process of ``saved_world``)
    becomes the position of one process of ``new_world`` over the same global stream (x saved / new).

    Raises ``ValueError`` when the samples read so far do not split evenly over the new processes."""
    if saved_world == new_world:
        return
    loaders = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader", [])
    for state in loaders or []:
        pos = (state or {}).get("_sampler_iter_state") or {}
        if "samples_yielded" not in pos:
            continue
        total = int(pos["samples_yielded"]) * saved_world
        if total % new_world:
            raise ValueError(
                f"the checkpoint's {saved_world} processes read {total} samples, which do not split over "
                f"{new_world} processes; resume with a process count that divides {total}"
            )
        pos["samples_yielded"] = total // new_world


def row_generators(seed: int, step: int, rows: list[int]) -> list[torch.Generator]:
    """One CPU generator per global batch row, seeded from ``(seed, step, row)`` through numpy's
    ``SeedSequence`` (well-mixed 64-bit seeds, no collisions between nearby steps and rows)."""
    states = [np.random.SeedSequence([seed, step, r]).generate_state(1, np.uint64)[0] for r in rows]
    return [torch.Generator().manual_seed(int(s)) for s in states]


def dataset_names(specs: list[dict[str, Any]]) -> list[str]:
    """The ``dataset`` name of each entry of ``data.datasets``: its ``name``, else ``<kind><index>``."""
    return [spec.get("name") or f"{spec.get('kind', 'lerobot')}{i}" for i, spec in enumerate(specs)]


class WallLightningModule(L.LightningModule):
    """``training_step`` = objective(model, batch) with flow noise drawn from a per-step generator, so a
    resumed run reproduces an uninterrupted one. Logs the total and every objective term.

    ``flow_noise``: ``"batch"`` (default) draws the step's flow times and noise from one generator for the
    local batch; ``"sample"`` gives every row its own generator seeded by (seed, step, global row), where the
    global row of local row j on rank r of W is ``r + W·j`` (the interleaving of torch's
    ``DistributedSampler``, which Lightning installs under DDP), so a W-process run draws for each sample
    what a one-process run with the same global batch draws (data-parallel parity). Under several
    processes the history's ``loss`` is the mean over ranks, which is the global batch's loss: with
    ``global_denominators`` (default) the objective divides every term by its count averaged over the ranks
    (:class:`~wall_core.objective.WallObjective` ``count_reducer``), so the averaged gradients are those of
    the global batch however its tokens fall between ranks; its other terms are rank 0's.

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
        flow_noise: str = "batch",
        global_denominators: bool = True,
    ) -> None:
        super().__init__()
        self.global_denominators = global_denominators
        if flow_noise not in FLOW_NOISE:
            raise ValueError(f"flow_noise must be one of {FLOW_NOISE}, got {flow_noise!r}")
        self.flow_noise = flow_noise
        self.model, self.objective, self.optim_cfg, self.seed = model, objective, optim or OptimConfig(), seed
        self.guard = guard or NonFiniteGuard("stop")
        self.history_path = Path(history_path) if history_path is not None else None
        self.history_every = max(1, int(history_every))
        self.history: list[dict[str, float]] = []
        self.config_text: str | None = None  # the run's YAML config, stored in every checkpoint
        self.fsdp_precision = "32-true"  # under FSDP2: trainer.precision, applied by FSDP2's policies

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        """One batch -> the weighted loss (scalar), or ``None`` when the guard skips a non-finite loss."""
        self._wire_count_reducer()
        out = self.objective(self.model, batch, generator=self.generators(batch.batch_size))
        step = int(self.global_step)
        global_loss = self._global_mean(out.loss.detach())  # every rank joins, before any early return
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
                "loss": global_loss,
                **{k: float(v) for k, v in out.terms.items()},
                **{k: float(v) for k, v in per_dataset.items()},
            }
        )
        if self.history_path is not None and len(self.history) % self.history_every == 0:
            self.write_history()
        return out.loss

    def generators(self, batch_size: int) -> torch.Generator | list[torch.Generator]:
        """The step's flow-noise generator(s): one (``flow_noise="batch"``) or one per row (``"sample"``)."""
        step = int(self.global_step)
        if self.flow_noise == "batch":
            return torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        rank, world = (self.global_rank, self.trainer.world_size) if self._trainer is not None else (0, 1)
        return row_generators(self.seed, step, [rank + world * j for j in range(batch_size)])

    def _wire_count_reducer(self) -> None:
        """Under several processes (and ``global_denominators``) the objective gets the strategy's mean over
        ranks as its ``count_reducer``; an objective without that attribute is left alone."""
        if not self.global_denominators or self._trainer is None or self.trainer.world_size == 1:
            return
        if getattr(self.objective, "count_reducer", False) is None:
            strategy = self.trainer.strategy
            self.objective.count_reducer = lambda v: strategy.reduce(v, reduce_op="mean")

    def _global_mean(self, value: torch.Tensor) -> float:
        """``value`` averaged over the processes of a distributed run (itself when there is one)."""
        if self._trainer is None or self.trainer.world_size == 1:
            return float(value)
        return float(self.trainer.strategy.reduce(value.float(), reduce_op="mean"))

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Gradient check before the step; a skipped step has its gradients dropped (the optimiser skips it)."""
        if not self.guard.grads_ok(self.model.named_parameters(), int(self.global_step)):
            for p in self.model.parameters():
                p.grad = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the run's config (YAML text) so a resume can compare its settings, and the number of
        processes (the loader position is per process)."""
        if self.config_text is not None:
            checkpoint["wall_train_config"] = self.config_text
        checkpoint[WORLD_KEY] = self.trainer.world_size if self._trainer is not None else 1

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming under a different number of processes: rescale the saved loader position (samples one
        process had read) to the new per-process share of the same global stream."""
        new = self.trainer.world_size if self._trainer is not None else 1
        rescale_loader_position(checkpoint, int(checkpoint.get(WORLD_KEY, 1)), new)

    def write_history(self) -> None:
        """Rewrite ``history_path`` (a JSON list of per-step dicts) atomically (rank 0 only)."""
        if self.history_path is None or (self._trainer is not None and not self.trainer.is_global_zero):
            return
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.history_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.history))
        os.replace(tmp, self.history_path)

    def configure_model(self) -> None:
        """Under FSDP2 (``ModelParallelStrategy``, which sets ``device_mesh``): shard the model per layer
        (:func:`~wall_core.training.fsdp.shard_model`) with the policies of ``fsdp_precision``; otherwise
        nothing."""
        if self.device_mesh is not None:
            from .fsdp import shard_model

            shard_model(self.model, self.device_mesh["data_parallel"], self.fsdp_precision)

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
        """Build the mixture once: long enough for ``max_steps`` global batches (``batch_size`` per process x
        the number of processes), so a data-parallel run never wraps into a second epoch."""
        if self.mixture is None:
            dsets = self.build_datasets()
            weights = {n: float(spec.get("weight", 1.0)) for n, spec in zip(self.names(), self.specs)}
            world = self.trainer.world_size if self.trainer is not None else 1
            self.mixture = wall_data.IndexedMixture(
                dsets, weights, seed=self.seed, length=(self.max_steps + 1) * self.batch_size * world
            )

    def train_dataloader(self) -> DataLoader:
        """A stateful loader over the mixture whose ``collate_fn`` is the pipeline.

        Under several processes it reads through an unshuffled ``DistributedSampler`` (rank r of W takes
        mixture indices r, r + W, ...), so step k's per-rank batches together are exactly the global batch a
        one-process run with W x ``batch_size`` rows sees at step k. (Lightning would otherwise install a
        shuffling one; the mixture is already a seeded random draw, so shuffling adds nothing.)"""
        if self.mixture is None:
            raise RuntimeError("call setup() before train_dataloader()")
        sampler: DistributedSampler[Any] | None = None
        if self.trainer is not None and self.trainer.world_size > 1:
            world, rank = self.trainer.world_size, self.trainer.global_rank
            sampler = DistributedSampler(self.mixture, num_replicas=world, rank=rank, shuffle=False)
        # a stateful loader: Lightning checkpoints its position, so a resumed run continues the exact stream
        return StatefulDataLoader(
            self.mixture,
            batch_size=self.batch_size,
            shuffle=False,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.pipeline,
        )
