"""Closed-loop evaluation with action chunking (execute k of H, or ACT-style temporal ensembling),
per-task success and return, a markdown table and PNG plots. Seeds and layout variants are recorded."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .robot import Policy

__all__ = ["ActionChunker", "EpisodeResult", "EvalReport", "evaluate", "write_report"]
logger = logging.getLogger(__name__)


class ActionChunker:
    """Turns a chunk-predicting policy into one action per step.

    ``mode="chunk"``: query every ``execute_steps`` steps and play the first k actions of each chunk.
    ``mode="ensemble"``: query every step and average all predictions for the current step with weights
    ``exp(-decay * age)`` (ACT's temporal ensembling; older predictions weigh more for decay > 0).
    """

    def __init__(
        self, policy: Policy, execute_steps: int = 4, mode: str = "chunk", decay: float = 0.01
    ) -> None:
        if mode not in ("chunk", "ensemble"):
            raise ValueError(f"mode must be 'chunk' or 'ensemble', got {mode!r}")
        if execute_steps < 1:
            raise ValueError("execute_steps must be >= 1")
        self.policy, self.k, self.mode, self.decay = policy, execute_steps, mode, decay
        self.reset()

    def reset(self) -> None:
        self._queue: deque[np.ndarray] = deque()
        self._chunks: list[tuple[int, np.ndarray]] = []
        self.t = 0
        self.predictions: list[tuple[int, np.ndarray]] = []
        self.policy.reset()

    @property
    def needs_observation(self) -> bool:
        """Whether the next :meth:`act` will query the policy (so the observation must be complete)."""
        return self.mode == "ensemble" or not self._queue

    def _query(self, obs: dict[str, Any]) -> np.ndarray:
        chunk = np.asarray(self.policy.infer(obs)["actions"], dtype=np.float64)
        if chunk.ndim != 2:
            raise ValueError(f"policy returned actions of shape {chunk.shape}; expected [H, A]")
        self.predictions.append((self.t, chunk))
        return chunk

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        if self.mode == "chunk":
            if not self._queue:
                self._queue.extend(self._query(obs)[: self.k])
            action = self._queue.popleft()
        else:
            self._chunks.append((self.t, self._query(obs)))
            self._chunks = [(s, c) for s, c in self._chunks if self.t - s < len(c)]
            preds = np.stack([c[self.t - s] for s, c in self._chunks])
            ages = np.array([self.t - s for s, _ in self._chunks], dtype=float)
            w = np.exp(self.decay * ages)  # older chunks first, as in ACT
            action = (w[:, None] * preds).sum(0) / w.sum()
        self.t += 1
        return action


@dataclass
class EpisodeResult:
    task: str
    seed: int
    variant: int
    success: bool
    steps: int
    ret: float
    video: str | None = None  # mp4 path when a recorder kept this episode


@dataclass
class EvalReport:
    episodes: list[EpisodeResult] = field(default_factory=list)
    trajectories: dict[str, dict[str, list]] = field(default_factory=dict)  # first episode per task

    def per_task(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for task in dict.fromkeys(e.task for e in self.episodes):
            eps = [e for e in self.episodes if e.task == task]
            out[task] = {
                "success_rate": float(np.mean([e.success for e in eps])),
                "mean_return": float(np.mean([e.ret for e in eps])),
                "mean_steps": float(np.mean([e.steps for e in eps])),
                "episodes": len(eps),
            }
        return out

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes])) if self.episodes else 0.0

    def table(self) -> str:
        rows = ["| task | success | mean return | mean steps | episodes |", "|---|---|---|---|---|"]
        for task, r in self.per_task().items():
            rows.append(
                f"| {task} | {r['success_rate']:.0%} | {r['mean_return']:.1f} | {r['mean_steps']:.0f} | {r['episodes']} |"
            )
        rows.append(f"| **all** | **{self.success_rate:.0%}** | | | {len(self.episodes)} |")
        return "\n".join(rows)


def evaluate(
    policy: Policy,
    tasks: list[str],
    episodes_per_task: int = 10,
    env_factory: Callable[[str], Any] | None = None,
    execute_steps: int = 4,
    mode: str = "chunk",
    max_steps: int = 150,
    seed: int = 1000,
    variant_offset: int = 40,
    recorder: Any | None = None,
) -> EvalReport:
    """Run closed-loop episodes. ``variant_offset`` starts at layouts not used for demos (held out).

    ``recorder``: optional :class:`wall_robots.video.RolloutRecorder`; the episodes it selects are rendered
    every step and written to mp4 (``EpisodeResult.video``), the others render only when the policy queries.
    """
    if env_factory is None:
        from .sim_metaworld import MetaWorldEnv

        def env_factory(task: str) -> Any:
            return MetaWorldEnv(task, max_steps=max_steps)

    report = EvalReport()
    chunker = ActionChunker(policy, execute_steps, mode)
    bar = tqdm(total=len(tasks) * episodes_per_task, desc="evaluating", unit="ep", disable=None)
    for task in tasks:
        env = env_factory(task)
        for ep in range(episodes_per_task):
            ep_seed, variant = seed + ep, variant_offset + ep
            obs = env.reset(variant=variant, seed=ep_seed)
            chunker.reset()
            rec = recorder is not None and recorder.begin(
                task, ep_seed, ep, getattr(env, "instruction", task)
            )
            executed, ret, success, steps = [], 0.0, False, 0
            for steps in range(1, max_steps + 1):
                action = chunker.act(obs)
                executed.append(action)
                obs, reward, success, _ = env.step(action, render=rec or chunker.needs_observation)
                ret += reward
                if rec and recorder is not None:
                    recorder.frame(env, obs, steps, chunker.predictions[-1][1])
                if success:
                    break
            video = recorder.end(bool(success)) if rec and recorder is not None else None
            report.episodes.append(
                EpisodeResult(
                    task, ep_seed, variant, bool(success), steps, ret, str(video) if video else None
                )
            )
            if ep == 0:
                report.trajectories[task] = {
                    "executed": np.asarray(executed).tolist(),
                    "predicted": [(int(t), c.tolist()) for t, c in chunker.predictions[:50]],
                }
            bar.update(1)
        if hasattr(env, "close"):
            env.close()
    bar.close()
    return report


def write_report(report: EvalReport, out_dir: str | Path, title: str = "Closed-loop evaluation") -> Path:
    """Write ``eval.md`` (per-task table), ``eval.json`` (every episode with its seed) and PNG plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(
        json.dumps(
            {"per_task": report.per_task(), "episodes": [asdict(e) for e in report.episodes]}, indent=2
        )
    )
    md = [f"# {title}", "", report.table(), ""]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib missing (pip install 'wall-robots[plot]'): no plots written")
    else:
        per = report.per_task()
        fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(per), 3))
        ax.bar(list(per), [v["success_rate"] for v in per.values()], color="tab:green")
        ax.set_ylim(0, 1)
        ax.set_ylabel("success rate")
        ax.tick_params(axis="x", labelrotation=20)
        fig.tight_layout()
        fig.savefig(out / "success.png", dpi=100)
        plt.close(fig)
        for task, traj in report.trajectories.items():
            ex = np.asarray(traj["executed"])
            if ex.size == 0:
                continue
            dims = min(ex.shape[1], 4)
            fig, axes = plt.subplots(dims, 1, figsize=(7, 1.6 * dims), sharex=True)
            for d, ax in enumerate(np.atleast_1d(axes)):
                ax.plot(ex[:, d], "k-", lw=1.5, label="executed")
                for t0, chunk in traj["predicted"]:
                    c = np.asarray(chunk)
                    ax.plot(range(t0, t0 + len(c)), c[:, d], "-", color="tab:blue", alpha=0.3, lw=0.8)
                ax.set_ylabel(f"a[{d}]")
            np.atleast_1d(axes)[0].set_title(f"{task}: predicted chunks (blue) vs executed (black)")
            fig.tight_layout()
            fig.savefig(out / f"trajectory_{task}.png", dpi=100)
            plt.close(fig)
            md.append(f"![{task}](trajectory_{task}.png)")
        md.insert(3, "![success](success.png)\n")
    (out / "eval.md").write_text("\n".join(md) + "\n")
    return out / "eval.md"
