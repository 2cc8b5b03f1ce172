"""``wall run --robot NAME``: a saved policy on a robot (a fake one shaped like the policy's inputs, or a LeRobot
robot) behind safety limits, synchronous or asynchronous (naive / ensembling / RTC), one log line per step."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from typing import Any

__all__ = ["UNCHECKED", "action_checks", "add_run_parser", "cmd_run"]
logger = logging.getLogger("wall")
UNCHECKED = "do not refuse NaN/inf or out-of-bounds action chunks (logged; for debugging only)"


def action_checks(args: argparse.Namespace) -> bool:
    """False for ``--no-action-checks`` (logged as a warning), else True (``wall eval``, ``run``, ``serve``)."""
    if getattr(args, "no_action_checks", False):
        logger.warning("--no-action-checks: action chunks are NOT checked for NaN/inf or the policy's bounds")
        return False
    return True


class _WithDataset:
    """The policy with ``dataset`` set on every observation (robots do not name it; multi-robot policies need it)."""

    def __init__(self, policy: Any, dataset: str) -> None:
        self.policy, self.dataset = policy, dataset

    def infer(self, obs: dict[str, Any], prefix_actions: Any = None, delay: int = 0) -> dict[str, Any]:
        """``policy.infer`` with ``obs["dataset"]`` set."""
        return dict(
            self.policy.infer({**obs, "dataset": self.dataset}, prefix_actions=prefix_actions, delay=delay)
        )

    def reset(self) -> None:
        """Reset the policy."""
        self.policy.reset()


def _robot_limits(args: argparse.Namespace, policy: Any, dim: int) -> Any:
    """SafetyLimits from ``--lower/--upper`` (one value or one per dim), else the policy's training action
    range [min, max] widened by ``--margin`` of it; ``--max-delta`` rate limit. None only with ``--unsafe``."""
    import numpy as np

    import wall_robots

    from .processing import Unnormalize

    if args.unsafe:
        return None
    if (args.lower is None) != (args.upper is None):
        raise ValueError(
            "give both --lower and --upper (or neither: the policy's training action range is used)"
        )
    if args.lower is not None:
        lower, upper = (np.broadcast_to(np.asarray(v, float), (dim,)) for v in (args.lower, args.upper))
    else:
        ds = args.dataset or policy.pipeline.default_dataset
        st = policy.pipeline.find(Unnormalize)._stats_for(ds, "action")
        lo, hi = np.asarray(st.min, float), np.asarray(st.max, float)
        lower, upper = lo - args.margin * (hi - lo), hi + args.margin * (hi - lo)
        logger.info("safety limits: the policy's %r action range widened by %.0f%%", ds, 100 * args.margin)
    return wall_robots.SafetyLimits(lower, upper, max_delta=args.max_delta)


def _make_robot(args: argparse.Namespace, policy: Any) -> Any:
    """``--robot fake`` (a FakeRobot shaped like the policy's inputs) or ``--robot lerobot`` (LeRobot's
    ``--robot-type`` with ``--robot-config`` JSON), behind the safety limits and a per-step logger."""
    import wall_robots
    from wall_robots.lerobot_adapter import from_lerobot_config

    from .processing import PadToEmbodiment

    ds = args.dataset or policy.pipeline.default_dataset
    spec = policy.pipeline.find(PadToEmbodiment).spec(ds)
    if args.robot == "fake":
        size = policy.model.config.image_size
        cams = {c.rsplit(".", 1)[-1]: (size, size) for c in policy.model.config.cameras}
        fake = wall_robots.FakeRobot(spec.action_dim, spec.state_dim, cams)
        limits = _robot_limits(args, policy, spec.action_dim)
        logged = wall_robots.LoggingRobot(fake)
        return logged if limits is None else wall_robots.SafeRobot(logged, limits, position_fn=fake.position)
    if not args.robot_type:
        raise ValueError("--robot lerobot needs --robot-type (e.g. so101_follower) and --robot-config JSON")
    try:
        robots = importlib.import_module("lerobot.robots")
        importlib.import_module(f"lerobot.robots.{args.robot_type}")  # registers its config class
    except ImportError as e:
        raise ImportError(f"LeRobot robot {args.robot_type!r} unavailable ({e}); pip install lerobot") from e
    config = robots.RobotConfig.get_choice_class(args.robot_type)(**json.loads(args.robot_config or "{}"))
    return from_lerobot_config(config, _robot_limits(args, policy, spec.action_dim), unsafe=args.unsafe)


def cmd_run(args: argparse.Namespace) -> int:
    """``wall run --robot NAME --policy DIR --task TEXT``: closed loop on a robot, one log line per step."""
    import wall_robots

    from .policy import WallPolicy

    check = action_checks(args)
    policy = WallPolicy.from_pretrained(args.policy, guidance_weight=args.beta, check_actions=check)
    robot = _make_robot(args, policy)
    runner: Any = policy if args.dataset is None else _WithDataset(policy, args.dataset)
    report = wall_robots.evaluate(
        runner, [args.task], args.episodes, robot=robot, max_steps=args.steps, fps=args.fps,
        execute_steps=args.execute_steps, mode=args.strategy, delay=args.delay, unsafe_robot=args.unsafe,
        check_actions=check,
    )  # fmt: skip
    logger.info("%s", report.table())
    if report.safety:
        logger.info("safety counters: %s", report.safety)
    if args.out:
        logger.info(
            "report written to %s", wall_robots.write_report(report, args.out, title=f"wall run {args.robot}")
        )
    return 0


def add_run_parser(sub: Any) -> None:
    """Add the ``run`` sub-command to the ``wall`` parser's subparsers ``sub``."""
    r = sub.add_parser(
        "run",
        help="run a saved policy on a robot (fake or LeRobot) behind safety limits, one log line per step",
    )
    r.add_argument("--robot", required=True, choices=["fake", "lerobot"])
    r.add_argument("--policy", required=True)
    r.add_argument("--task", required=True, help="the instruction sent as obs['task']")
    r.add_argument("--dataset", help="the policy's robot / dataset name (needed for multi-robot policies)")
    r.add_argument("--robot-type", help="LeRobot robot type, e.g. so101_follower")
    r.add_argument("--robot-config", help='LeRobot robot config as JSON, e.g. \'{"port": "/dev/ttyACM0"}\'')
    r.add_argument("--episodes", type=int, default=1)
    r.add_argument("--steps", type=int, default=200, help="control steps per episode")
    r.add_argument("--fps", type=float, help="control rate (default: as fast as inference allows)")
    r.add_argument("--execute-steps", type=int, default=8)
    r.add_argument("--strategy", default="chunk", choices=["chunk", "ensemble", "rtc"])
    r.add_argument("--delay", type=int, help="simulated inference delay d (steps): asynchronous execution")
    r.add_argument("--beta", type=float, default=5.0, help="RTC guidance-weight clip")
    r.add_argument("--lower", type=float, nargs="+", help="action lower bounds (one value or one per dim)")
    r.add_argument("--upper", type=float, nargs="+", help="action upper bounds (one value or one per dim)")
    r.add_argument("--max-delta", type=float, help="largest change of a command per step")
    r.add_argument(
        "--margin", type=float, default=0.05, help="widen the policy's action range by this fraction"
    )
    r.add_argument("--unsafe", action="store_true", help="drive the robot WITHOUT safety limits (logged)")
    r.add_argument("--no-action-checks", action="store_true", help=UNCHECKED)
    r.add_argument("--out", help="write eval.md / eval.json here")
    r.set_defaults(fn=cmd_run)
