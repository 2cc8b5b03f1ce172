"""``train(cfg)``: everything between a YAML config and an exported WallPolicy directory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf

import wall_data
import wall_tokenizer

from ..model import WallVLA
from ..objective import WallObjective
from ..policy import WallPolicy
from ..processing import NormalizeAR, Pipeline, build_pipeline, embodiment_from_stats
from ..processing.relative import relative_dims, relative_stats
from .checkpoint_io import verify_checkpoint
from .config import DataConfig, ObjectiveConfig, TokenizerConfig, TrainConfig, TrainerConfig, load_config
from .fsdp import full_state_dict
from .guards import NonFiniteGuard, check_finite_weights, check_resume_path
from .lora import apply_lora, merge_lora
from .module import WallDataModule, WallLightningModule, dataset_names
from .resume import check_resume_config, config_text
from .trainer import make_trainer

__all__ = [
    "DataConfig",
    "ObjectiveConfig",
    "TokenizerConfig",
    "TrainConfig",
    "TrainerConfig",
    "ar_normalizer",
    "fit_action_tokenizer",
    "load_config",
    "load_dataset_stats",
    "train",
]
logger = logging.getLogger(__name__)


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


def ar_normalizer(
    roots: Mapping[str, str],
    stats: Mapping[str, Mapping[str, wall_data.FeatureStats]],
    quantiles: list[float] | None = None,
) -> NormalizeAR:
    """The AR normaliser of datasets ``{name: root}``: their flow q01/q99 (``quantiles=None``) or the given
    ``[low, high]`` quantiles of every raw action frame of each dataset."""
    actions = None
    if quantiles is not None:
        actions = {n: wall_data.LeRobotDataset(r, cameras=[]).arrays["action"] for n, r in roots.items()}
    return NormalizeAR.from_stats({n: stats[n] for n in roots}, quantiles, actions)


def _ar_chunks(
    root: str,
    name: str,
    ar: NormalizeAR,
    horizon: int,
    n: int,
    rng: np.random.Generator,
    relative: wall_data.RelativeActions | None,
) -> np.ndarray:
    """Up to ``n`` random action chunks float64 [n, H, A] of a LeRobot dataset, made relative to the chunk's
    first state when ``relative`` is given, then normalised by ``ar`` under ``name``."""
    ds = wall_data.LeRobotDataset(root, action_horizon=horizon, cameras=[])
    idx = rng.choice(len(ds), size=min(len(ds), n), replace=False)
    rows = np.stack([ds.chunk_indices(int(i))[0] for i in idx])
    chunk = torch.from_numpy(ds.arrays["action"][rows])
    if relative is not None:
        chunk = relative.encode(chunk, torch.from_numpy(ds.arrays["observation.state"][idx]).to(chunk.dtype))
    # wall_tokenizer is numpy-only and fits on float64 chunks
    return ar.normalize(chunk, name).numpy().astype(np.float64)


def fit_action_tokenizer(
    roots: list[str],
    stats: Mapping[str, wall_data.FeatureStats] | list[Mapping[str, wall_data.FeatureStats]],
    horizon: int,
    kind: str = "fast",
    max_chunks: int = 4000,
    seed: int = 0,
    ar: NormalizeAR | None = None,
    names: list[str] | None = None,
    *,
    relative: list[wall_data.RelativeActions | None] | None = None,
    per_embodiment: bool = False,
    **options: Any,
) -> wall_tokenizer.ActionTokenizer:
    """Fit a tokenizer on action chunks [N, H, A] drawn from LeRobot datasets, each normalised by the AR
    normaliser ``ar`` under its dataset name (``names``, one per root); without ``ar``, by the AR default:
    each root's own flow q01/q99 (``stats``: one mapping for every root, or a list with one per root).
    ``relative``: per root, its relative-action option (or None). ``per_embodiment``: one tokenizer per
    dataset (needs ``names``), returned as a :class:`wall_tokenizer.PerEmbodimentTokenizer` keyed by them;
    otherwise the datasets share one tokenizer (one action dim required)."""
    per_root = list(stats) if isinstance(stats, list) else [stats] * len(roots)
    rel = list(relative) if relative is not None else [None] * len(roots)
    if not len(per_root) == len(rel) == len(roots):
        raise ValueError(
            f"got {len(per_root)} stats and {len(rel)} relative options for {len(roots)} datasets"
        )
    if per_embodiment and (names is None or len(names) != len(roots)):
        raise ValueError(
            f"one tokenizer per embodiment needs a name for each of the {len(roots)} roots (names=)"
        )
    if ar is None:
        names = names or [f"{i}:{r}" for i, r in enumerate(roots)]
        ar = NormalizeAR.from_stats(dict(zip(names, per_root)))
    elif names is None or len(names) != len(roots):
        raise ValueError(
            f"with an AR normaliser, name the dataset of each of the {len(roots)} roots (names=)"
        )
    rng = np.random.default_rng(seed)
    n = max_chunks // len(roots)
    chunks = [_ar_chunks(r, nm, ar, horizon, n, rng, o) for r, nm, o in zip(roots, names, rel)]
    if per_embodiment:
        return wall_tokenizer.PerEmbodimentTokenizer.fit_each(dict(zip(names, chunks)), kind, **options)
    dims = sorted({c.shape[-1] for c in chunks})
    if len(dims) > 1:
        raise ValueError(
            f"one shared action tokenizer needs one action dim, these datasets have {dims}; fit one per "
            "embodiment (tokenizer.layout=per_embodiment, or per_embodiment=True)"
        )
    return wall_tokenizer.create(kind, **options).fit(np.concatenate(chunks))


def _embodiments(cfg: TrainConfig, robots: dict[str, dict[str, Any]]) -> dict[str, wall_data.EmbodimentSpec]:
    """``{dataset: spec}`` of the robot datasets that name an ``embodiment`` (all of them in the canonical
    layout, placed in the model's state/action widths)."""
    layout = _layout(cfg.data.layout, robots)
    if layout == "packed":
        reg = wall_data.default_registry()
    elif layout == "canonical":
        missing = sorted(n for n, d in robots.items() if not d.get("embodiment"))
        if missing:
            raise ValueError(
                f"data.layout=canonical places named fields: datasets {missing} need an 'embodiment' "
                f"(one of {wall_data.default_registry().names()})"
            )
        names = sorted({d["embodiment"] for d in robots.values()})
        reg = wall_data.canonical_registry(cfg.model.state_dim, cfg.model.action_dim, robots=names)
    else:
        raise ValueError(f"data.layout must be 'auto', 'packed' or 'canonical', got {layout!r}")
    return {name: reg.get(d["embodiment"]) for name, d in robots.items() if d.get("embodiment")}


def _layout(layout: str, robots: Mapping[str, Mapping[str, Any]]) -> str:
    """``data.layout`` resolved: ``auto`` is canonical when there are several robot datasets and every one names
    its embodiment (one model, many robots: the released model's padded space), else packed (one robot: its
    own dims from index 0, nothing to align with). The choice is logged."""
    if layout != "auto":
        return layout
    named = bool(robots) and all(d.get("embodiment") for d in robots.values())
    chosen = "canonical" if len(robots) > 1 and named else "packed"
    logger.info(
        "data.layout=auto -> %s (%d robot dataset(s), embodiments named: %s)", chosen, len(robots), named
    )
    return chosen


def _relative(
    robots: dict[str, dict[str, Any]],
    specs: Mapping[str, wall_data.EmbodimentSpec],
    stats: dict[str, dict[str, wall_data.FeatureStats]],
    horizon: int,
) -> dict[str, wall_data.RelativeActions]:
    """``{dataset: RelativeActions}`` of the datasets with ``relative_actions``; their ``stats["action"]``
    is replaced (in place) by the statistics of relative chunks."""
    out = {}
    for name, d in robots.items():
        if d.get("relative_actions"):
            spec = specs.get(name) or embodiment_from_stats(name, stats[name])
            out[name] = relative_dims(spec, d["relative_actions"])
            stats[name] = {**stats[name], "action": relative_stats(d["root"], out[name], horizon)}
    return out


def _per_embodiment(layout: str, robots: Mapping[str, Any]) -> bool:
    """Whether to fit one tokenizer per robot dataset (else one shared), by ``tokenizer.layout``."""
    if layout not in ("auto", "shared", "per_embodiment"):
        raise ValueError(f"tokenizer.layout must be auto, shared or per_embodiment, got {layout!r}")
    return layout == "per_embodiment" or (layout == "auto" and len(robots) > 1)


def build(cfg: TrainConfig) -> tuple[WallVLA, Pipeline, WallDataModule]:
    """Model, pipeline and data module of a training config (fits the action tokenizer if needed)."""
    robots = _robot_datasets(cfg)
    stats = load_dataset_stats(robots)
    horizon = cfg.model.action_horizon
    specs = _embodiments(cfg, robots)
    relative = _relative(robots, specs, stats, horizon)
    tok, ar, tc = None, None, cfg.tokenizer
    if tc.kind != "none" and cfg.objective.w_action_ce > 0:
        if relative and tc.ar_quantiles is not None:
            raise ValueError(
                f"tokenizer.ar_quantiles (quantiles of raw actions) cannot be combined with relative_actions "
                f"(datasets {sorted(relative)}); leave ar_quantiles unset to use the relative action stats"
            )
        ar = ar_normalizer({n: d["root"] for n, d in robots.items()}, stats, tc.ar_quantiles)
        if tc.path:  # a saved tokenizer must have been fitted on this AR normaliser's output
            tok = wall_tokenizer.load(tc.path)
        else:
            roots, names = [d["root"] for d in robots.values()], list(robots)
            tok = fit_action_tokenizer(
                roots, [stats[n] for n in robots], horizon, tc.kind, tc.max_chunks, cfg.seed, ar, names,
                relative=[relative.get(n) for n in robots], per_embodiment=_per_embodiment(tc.layout, robots),
                **tc.options,
            )  # fmt: skip
    cfg.model.num_action_tokens = tok.vocab_size if tok is not None else 0
    torch.manual_seed(cfg.seed)
    model = WallVLA(cfg.model)
    if cfg.trainer.activation_checkpointing:
        model.set_activation_checkpointing(True)
    dc = cfg.data
    pipeline = build_pipeline(
        model, stats=stats, action_tokenizer=tok, embodiments=specs, ar_normalizer=ar, relative=relative,
        max_prompt_tokens=dc.max_prompt_tokens, max_answer_tokens=dc.max_answer_tokens,
        on_long_answer=dc.on_long_answer,
    )  # fmt: skip
    dm = WallDataModule(
        cfg.data.datasets, pipeline, cfg.data.batch_size, cfg.data.num_workers, horizon, cfg.model.cameras,
        cfg.seed, cfg.optim.max_steps,
    )  # fmt: skip
    return model, pipeline, dm


def _checked_resume(cfg: TrainConfig) -> Path | None:
    """Refuse a run of no steps; return the checked resume checkpoint (its .sha256 verified) or None."""
    if cfg.optim.max_steps <= 0 or (cfg.stop_after is not None and cfg.stop_after <= 0):
        raise ValueError(
            f"optim.max_steps={cfg.optim.max_steps} / stop_after={cfg.stop_after} must be positive "
            "(a run of no steps would export an untrained policy)"
        )
    resume = check_resume_path(cfg.resume) if cfg.resume else None  # before anything is read or fetched
    if resume is not None and resume.is_dir() and cfg.trainer.strategy != "fsdp2":
        raise ValueError(
            f"resume={resume} is a sharded (fsdp2) checkpoint folder: resume it with trainer.strategy=fsdp2, or "
            "write one model.safetensors from it with wall_core.training.fsdp.consolidate_checkpoint"
        )
    if resume is not None:
        verify_checkpoint(resume, required=cfg.resume_verify)  # its .sha256, before torch reads a byte
    return resume


def train(
    cfg: TrainConfig, callbacks: list[L.Callback] | None = None
) -> tuple[WallPolicy, WallLightningModule]:
    """Fit, then export ``out_dir/policy`` (safetensors + config + pipeline) and ``out_dir/history.json``;
    with ``cfg.lora`` the model is LoRA-adapted before the optimiser is built and merged before export."""
    resume = _checked_resume(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(cfg.out_dir)
    model, pipeline, dm = build(cfg)  # fills derived keys (model.num_action_tokens) as the first run did
    if cfg.lora is not None:  # before the optimiser is built: it takes only the requires_grad parameters
        apply_lora(model, cfg.lora)
    if resume is not None:
        changed = check_resume_config(resume, cfg, cfg.resume_allow_changes)
        if changed:
            logger.warning("resuming %s with changed settings (allowed): %s", resume, changed)
    ob = cfg.objective
    objective = WallObjective(
        ob.w_text_ce, ob.w_action_ce, ob.w_flow, ob.bridge, ob.bridge_scale, cfg.model.flow_space, ob.ce,
        ob.rtc_max_delay,
    )  # fmt: skip
    tc = cfg.trainer
    guard = NonFiniteGuard(tc.on_nonfinite, tc.max_nonfinite_skips)
    module = WallLightningModule(
        model, objective, cfg.optim, cfg.seed, guard, out / "history.json", tc.log_every_n_steps, tc.flow_noise,
        tc.global_loss_denominators,
    )  # fmt: skip
    module.config_text = config_text(cfg)
    if tc.strategy == "fsdp2":
        module.fsdp_precision = tc.precision
    trainer = make_trainer(cfg, out, callbacks)
    # weights_only=True: the checkpoint is unpickled only as tensors and plain containers
    trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)
    module.write_history()
    if tc.strategy == "fsdp2":  # gather the shards (every rank joins) into an unsharded copy
        full = full_state_dict(model)
        model = WallVLA(cfg.model)
        if cfg.lora is not None:  # the gathered state still holds the adapters
            apply_lora(model, cfg.lora)
        if trainer.is_global_zero:
            model.load_state_dict(full)
    if cfg.lora is not None:  # export the plain merged model (W + scale B A): loading it needs no peft
        merge_lora(model)
    check_finite_weights(model.state_dict(), "the trained model")
    if guard.skipped:
        logger.warning("%d optimiser step(s) skipped for non-finite loss/gradients", guard.skipped)
    if any(pipeline.counts().values()):  # DataLoader workers count in their own copies (data.num_workers > 0)
        logger.warning("text limits (data.max_prompt_tokens / max_answer_tokens): %s", pipeline.counts())
    # a model trained with clean action prefixes is served the same way (prefix conditioning, not guidance)
    policy = WallPolicy(model, pipeline, rtc_mode="prefix" if ob.rtc_max_delay > 0 else "guidance")
    if trainer.is_global_zero:  # one writer under data parallelism (every rank holds the same weights)
        policy.save_pretrained(out / "policy")
        OmegaConf.save(OmegaConf.structured(cfg), out / "train_config.yaml")
    return policy, module
