"""``wall demo --multi``: one model trained on two robots (MetaWorld's Sawyer, 4-D actions; gym-aloha's bimanual
ALOHA, 14 joints) against one single-robot model per simulator, each evaluated closed-loop on held-out layouts
with the same runner and report as the MetaWorld demo; a per-embodiment success table.

All models share one setup: the 26-D canonical action layout (``data.layout=canonical``; MetaWorld's 39-D
state takes 35 extra state slots, so the state space is 64 wide), ALOHA's joints as relative actions (grippers
absolute), one camera slot (ALOHA's ``top`` camera is recorded under MetaWorld's camera name), flow + discrete
action tokens (one FAST tokenizer per embodiment). Steps are matched per robot: a single-robot model trains
``steps_per_robot`` steps, the two-robot model ``2 x steps_per_robot`` on a 1:1 mixture.

Full measurement (>= 3 seeds, >= 20 held-out episodes per task; hours on 2 CPU cores):
``wall demo --multi --out runs/demo_multi`` (the defaults below: seeds 0 1 2, 20 episodes per task); on two
cores run ``--worker 0 --workers 2`` and ``--worker 1 --workers 2`` side by side (the cells are shared out, the
demos made once, every finished cell kept, so any run resumes).
``wall demo --multi --quick`` is a smoke run of the same path (tiny data, steps and episodes).
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import wall_robots
from wall_robots.aloha_expert import generate_aloha_demos

from .demo import CAMERA
from .model import WallVLAConfig
from .report import final_loss_table
from .training.optim import OptimConfig
from .training.run import DataConfig, ObjectiveConfig, TokenizerConfig, TrainConfig, TrainerConfig, train

__all__ = ["MultiDemoConfig", "run_multi_demo"]
logger = logging.getLogger(__name__)
ROBOTS = ("metaworld", "aloha")
EMBODIMENT = {"metaworld": "metaworld_sawyer", "aloha": "aloha_bimanual"}
DROP = ("observation.environment_state",)  # ALOHA's object pose: for scripted experts, never a model input


@dataclass
class MultiDemoConfig:
    """Settings of :func:`run_multi_demo` (defaults: the full measurement; :meth:`quick`: a smoke run)."""

    out: str = "runs/demo_multi"
    metaworld_tasks: list[str] = field(default_factory=lambda: ["reach-v3", "button-press-topdown-v3"])
    aloha_tasks: list[str] = field(default_factory=lambda: ["transfer_cube"])
    metaworld_episodes: int = 25  # expert demos per task
    aloha_episodes: int = 50
    metaworld_max_steps: int = 150
    aloha_max_steps: int = 400
    image_size: int = 64
    steps_per_robot: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    action_horizon: int = 16
    execute_steps: int = 8
    eval_episodes: int = 20  # held-out episodes per task
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    objective: dict[str, float] = field(
        default_factory=lambda: {"w_text_ce": 0.0, "w_action_ce": 0.3, "w_flow": 1.0}
    )
    aloha_relative: bool = True
    data_dir: str | None = None  # default out/data; reused when made with the same settings

    @classmethod
    def quick(cls, **kw: Any) -> MultiDemoConfig:
        """A few minutes: 2 demos per task, 20 steps per robot, 1 held-out episode per task, one seed."""
        base: dict[str, Any] = dict(metaworld_tasks=["reach-v3"], metaworld_episodes=2, aloha_episodes=2,
                                    metaworld_max_steps=100, steps_per_robot=20, batch_size=8, eval_episodes=1,
                                    seeds=[0])  # fmt: skip
        return cls(**{**base, **kw})


def _demo_data(cfg: MultiDemoConfig, data: Path) -> dict[str, Any]:
    """MetaWorld and ALOHA expert demos under ``data/{metaworld,aloha}``; reused when made with these settings."""
    key = [cfg.metaworld_tasks, cfg.aloha_tasks, cfg.metaworld_episodes, cfg.aloha_episodes, cfg.image_size,
           cfg.metaworld_max_steps, cfg.aloha_max_steps]  # fmt: skip
    summary_file = data / "demos.json"
    if summary_file.is_file() and json.loads(summary_file.read_text()).get("config") == key:
        logger.info("reusing demos in %s", data)
        return json.loads(summary_file.read_text())["summary"]
    for name in ROBOTS:
        shutil.rmtree(data / name, ignore_errors=True)
    mw = wall_robots.generate_demos(cfg.metaworld_tasks, cfg.metaworld_episodes, data / "metaworld",
                                    cfg.image_size, cfg.metaworld_max_steps)  # fmt: skip
    if len(cfg.aloha_tasks) != 1:
        raise ValueError(f"aloha_tasks takes one task per demo set for now, got {cfg.aloha_tasks}")
    al = generate_aloha_demos(cfg.aloha_episodes, data / "aloha", cfg.aloha_tasks[0], cfg.image_size,
                              cfg.aloha_max_steps, image_key=CAMERA)  # fmt: skip
    summary = {"metaworld": mw, "aloha": al}
    summary_file.write_text(json.dumps({"config": key, "summary": summary}, default=float))
    return summary


def _train_config(
    cfg: MultiDemoConfig, out: Path, data: Path, robots: tuple[str, ...], seed: int
) -> TrainConfig:
    """One model's config: ``robots`` mixed 1:1, ``steps_per_robot`` steps per robot, canonical layout."""
    sets = [{"root": str(data / r), "kind": "lerobot", "weight": 1.0, "name": r, "embodiment": EMBODIMENT[r],
             **({"relative_actions": True} if r == "aloha" and cfg.aloha_relative else {})} for r in robots]  # fmt: skip
    steps = cfg.steps_per_robot * len(robots)
    return TrainConfig(
        seed=seed, out_dir=str(out),
        data=DataConfig(datasets=sets, batch_size=cfg.batch_size, layout="canonical"),
        model=WallVLAConfig(state_dim=64, action_dim=26, action_horizon=cfg.action_horizon, cameras=[CAMERA],
                            image_size=cfg.image_size),
        tokenizer=TokenizerConfig(kind="fast", options={"scale": 10, "vocab_size": 512}),
        objective=ObjectiveConfig(**dict[str, Any](cfg.objective)),
        optim=OptimConfig(lr=cfg.lr, max_steps=steps, warmup_steps=min(100, steps // 10)),
        trainer=TrainerConfig(log_every_n_steps=25, enable_progress_bar=False),
    )  # fmt: skip


class NamedEnv:
    """A simulator whose observations name their robot (``dataset``) and lack the keys in ``drop``, so a
    policy that drives several robots reads them; everything else is the wrapped env's."""

    def __init__(self, env: Any, robot: str, drop: tuple[str, ...] = DROP) -> None:
        self.env, self.robot, self.drop = env, robot, drop

    def _obs(self, obs: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in obs.items() if k not in self.drop}, "dataset": self.robot}

    def reset(self, variant: int = 0, seed: int | None = None) -> dict[str, Any]:
        """The wrapped ``reset`` -> the observation with ``dataset``."""
        return self._obs(self.env.reset(variant=variant, seed=seed))

    def step(
        self, action: np.ndarray, render: bool = True
    ) -> tuple[dict[str, Any], float, bool, dict[str, Any]]:
        """The wrapped ``step``; the observation gets ``dataset``."""
        obs, reward, success, info = self.env.step(action, render=render)
        return self._obs(obs), reward, success, info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)


