"""``train(cfg)``: everything between a YAML config and an exported WallPolicy directory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

import wall_data
import wall_tokenizer

from ..model import WallVLA, WallVLAConfig
from ..objective import WallObjective
from ..policy import WallPolicy
from ..processing import Pipeline, build_pipeline, normalize_tensor
from .fsdp import fsdp2_strategy, full_state_dict
from .guards import NonFiniteGuard, check_finite_weights, check_resume_path
from .module import WallDataModule, WallLightningModule, dataset_names
from .optim import OptimConfig
from .precision import trainer_precision
from .progress import ProgressLog
from .resume import check_resume_config, config_text

__all__ = [
    "DataConfig",
    "ObjectiveConfig",
    "TokenizerConfig",
    "TrainConfig",
    "TrainerConfig",
    "fit_action_tokenizer",
    "load_config",
    "load_dataset_stats",
    "train",
]
logger = logging.getLogger(__name__)


@dataclass
class DataConfig:
    # each: {root, kind: lerobot|vqa, weight, name, stats (a stats.json; default root/meta/stats.json),
    #        embodiment (a name in wall_data.default_registry(); default: packed from the stats' dims)}
    datasets: list[dict[str, Any]] = field(default_factory=list)
    batch_size: int = 16
    num_workers: int = 0


@dataclass
class TokenizerConfig:
    kind: str = "fast"  # fast | bins | rvq | none
    path: str | None = None  # a saved tokenizer to reuse instead of fitting
    options: dict[str, Any] = field(default_factory=lambda: {"scale": 10, "vocab_size": 512})
    max_chunks: int = 4000


@dataclass
class ObjectiveConfig:
    w_text_ce: float = 0.3
    w_action_ce: float = 0.3
    w_flow: float = 1.0
    bridge: str = "full"
    bridge_scale: float = 1.0
    ce: str = "pooled"  # one CE over all supervised tokens (release) or "separate" means


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"  # e.g. ddp; fsdp2 = per-layer FSDP2 + sharded checkpoints (training.fsdp)
    precision: str = "32-true"  # bf16-true keeps norms + action/state paths fp32 (training.precision)
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True
    on_nonfinite: str = (
        "stop"  # a NaN/inf loss or gradient: stop (error naming step + batch) | skip (counted)
    )
    max_nonfinite_skips: int = 10  # "skip" still stops after this many skipped steps
    # flow times/noise: "batch" (one generator per step) | "sample" (one per global row: a data-parallel run
    # draws what one process with the same global batch draws; see WallLightningModule)
    flow_noise: str = "batch"


@dataclass
class TrainConfig:
    seed: int = 0
    out_dir: str = "runs/train"
    resume: str | None = None  # a local Lightning .ckpt to continue from (URLs are refused)
    resume_allow_changes: list[str] = field(default_factory=list)  # config keys a resume may change
    checkpoint_every: int = 500  # Lightning checkpoints (out_dir/checkpoints/last.ckpt) every N steps
    stop_after: int | None = (
        None  # stop early at this step (as a preemption would); the schedule keeps optim.max_steps
    )
    data: DataConfig = field(default_factory=DataConfig)
    model: WallVLAConfig = field(default_factory=WallVLAConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Structured config: YAML file + dotted ``key=value`` overrides; unknown keys raise."""
    cfg = OmegaConf.structured(TrainConfig)
    if path:
        cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]


