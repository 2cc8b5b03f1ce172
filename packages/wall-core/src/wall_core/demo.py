"""The embedded default: MetaWorld expert demos -> VQA corpus -> action tokenizer -> train the small VLA on CPU
with all three objectives -> closed-loop evaluation -> report (success per task, loss curves, gradient shares).

``wall demo`` runs the full version (about 25 minutes on 2 cores); ``wall demo --quick`` a 3-minute smoke run.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import wall_data
import wall_robots
from wall_robots.video import RolloutRecorder

from .model import WallVLAConfig
from .report import build_report, final_loss_table
from .training.optim import OptimConfig
from .training.run import DataConfig, ObjectiveConfig, TokenizerConfig, TrainConfig, TrainerConfig, train

__all__ = ["DemoConfig", "run_demo"]
logger = logging.getLogger(__name__)
CAMERA = "observation.images.corner"


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    tasks: list[str] = field(
        default_factory=lambda: ["reach-v3", "button-press-topdown-v3", "drawer-close-v3", "push-v3"]
    )
    episodes_per_task: int = 25
    image_size: int = 64
    max_steps: int = 150
    expert_noise: float = 0.1
    train_steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    action_horizon: int = 16
    execute_steps: int = 8
    eval_episodes: int = 20  # held-out episodes per task (benchmarks/policy.py uses the same 20)
    vqa_per_task: int = 60
    seed: int = 0
    objective: dict[str, float] = field(
        default_factory=lambda: {"w_text_ce": 0.3, "w_action_ce": 0.3, "w_flow": 1.0}
    )
    policy_mode: str = "flow"
    reuse_data: bool = True
    bridge: str = "full"  # gradient bridge of the flow term into the backbone: full | scaled | insulated
    bridge_scale: float = 1.0  # with bridge="scaled"
    data_dir: str | None = (
        None  # demos + VQA corpus (default out/data); shared by runs that differ only in training
    )
    data_seed: int | None = None  # seed of the demos (default: seed); training seeds vary independently
    record_videos: bool = True  # rollout videos for the report (about 14 s extra per recorded episode)

    @classmethod
    def quick(cls, **kw: Any) -> DemoConfig:
        base = dict(
            tasks=["reach-v3", "button-press-topdown-v3"],
            episodes_per_task=3,
            max_steps=100,
            train_steps=100,
            batch_size=16,
            eval_episodes=2,
            vqa_per_task=20,
        )
        return cls(**{**base, **kw})


def _vqa_corpus(demo_root: Path, out: Path, per_task: int, seed: int) -> Path:
    """Questions about real demo frames, answered from the episode's task and state (no labelling needed)."""
    ds = wall_data.LeRobotDataset(demo_root, action_horizon=1)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    by_task: dict[str, list[int]] = {}
    for ep in ds.episodes:
        by_task.setdefault(ep["tasks"][0], []).extend(range(ep["dataset_from_index"], ep["dataset_to_index"]))
    for task, idxs in by_task.items():
        for i in rng.choice(idxs, size=min(per_task, len(idxs)), replace=False):
            s = ds[int(i)]
            name = f"{len(rows):05d}.png"
            Image.fromarray(s[CAMERA].permute(1, 2, 0).numpy()).save(out / name)
            if rng.random() < 0.5:
                q, a = "Which task is the robot doing?", task
            else:
                hand_z = float(s["observation.state"][2])
                q, a = "Is the gripper high or low?", "high" if hand_z > 0.15 else "low"
            rows.append({"image": name, "question": q, "answer": a})
    path = out / "vqa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _plot_history(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = [h["step"] for h in history]
    for key in ("loss", "text_ce", "action_ce", "flow"):
        vals = [h.get(key, np.nan) for h in history]
        if np.isfinite(vals).any():
            k = max(1, len(vals) // 100)
            smooth = np.convolve(np.nan_to_num(vals), np.ones(k) / k, mode="valid")
            ax.plot(steps[: len(smooth)], smooth, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    ax.set_title("training losses (moving average)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _demo_data(cfg: DemoConfig, data: Path, seed: int) -> dict[str, Any]:
    """Expert demos (``data/metaworld``) + VQA corpus (``data/vqa``), reused when made with the same settings.
    Returns the demo summary of :func:`wall_robots.generate_demos`."""
    demo_root, summary_file = data / "metaworld", data / "demos.json"
    key = [cfg.tasks, cfg.episodes_per_task, cfg.image_size, seed]
    if (
        cfg.reuse_data
        and summary_file.is_file()
        and json.loads(summary_file.read_text()).get("config") == key
    ):
        logger.info("reusing demos in %s", demo_root)
        return json.loads(summary_file.read_text())["summary"]
    if demo_root.exists():
        import shutil

        shutil.rmtree(demo_root)
    demos = wall_robots.generate_demos(
        cfg.tasks, cfg.episodes_per_task, demo_root, cfg.image_size, cfg.max_steps, cfg.expert_noise, seed
    )
    _vqa_corpus(demo_root, data / "vqa", cfg.vqa_per_task, seed)
    summary_file.write_text(json.dumps({"config": key, "summary": demos}))
    return demos


def _train_config(cfg: DemoConfig, out: Path, data: Path) -> TrainConfig:
    """The small VLA's training config on the demos (+ the VQA corpus when the text CE is on)."""
    w: dict[str, Any] = dict(cfg.objective)
    vqa = data / "vqa" / "vqa.jsonl"
    return TrainConfig(
        seed=cfg.seed,
        out_dir=str(out / "train"),
        data=DataConfig(datasets=[
            {"root": str(data / "metaworld"), "kind": "lerobot", "weight": 3.0, "name": "metaworld"},
            *([{"root": str(vqa), "kind": "vqa", "weight": 1.0, "name": "vqa"}] if w.get("w_text_ce", 0) > 0 else []),
        ], batch_size=cfg.batch_size),
        model=WallVLAConfig(state_dim=40, action_dim=8, action_horizon=cfg.action_horizon, cameras=[CAMERA], image_size=cfg.image_size),
        tokenizer=TokenizerConfig(kind="fast", options={"scale": 10, "vocab_size": 512}),
        objective=ObjectiveConfig(**w, bridge=cfg.bridge, bridge_scale=cfg.bridge_scale),
        optim=OptimConfig(lr=cfg.lr, max_steps=cfg.train_steps, warmup_steps=min(100, cfg.train_steps // 10)),
        trainer=TrainerConfig(log_every_n_steps=25),
    )  # fmt: skip


def _gradient_shares(cfg: DemoConfig, policy: Any, module: Any) -> dict[str, float]:
    """Each enabled term's share of the backbone gradient norm on 8 training samples (after training)."""
    w: dict[str, Any] = dict(cfg.objective)
    if sum(1 for v in w.values() if v > 0) < 2:
        return {}
    from .objective import WallObjective

    batch = policy.pipeline([module.trainer.datamodule.mixture[i] for i in range(8)])
    objective = WallObjective(**w, bridge=cfg.bridge, bridge_scale=cfg.bridge_scale)
    shares = objective.gradient_shares(policy.model.train(), batch)
    policy.model.eval()
    return shares


def _evaluate(cfg: DemoConfig, policy: Any, out: Path, demo_root: Path) -> tuple[Any, float]:
    """Closed-loop evaluation on held-out layouts (checked disjoint from the demos' recorded layouts; the
    check raises otherwise) with rollout videos; returns (report, seconds per recorded episode)."""

    def env_factory(task: str) -> Any:
        return wall_robots.MetaWorldEnv(
            task, image_size=cfg.image_size, max_steps=cfg.max_steps, layouts="heldout", exclude=demo_root
        )

    recorder = (
        RolloutRecorder(out / "eval" / "videos", per_task=1, extra_per_task=1, camera_key=CAMERA)
        if cfg.record_videos
        else None
    )
    report = wall_robots.evaluate(
        policy, cfg.tasks, cfg.eval_episodes, env_factory, cfg.execute_steps, max_steps=cfg.max_steps,
        seed=1000 + cfg.seed, recorder=recorder,
    )  # fmt: skip
    counts = getattr(policy, "discrete_counts", None) if cfg.policy_mode == "discrete" else None
    wall_robots.write_report(
        report, out / "eval", title=f"Closed-loop evaluation ({cfg.policy_mode} actions)",
        extra={"discrete_counts": dict(counts)} if counts is not None else None,
    )  # fmt: skip
    return report, recorder.seconds_per_episode if recorder is not None else 0.0


def _write_markdown(
    cfg: DemoConfig, out: Path, demos: dict[str, Any], result: dict[str, Any], table: str
) -> None:
    """``out/report.md``: success table, loss curves, final losses per dataset, timings and gradient shares."""
    lines = [
        "# wall demo report",
        "",
        f"Tasks: {', '.join(cfg.tasks)}; {demos['episodes']} expert demos ({demos['frames']} frames), "
        f"{cfg.train_steps} training steps (batch {cfg.batch_size}), {cfg.eval_episodes} held-out episodes per task.",
        f"Objective weights: {cfg.objective}; policy actions from the **{cfg.policy_mode}** head.",
        "",
        "## Success",
        "",
        table,
        "",
        "![loss curves](loss_curves.png)  ![success](eval/success.png)",
        "",
        "## Final training losses, per dataset and term",
        "",
        final_loss_table({"policy": [result["final_losses"]]}),
        "",
        "## Timings (s)",
        "",
        *[f"- {k}: {v:.0f}" for k, v in result["timings_s"].items()],
    ]
    if result["gradient_shares"]:
        lines += ["", "## Share of the backbone gradient norm per objective term (after training)", ""]
        lines += [
            f"- {k}: {v:.1%}" for k, v in result["gradient_shares"].items() if not k.startswith("norm/")
        ]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Demos -> train -> closed-loop eval -> ``out/{result.json, report.md, report.html}``; returns the result."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(cfg.data_dir) if cfg.data_dir else out / "data"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    demos = _demo_data(cfg, data, cfg.seed if cfg.data_seed is None else cfg.data_seed)
    timings["demos_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    policy, module = train(_train_config(cfg, out, data))
    timings["train_s"] = time.perf_counter() - t0
    if cfg.policy_mode == "discrete":
        # without a trained flow head an invalid decode (after the retries) is refused, never replaced by an
        # untrained flow chunk; refused chunks end their episode and are counted in the report
        fallback = "flow" if cfg.objective.get("w_flow", 0) > 0 else "refuse"
        policy = type(policy).from_pretrained(out / "train" / "policy", mode="discrete", on_invalid=fallback)
    shares = _gradient_shares(cfg, policy, module)
    t0 = time.perf_counter()
    report, video_s = _evaluate(cfg, policy, out, data / "metaworld")
    timings["eval_s"] = time.perf_counter() - t0
    timings["video_s_per_recorded_episode"] = video_s
    _plot_history(module.history, out / "loss_curves.png")
    result = {
        "success_rate": report.success_rate,
        "per_task": report.per_task(),
        "expert": demos["tasks"],
        "timings_s": timings,
        "final_losses": module.history[-1] if module.history else {},
        "gradient_shares": shares,
        "refused_chunks": report.refused_chunks,
        "discrete_counts": dict(getattr(policy, "discrete_counts", {})),
        "config": asdict(cfg),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    _write_markdown(cfg, out, demos, result, report.table())
    build_report(out)  # out/report.html: one self-contained page with the rollout videos
    logger.info("demo finished: success %.0f%%; report in %s", 100 * report.success_rate, out / "report.md")
    return result
