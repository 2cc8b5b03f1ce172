"""``train(cfg)``: everything between a YAML config and an exported WallPolicy directory."""

from __future__ import annotations

import json
import logging
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
from ..processor import WallProcessor
from .module import WallDataModule, WallLightningModule
from .optim import OptimConfig

__all__ = [
    "DataConfig",
    "ObjectiveConfig",
    "TokenizerConfig",
    "TrainConfig",
    "TrainerConfig",
    "fit_action_tokenizer",
    "load_config",
    "train",
]
logger = logging.getLogger(__name__)


@dataclass
class DataConfig:
    datasets: list[dict[str, Any]] = field(default_factory=list)  # {root, kind: lerobot|vqa, weight, name}
    batch_size: int = 16
    num_workers: int = 0
    stats_from: str | None = None  # a stats.json; default: the first LeRobot dataset's meta/stats.json


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
    strategy: str = "auto"  # e.g. ddp, fsdp
    precision: str = "32-true"
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True


@dataclass
class TrainConfig:
    seed: int = 0
    out_dir: str = "runs/train"
    resume: str | None = None  # a Lightning .ckpt to continue from
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


def _robot_datasets(cfg: TrainConfig) -> list[dict[str, Any]]:
    robots = [d for d in cfg.data.datasets if d.get("kind", "lerobot") == "lerobot"]
    if not robots:
        raise ValueError("data.datasets needs at least one LeRobot dataset (kind: lerobot)")
    return robots


def fit_action_tokenizer(
    roots: list[str],
    stats: dict,
    horizon: int,
    kind: str = "fast",
    max_chunks: int = 4000,
    seed: int = 0,
    **options: Any,
) -> wall_tokenizer.ActionTokenizer:
    """Fit a tokenizer on normalised action chunks drawn from LeRobot datasets."""
    norm = wall_data.Normalizer(stats, ["action"], "quantile")
    rng = np.random.default_rng(seed)
    chunks = []
    for root in roots:
        ds = wall_data.LeRobotDataset(root, action_horizon=horizon, cameras=[])
        idx = rng.choice(len(ds), size=min(len(ds), max_chunks // len(roots)), replace=False)
        for i in idx:
            rows, _ = ds.chunk_indices(int(i))
            chunks.append(ds.arrays["action"][rows])
    arr = norm.normalize({"action": np.stack(chunks)})["action"].astype(np.float64)
    return wall_tokenizer.create(kind, **options).fit(arr)


def build(cfg: TrainConfig) -> tuple[WallVLA, WallProcessor, WallDataModule]:
    robots = _robot_datasets(cfg)
    stats_path = Path(cfg.data.stats_from or Path(robots[0]["root"]) / "meta" / "stats.json")
    stats = wall_data.load_stats(stats_path)
    horizon = cfg.model.action_horizon
    tok = None
    if cfg.tokenizer.kind != "none" and cfg.objective.w_action_ce > 0:
        if cfg.tokenizer.path:
            tok = wall_tokenizer.load(cfg.tokenizer.path)
        else:
            tok = fit_action_tokenizer(
                [d["root"] for d in robots],
                stats,
                horizon,
                cfg.tokenizer.kind,
                cfg.tokenizer.max_chunks,
                cfg.seed,
                **cfg.tokenizer.options,
            )
    cfg.model.num_action_tokens = tok.vocab_size if tok is not None else 0
    torch.manual_seed(cfg.seed)
    model = WallVLA(cfg.model)
    bb = model.backbone
    size = cfg.model.image_size
    proc = WallProcessor(
        bb.tokenizer,
        bb.num_image_tokens((size, size)),
        cfg.model.state_dim,
        cfg.model.action_dim,
        horizon,
        cfg.model.cameras,
        size,
        model.host_vocab_size,
        tok,
        stats,
    )
    dm = WallDataModule(
        cfg.data.datasets,
        proc,
        cfg.data.batch_size,
        cfg.data.num_workers,
        horizon,
        cfg.model.cameras,
        size,
        cfg.seed,
        cfg.optim.max_steps,
    )
    return model, proc, dm


def train(
    cfg: TrainConfig, callbacks: list[L.Callback] | None = None
) -> tuple[WallPolicy, WallLightningModule]:
    """Fit, then export ``out_dir/policy`` (safetensors + config + processor) and ``out_dir/history.json``."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(cfg.out_dir)
    model, proc, dm = build(cfg)
    ob = cfg.objective
    objective = WallObjective(
        ob.w_text_ce, ob.w_action_ce, ob.w_flow, ob.bridge, ob.bridge_scale, cfg.model.flow_space, ob.ce
    )
    module = WallLightningModule(model, objective, cfg.optim, cfg.seed)
    tc = cfg.trainer
    ckpt = ModelCheckpoint(
        dirpath=out / "checkpoints", every_n_train_steps=cfg.checkpoint_every, save_last=True, save_top_k=0
    )
    trainer = L.Trainer(
        max_steps=cfg.stop_after or cfg.optim.max_steps, accelerator=tc.accelerator, devices=tc.devices, strategy=tc.strategy,
        precision=tc.precision, gradient_clip_val=cfg.optim.grad_clip or None, log_every_n_steps=tc.log_every_n_steps,
        enable_progress_bar=tc.enable_progress_bar, default_root_dir=str(out), logger=False,
        callbacks=[*(callbacks or []), ckpt], enable_model_summary=False, deterministic=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.resume)
    policy = WallPolicy(model, proc)
    policy.save_pretrained(out / "policy")
    (out / "history.json").write_text(json.dumps(module.history))
    OmegaConf.save(OmegaConf.structured(cfg), out / "train_config.yaml")
    return policy, module