def _robot_datasets(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """``{dataset name: entry}`` of the LeRobot datasets in ``data.datasets`` (at least one)."""
    names = dataset_names(cfg.data.datasets)
    robots = {n: d for n, d in zip(names, cfg.data.datasets) if d.get("kind", "lerobot") == "lerobot"}
    if not robots:
        raise ValueError("data.datasets needs at least one LeRobot dataset (kind: lerobot)")
    return robots


def load_dataset_stats(robots: dict[str, dict[str, Any]]) -> dict[str, dict[str, wall_data.FeatureStats]]:
    """Each LeRobot dataset's own statistics (its ``stats`` entry or ``root/meta/stats.json``), by name."""
    return {
        name: wall_data.load_stats(Path(d.get("stats") or Path(d["root"]) / "meta" / "stats.json"))
        for name, d in robots.items()
    }


def fit_action_tokenizer(
    roots: list[str],
    stats: Mapping[str, wall_data.FeatureStats] | list[Mapping[str, wall_data.FeatureStats]],
    horizon: int,
    kind: str = "fast",
    max_chunks: int = 4000,
    seed: int = 0,
    **options: Any,
) -> wall_tokenizer.ActionTokenizer:
    """Fit a tokenizer on action chunks [N, H, A] drawn from LeRobot datasets, each normalised with its own
    stats (``stats``: one mapping for every root, or a list with one per root) by the pipeline's rule."""
    per_root = list(stats) if isinstance(stats, list) else [stats] * len(roots)
    if len(per_root) != len(roots):
        raise ValueError(f"got {len(per_root)} stats for {len(roots)} datasets")
    rng = np.random.default_rng(seed)
    chunks = []
    for root, st in zip(roots, per_root):
        ds = wall_data.LeRobotDataset(root, action_horizon=horizon, cameras=[])
        idx = rng.choice(len(ds), size=min(len(ds), max_chunks // len(roots)), replace=False)
        rows = np.stack([ds.chunk_indices(int(i))[0] for i in idx])
        chunks.append(normalize_tensor(torch.from_numpy(ds.arrays["action"][rows]), st["action"]))
    # wall_tokenizer is numpy-only and fits on float64 chunks
    return wall_tokenizer.create(kind, **options).fit(torch.cat(chunks).numpy().astype(np.float64))


def _embodiments(robots: dict[str, dict[str, Any]]) -> dict[str, wall_data.EmbodimentSpec]:
    reg = wall_data.default_registry()
    return {name: reg.get(d["embodiment"]) for name, d in robots.items() if d.get("embodiment")}


def build(cfg: TrainConfig) -> tuple[WallVLA, Pipeline, WallDataModule]:
    """Model, pipeline and data module of a training config (fits the action tokenizer if needed)."""
    robots = _robot_datasets(cfg)
    stats = load_dataset_stats(robots)
    horizon = cfg.model.action_horizon
    tok = None
    if cfg.tokenizer.kind != "none" and cfg.objective.w_action_ce > 0:
        if cfg.tokenizer.path:
            tok = wall_tokenizer.load(cfg.tokenizer.path)
        else:
            tc = cfg.tokenizer
            roots = [d["root"] for d in robots.values()]
            tok = fit_action_tokenizer(
                roots, [stats[n] for n in robots], horizon, tc.kind, tc.max_chunks, cfg.seed, **tc.options
            )
    cfg.model.num_action_tokens = tok.vocab_size if tok is not None else 0
    torch.manual_seed(cfg.seed)
    model = WallVLA(cfg.model)
    pipeline = build_pipeline(model, stats=stats, action_tokenizer=tok, embodiments=_embodiments(robots))
    dm = WallDataModule(
        cfg.data.datasets, pipeline, cfg.data.batch_size, cfg.data.num_workers, horizon, cfg.model.cameras,
        cfg.seed, cfg.optim.max_steps,
    )  # fmt: skip
    return model, pipeline, dm


def train(
    cfg: TrainConfig, callbacks: list[L.Callback] | None = None
) -> tuple[WallPolicy, WallLightningModule]:
    """Fit, then export ``out_dir/policy`` (safetensors + config + pipeline) and ``out_dir/history.json``."""
    if cfg.optim.max_steps <= 0 or (cfg.stop_after is not None and cfg.stop_after <= 0):
        raise ValueError(
            f"optim.max_steps={cfg.optim.max_steps} / stop_after={cfg.stop_after} must be positive "
            "(a run of no steps would export an untrained policy)"
        )
    resume = check_resume_path(cfg.resume) if cfg.resume else None  # before anything is read or fetched
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(cfg.out_dir)
    model, pipeline, dm = build(cfg)  # fills derived keys (model.num_action_tokens) as the first run did
    if resume is not None:
        changed = check_resume_config(resume, cfg, cfg.resume_allow_changes)
        if changed:
            logger.warning("resuming %s with changed settings (allowed): %s", resume, changed)
    ob = cfg.objective
    objective = WallObjective(
        ob.w_text_ce, ob.w_action_ce, ob.w_flow, ob.bridge, ob.bridge_scale, cfg.model.flow_space, ob.ce
    )
    tc = cfg.trainer
    guard = NonFiniteGuard(tc.on_nonfinite, tc.max_nonfinite_skips)
    module = WallLightningModule(
        model,
        objective,
        cfg.optim,
        cfg.seed,
        guard,
        out / "history.json",
        tc.log_every_n_steps,
        tc.flow_noise,
    )
    module.config_text = config_text(cfg)
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints", every_n_train_steps=cfg.checkpoint_every, save_last=True, save_top_k=0
    )
    strategy = fsdp2_strategy(tc.devices) if tc.strategy == "fsdp2" else tc.strategy
    trainer = L.Trainer(
        max_steps=cfg.stop_after or cfg.optim.max_steps, accelerator=tc.accelerator, devices=tc.devices, strategy=strategy,
        **trainer_precision(tc.precision), gradient_clip_val=cfg.optim.grad_clip or None, log_every_n_steps=tc.log_every_n_steps,
        enable_progress_bar=tc.enable_progress_bar, default_root_dir=str(out), logger=False,
        callbacks=[*(callbacks or []), ckpt, ProgressLog(when="no-tty")], enable_model_summary=False, deterministic=False,
    )  # fmt: skip
    # weights_only=True: the checkpoint is unpickled only as tensors and plain containers
    trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)
    module.write_history()
    if tc.strategy == "fsdp2":  # gather the shards (every rank joins) into an unsharded copy
        full = full_state_dict(model)
        model = WallVLA(cfg.model)
        if trainer.is_global_zero:
            model.load_state_dict(full)
    check_finite_weights(model.state_dict(), "the trained model")
    if guard.skipped:
        logger.warning("%d optimiser step(s) skipped for non-finite loss/gradients", guard.skipped)
    policy = WallPolicy(model, pipeline)
    if trainer.is_global_zero:  # one writer under data parallelism (every rank holds the same weights)
        policy.save_pretrained(out / "policy")
        OmegaConf.save(OmegaConf.structured(cfg), out / "train_config.yaml")
    return policy, module