def _evaluate(cfg: MultiDemoConfig, policy: Any, robot: str, data: Path, out: Path, seed: int) -> Any:
    """Closed-loop evaluation of ``policy`` on ``robot``'s tasks, held-out layouts only (checked against the
    demos); writes the runner's report to ``out``."""

    def factory(task: str) -> Any:
        if robot == "metaworld":
            env: Any = wall_robots.MetaWorldEnv(task, image_size=cfg.image_size, max_steps=cfg.metaworld_max_steps,
                                                layouts="heldout", exclude=data / "metaworld")  # fmt: skip
        else:
            env = wall_robots.AlohaEnv(task, cfg.image_size, max_steps=cfg.aloha_max_steps, layouts="heldout",
                                       exclude=data / "aloha", image_key=CAMERA)  # fmt: skip
        return NamedEnv(env, robot)

    tasks = cfg.metaworld_tasks if robot == "metaworld" else cfg.aloha_tasks
    max_steps = cfg.metaworld_max_steps if robot == "metaworld" else cfg.aloha_max_steps
    report = wall_robots.evaluate(policy, tasks, cfg.eval_episodes, factory, cfg.execute_steps,
                                  max_steps=max_steps, seed=1000 + seed)  # fmt: skip
    wall_robots.write_report(report, out, title=f"{robot}: closed-loop evaluation (flow actions)")
    return report


