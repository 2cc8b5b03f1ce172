"""The training config: structured dataclasses (omegaconf) and ``load_config`` (YAML + dotted overrides)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..model import WallVLAConfig
from .lora import LoraSettings
from .optim import OptimConfig

__all__ = ["DataConfig", "ObjectiveConfig", "TokenizerConfig", "TrainConfig", "TrainerConfig", "load_config"]


@dataclass
class DataConfig:
    # each: {root, kind: lerobot|vqa, weight, name, stats (a stats.json; default root/meta/stats.json),
    #        embodiment (a name in wall_data.default_registry(); default: packed from the stats' dims),
    #        relative_actions (true: joints as deltas from the state, grippers absolute; or a list of
    #        action dim names; the action stats are recomputed on relative chunks)}
    datasets: list[dict[str, Any]] = field(default_factory=list)
    # packed: each robot's dims from index 0 (or its spec's slots); canonical: named fields in the
    # 26-D canonical layout (wall_data.canonical_registry; every robot dataset names its embodiment);
    # auto (default): canonical when several robot datasets all name their embodiment, else packed
    layout: str = "auto"
    batch_size: int = 16
    num_workers: int = 0
    # text limits, in tokens of the model's text tokenizer: a longer instruction / VQA question is cut (counted);
    # a longer supervised answer is never cut: "skip" drops the sample (counted), "error" raises
    max_prompt_tokens: int = 96
    max_answer_tokens: int = 256
    on_long_answer: str = "skip"


@dataclass
class TokenizerConfig:
    kind: str = "fast"  # fast | bins | rvq | none
    path: str | None = None  # a saved tokenizer to reuse instead of fitting
    options: dict[str, Any] = field(default_factory=lambda: {"scale": 10, "vocab_size": 512})
    max_chunks: int = 4000
    # the AR (discrete-branch) normaliser: None = the flow normaliser's q01/q99 (discrete targets unchanged;
    # the paper does not say what the release's holds), or [low, high] quantiles of each dataset's raw actions
    ar_quantiles: list[float] | None = None
    # shared: one tokenizer over every robot dataset (their action dims must agree); per_embodiment: one per
    # robot dataset (fewer tokens per chunk at equal error, benchmarks/tokenizer_embodiments.py); auto: shared
    # for one robot dataset, per_embodiment for several
    layout: str = "auto"


@dataclass
class ObjectiveConfig:
    w_text_ce: float = 0.3
    w_action_ce: float = 0.3
    w_flow: float = 1.0
    bridge: str = "full"
    bridge_scale: float = 1.0
    ce: str = "pooled"  # one CE over all supervised tokens (release) or "separate" means
    rtc_max_delay: int = 0  # training-time RTC: clean action prefixes of d ~ U{0..max} steps; 0 = off


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"  # e.g. ddp; fsdp2 = per-layer FSDP2 + sharded checkpoints (training.fsdp)
    # bf16-true keeps norms + action/state paths fp32 (training.precision); under fsdp2 bf16-mixed and
    # bf16-true both mean FSDP2's MixedPrecisionPolicy: fp32 shards, bf16 compute, fp32 modules (training.fsdp)
    precision: str = "32-true"
    log_every_n_steps: int = 10
    enable_progress_bar: bool = True
    on_nonfinite: str = (
        "stop"  # a NaN/inf loss or gradient: stop (error naming step + batch) | skip (counted)
    )
    max_nonfinite_skips: int = 10  # "skip" still stops after this many skipped steps
    # flow times/noise: "batch" (one generator per step) | "sample" (one per global row: a data-parallel run
    # draws what one process with the same global batch draws; see WallLightningModule)
    flow_noise: str = "batch"
    # data parallel: divide each loss term by its count averaged over the processes (the global batch's loss
    # and gradients, however tokens / valid action elements fall between them); false = each process's own
    global_loss_denominators: bool = True
    # recompute every backbone decoder layer, expert layer and vision block in backward (same values and
    # gradients, activation memory ~ one layer's; WallVLA.set_activation_checkpointing)
    activation_checkpointing: bool = False


@dataclass
class TrainConfig:
    seed: int = 0
    out_dir: str = "runs/train"
    resume: str | None = None  # a local Lightning .ckpt to continue from (URLs are refused)
    resume_allow_changes: list[str] = field(default_factory=list)  # config keys a resume may change
    resume_verify: bool = (
        True  # the checkpoint's .sha256 must exist and match (false: warn when it is absent)
    )
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
    # LoRA (training.lora, extra wall-core[lora]): None = full fine-tuning; ``lora: {}`` = adapters on the
    # backbone + expert projections, action/state paths trained, vision frozen; the export is the merged model
    lora: LoraSettings | None = None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Structured config: YAML file + dotted ``key=value`` overrides; unknown keys raise."""
    cfg = OmegaConf.structured(TrainConfig)
    if path:
        cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_object(cfg)  # type: ignore[return-value]