def success_table(results: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    """``{model: {task: {"success": [per seed], "refused": [per seed]}}}`` -> a markdown table, one row per
    robot task, one column per model: mean success over seeds (± std when several), the seed count and the
    chunks the policy's action checks refused (each ends its episode as a failure)."""
    models = list(results)
    tasks = list(dict.fromkeys(t for m in models for t in results[m]))
    lines = ["| robot task | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for task in tasks:
        cells = []
        for m in models:
            rates = results[m].get(task, {}).get("success", [])
            if not rates:
                cells.append("—")
                continue
            spread = f" ± {100 * np.std(rates):.0f}" if len(rates) > 1 else ""
            refused = int(sum(results[m][task].get("refused", [])))
            extra = f"; {refused} refused chunk{'s' if refused != 1 else ''}" if refused else ""
            seeds = f"{len(rates)} seed{'s' if len(rates) > 1 else ''}"
            cells.append(f"{100 * np.mean(rates):.0f}%{spread} ({seeds}{extra})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


ARMS: dict[str, tuple[str, ...]] = {
    "multi": ROBOTS,
    "metaworld_only": ("metaworld",),
    "aloha_only": ("aloha",),
}


def _fingerprint(cfg: MultiDemoConfig) -> dict[str, Any]:
    """The settings a finished cell depends on (everything but where it runs and which seeds are asked)."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("out", "seeds", "data_dir")}


def _run_cell(cfg: MultiDemoConfig, out: Path, data: Path, arm: str, seed: int) -> dict[str, Any]:
    """Train and evaluate one model (``arm``) with one seed; the result is kept in ``out/arm/seedN/cell.json``
    and read back instead of retrained when it was made with the same settings (so a run resumes)."""
    run = out / arm / f"seed{seed}"
    done = run / "cell.json"
    if done.is_file():
        cell = json.loads(done.read_text())
        if cell.get("config") == _fingerprint(cfg):
            logger.info("%s seed %d: reusing %s", arm, seed, done)
            return dict(cell)
        logger.info("%s seed %d: %s was made with other settings; retraining", arm, seed, done)
    t0 = time.perf_counter()
    policy, module = train(_train_config(cfg, run / "train", data, ARMS[arm], seed))
    cell = {"config": _fingerprint(cfg), "per_task": {}, "train_s": time.perf_counter() - t0,
            "final_losses": module.history[-1] if module.history else {}}  # fmt: skip
    for robot in ARMS[arm]:
        report = _evaluate(cfg, policy, robot, data, run / "eval" / robot, seed)
        for task, row in report.per_task().items():
            cell["per_task"][f"{robot}: {task}"] = {
                "success": row["success_rate"],
                "refused": row["refused_chunks"],
            }
    done.write_text(json.dumps(cell, indent=2, default=float))
    return cell


def _collect(cfg: MultiDemoConfig, out: Path) -> dict[str, dict[str, Any]]:
    """Every finished cell of ``cfg.seeds`` under ``out`` -> ``{model: {task: {success: [...], refused: [...]},
    _train_s: [...], _final_losses: [...]}}`` (a cell not finished yet is left out, so the table counts seeds)."""
    results: dict[str, dict[str, Any]] = {arm: {} for arm in ARMS}
    for seed in cfg.seeds:
        for arm in ARMS:
            f = out / arm / f"seed{seed}" / "cell.json"
            cell = json.loads(f.read_text()) if f.is_file() else None
            if cell is None or cell.get("config") != _fingerprint(cfg):
                continue
            for task, row in cell["per_task"].items():
                slot = results[arm].setdefault(task, {"success": [], "refused": []})
                slot["success"].append(row["success"])
                slot["refused"].append(row["refused"])
            results[arm].setdefault("_train_s", []).append(cell["train_s"])
            results[arm].setdefault("_final_losses", []).append(cell["final_losses"])
    return results


def _done_seeds(out: Path, arm: str, cfg: MultiDemoConfig) -> set[str]:
    """The ``seedN`` folders of ``arm`` whose cell finished with these settings."""
    found = set()
    for f in (out / arm).glob("seed*/cell.json"):
        if json.loads(f.read_text()).get("config") == _fingerprint(cfg):
            found.add(f.parent.name)
    return found


# relative CPU cost of one cell: training steps (the two-robot model trains twice as long) + evaluation
# (a 400-step ALOHA episode costs about 4x a 150-step MetaWorld one; both robots' tasks x episodes)
COST = {"multi": 4.0, "metaworld_only": 1.5, "aloha_only": 2.0}


def _share(cells: list[tuple[int, str]], workers: int) -> list[list[tuple[int, str]]]:
    """Deal the cells to ``workers`` lists, costliest first, each to the least loaded list (deterministic, so
    every worker computes the same split on its own)."""
    shares: list[list[tuple[int, str]]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for cell in sorted(cells, key=lambda c: (-COST[c[1]], c[0])):
        k = load.index(min(load))
        shares[k].append(cell)
        load[k] += COST[cell[1]]
    return shares


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive file lock, so parallel workers make the shared demos once (the others wait, then reuse)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_multi_demo(cfg: MultiDemoConfig, worker: int = 0, workers: int = 1) -> dict[str, Any]:
    """Demos of both robots -> per seed: the two-robot model and one model per robot -> held-out evaluation
    -> ``out/{result.json, report.md}``; returns the result (``table``: the per-embodiment success table).

    The (seed, model) cells are shared out to ``workers`` processes by their cost (:func:`_share`); this one runs those with index
    ``worker`` (start the others with the same config, same ``out``). Each finished cell is kept, so a rerun
    resumes, and every worker writes the report of the cells finished so far (the last one to end: all)."""
    if not 0 <= worker < workers:
        raise ValueError(f"worker must be in [0, workers={workers}), got {worker}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(cfg.data_dir) if cfg.data_dir else out / "data"
    t0 = time.perf_counter()
    with _locked(data.parent / f".{data.name}.lock"):
        demos = _demo_data(cfg, data)
    timings = {"demos_s": time.perf_counter() - t0}
    cells = [(seed, arm) for seed in cfg.seeds for arm in ARMS]
    for seed, arm in _share(cells, workers)[worker]:
        _run_cell(cfg, out, data, arm, seed)
    timings["total_s"] = time.perf_counter() - t0
    results = _collect(cfg, out)
    table = success_table(
        {m: {t: v for t, v in r.items() if not t.startswith("_")} for m, r in results.items()}
    )
    result = {"table": table, "results": results, "demos": demos, "timings_s": timings, "config": asdict(cfg)}
    (out / "result.json").write_text(json.dumps(result, indent=2, default=float))
    steps = f"{cfg.steps_per_robot} training steps per robot (the two-robot model: {2 * cfg.steps_per_robot})"
    (out / "report.md").write_text("\n".join([
        "# wall demo --multi report", "",
        f"MetaWorld tasks {cfg.metaworld_tasks} ({cfg.metaworld_episodes} demos each), ALOHA {cfg.aloha_tasks} "
        f"({cfg.aloha_episodes} demos); {steps}, batch {cfg.batch_size}; {cfg.eval_episodes} held-out episodes "
        f"per task; seeds {cfg.seeds}. Success (mean over seeds):", "", table, "",
        "Per-model reports (the runner's eval.md / eval.json): `<model>/seed<N>/eval/<robot>/`.", "",
        "Final training losses per dataset and term (mean over seeds):", "",
        final_loss_table({m: r.get("_final_losses", []) for m, r in results.items()}),
    ]) + "\n")  # fmt: skip
    missing = [f"{arm} seed {seed}" for seed, arm in cells if f"seed{seed}" not in _done_seeds(out, arm, cfg)]
    if missing:
        logger.info("cells not finished yet (other workers or a later run): %s", ", ".join(missing))
    logger.info("multi demo finished; report in %s", out / "report.md")
    return result
