"""The ``wall`` command line: train, eval, run, serve, convert, fit-tokenizer, stats, demo, report, view."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .cli_run import UNCHECKED, add_run_parser
from .cli_run import action_checks as _checked

__all__ = ["main"]
logger = logging.getLogger("wall")


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False)],
    )


def cmd_train(args: argparse.Namespace) -> int:
    from .training import load_config, train

    cfg = load_config(args.config, args.overrides)
    train(cfg)
    logger.info("policy exported to %s", Path(cfg.out_dir) / "policy")
    return 0


# optional modules a command needs -> the wall-core extra that installs them
EXTRAS = {"metaworld": "sim", "mujoco": "sim", "gym_aloha": "sim", "dm_control": "sim", "gymnasium": "sim",
          "websockets": "server", "msgpack": "server", "matplotlib": "plot", "peft": "lora"}  # fmt: skip
NEEDS = {"eval": ("metaworld",), "demo": ("metaworld",), "serve": ("websockets",)}


class MissingExtraError(ImportError):
    """An optional dependency of a command is not installed; the message names the extra to install."""


def _missing_extra(module: str) -> MissingExtraError:
    extra = EXTRAS.get(module.split(".")[0])
    hint = f"pip install 'wall-core[{extra}]'" if extra else f"pip install {module.split('.')[0]}"
    return MissingExtraError(f"this command needs {module!r}, which is not installed: {hint}")


def _extra_hint(e: ImportError) -> str | None:
    """The one-line message for an ImportError of an optional module (its own name or its cause's), else None."""
    if isinstance(e, MissingExtraError):
        return str(e)
    for name in (e.name, getattr(e.__cause__, "name", None)):
        if isinstance(name, str) and name.split(".")[0] in EXTRAS:
            return str(_missing_extra(name))
    return None


def _require(cmd: str) -> None:
    """Raise :class:`MissingExtraError` when a module ``cmd`` needs cannot be found."""
    import importlib.util

    for module in NEEDS.get(cmd, ()):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules (tests), or a broken one
            found = False
        if not found:
            raise _missing_extra(module)


def cmd_eval(args: argparse.Namespace) -> int:
    import wall_robots

    from .policy import WallPolicy

    check = _checked(args)
    discrete = args.mode == "discrete"
    kw = dict(discrete_retries=args.discrete_retries, retry_temperature=args.retry_temperature,
              on_invalid=args.on_invalid) if discrete else {}  # fmt: skip
    policy = WallPolicy.from_pretrained(args.policy, mode=args.mode, check_actions=check, **kw)
    report = wall_robots.evaluate(
        policy, args.tasks, args.episodes, execute_steps=args.execute_steps, max_steps=args.max_steps,
        check_actions=check,
    )  # fmt: skip
    extra = {"discrete_counts": dict(policy.discrete_counts)} if discrete else None
    md = wall_robots.write_report(report, args.out, extra=extra)
    logger.info("success %.0f%%; report %s", 100 * report.success_rate, md)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import wall_robots

    from .policy import WallPolicy

    check = _checked(args)
    policy = WallPolicy.from_pretrained(args.policy, mode=args.mode, check_actions=check)
    meta = {"action_horizon": policy.model.config.action_horizon}
    token = args.token or os.environ.get("WALL_SERVE_TOKEN") or None
    server = wall_robots.PolicyServer(
        policy,
        host=args.host,
        port=args.port,
        metadata=meta,
        allow_public=args.allow_public,
        token=token,
        check_actions=check,
        key_map=policy.key_map,
    )
    logger.info("serving %s on ws://%s:%d (openpi protocol)", args.policy, args.host, args.port)
    server.serve_forever()
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """``wall convert SRC DST --to {author,lerobot,ours}``: see :func:`wall_core.convert.convert_checkpoint`."""
    from .convert import convert_checkpoint

    out = convert_checkpoint(args.src, args.dst, args.to, src_layout=args.src_layout, dataset=args.dataset)
    logger.info("wrote %s (%s layout)", out, args.to)
    return 0


def cmd_fit_tokenizer(args: argparse.Namespace) -> int:
    import wall_data

    from .training import fit_action_tokenizer

    stats = wall_data.load_stats(Path(args.dataset) / "meta" / "stats.json")
    options = json.loads(args.options) if args.options else {}
    tok = fit_action_tokenizer([args.dataset], stats, args.horizon, args.kind, args.max_chunks, **options)
    tok.save(args.out)
    logger.info("%s tokenizer (vocab %d) saved to %s", args.kind, tok.vocab_size, args.out)
    return 0


STATS = "meta/stats.json"


def cmd_stats(args: argparse.Namespace) -> int:
    """Validate the dataset (every problem logged, naming file / episode / frame; exit 2 if any; the stats
    file being recomputed may be missing or stale), then write its ``meta/stats.json`` (and its checksum)."""
    import wall_data

    problems = [p for p in wall_data.validate_dataset(args.dataset) if p.file != STATS]
    if problems:
        for p in problems[:50]:
            logger.error("%s", p)
        more = " (first 50 shown)" if len(problems) > 50 else ""
        logger.error("%s: %d problem(s)%s; no statistics written", args.dataset, len(problems), more)
        return 2
    ds = wall_data.LeRobotDataset(args.dataset, cameras=[], verify_checksums=False)
    stats = wall_data.compute_stats(
        {k: v.reshape(len(v), -1) for k, v in ds.arrays.items() if v.dtype.kind == "f"}
    )
    root = Path(args.dataset)
    out = Path(args.out or root / STATS)
    if out.resolve() == (root / STATS).resolve() and (root / "meta" / "checksums.json").is_file():
        from wall_data.integrity import Commit

        commit = Commit(root)  # the dataset's manifest gets the new file's sha256
        wall_data.save_stats(stats, commit.stage(STATS))
        commit.commit()
    else:
        wall_data.save_stats(stats, out)
    logger.info("stats for %s written to %s", sorted(stats), out)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.multi:
        return _demo_multi(args)
    from .demo import DemoConfig, run_demo

    kw: dict[str, Any] = {"out": args.out or "runs/demo"}
    if args.mode:
        kw["policy_mode"] = args.mode
    if args.objective:
        kw["objective"] = json.loads(args.objective)
    cfg = DemoConfig.quick(**kw) if args.quick else DemoConfig(**kw)
    result = run_demo(cfg)
    logger.info("success rate %.0f%% — see %s", 100 * result["success_rate"], Path(cfg.out) / "report.md")
    return 0


def _demo_multi(args: argparse.Namespace) -> int:
    """``wall demo --multi``: MetaWorld + ALOHA in one model vs one model per robot (see wall_core.demo_multi)."""
    from .demo_multi import MultiDemoConfig, run_multi_demo

    if args.mode and args.mode != "flow":
        raise SystemExit("wall demo --multi evaluates the flow head; --mode discrete is not offered for it")
    kw: dict[str, Any] = {"out": args.out or "runs/demo_multi"}
    if args.objective:
        kw["objective"] = json.loads(args.objective)
    if args.seeds:
        kw["seeds"] = args.seeds
    cfg = MultiDemoConfig.quick(**kw) if args.quick else MultiDemoConfig(**kw)
    result = run_multi_demo(cfg, worker=args.worker, workers=args.workers)
    logger.info("per-embodiment success:\n%s\nsee %s", result["table"], Path(cfg.out) / "report.md")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``wall report RUN_DIR``: one self-contained HTML page (see :mod:`wall_core.report.page`)."""
    from .report import build_report

    logger.info("report written to %s", build_report(args.run_dir, args.out))
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    """``wall view DATASET``: a static HTML page of a LeRobot dataset's episodes."""
    from .report import build_viewer

    out = build_viewer(args.dataset, args.out, args.episodes, rerun=args.rerun)
    logger.info("dataset view written to %s", out)
    return 0


def _add_policy_parsers(sub: Any) -> None:
    """``wall eval``, ``wall run`` and ``wall serve``: the commands that drive a saved policy."""
    e = sub.add_parser("eval", help="closed-loop MetaWorld evaluation of a saved policy")
    e.add_argument("--policy", required=True)
    e.add_argument("--tasks", nargs="+", default=["reach-v3"])
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--execute-steps", type=int, default=8)
    e.add_argument("--max-steps", type=int, default=150)
    e.add_argument("--mode", default="flow", choices=["flow", "discrete"])
    e.add_argument("--discrete-retries", type=int, default=3, help="--mode discrete: sampled retries")
    e.add_argument("--retry-temperature", type=float, default=0.7, help="--mode discrete: retry temperature")
    e.add_argument("--on-invalid", default="flow", choices=["flow", "refuse", "hold"],
                   help="--mode discrete: a chunk still invalid after the retries (never executed)")  # fmt: skip
    e.add_argument("--out", default="runs/eval")
    e.add_argument("--no-action-checks", action="store_true", help=UNCHECKED)
    e.set_defaults(fn=cmd_eval)
    add_run_parser(sub)
    s = sub.add_parser("serve", help="serve a saved policy over openpi's websocket protocol")
    s.add_argument("--policy", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--mode", default="flow", choices=["flow", "discrete"])
    s.add_argument(
        "--allow-public", action="store_true", help="allow binding a non-loopback host such as 0.0.0.0"
    )
    s.add_argument("--token", default=None, help="token clients must send (or env WALL_SERVE_TOKEN)")
    s.add_argument("--no-action-checks", action="store_true", help=UNCHECKED)
    s.set_defaults(fn=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wall", description="Wall-OSS-0.5 toolkit")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train from a YAML config with dotted overrides (key=value)")
    t.add_argument("config", nargs="?")
    t.add_argument("overrides", nargs="*")
    t.set_defaults(fn=cmd_train)
    _add_policy_parsers(sub)
    c = sub.add_parser(
        "convert",
        help="convert a checkpoint between the released (author/LeRobot), our and Qwen2.5-VL layouts",
    )
    c.add_argument("src", help="checkpoint folder (model.safetensors or a sharded index)")
    c.add_argument("dst", help="output folder")
    c.add_argument("--to", required=True, choices=["author", "lerobot", "ours"])
    c.add_argument("--src-layout", choices=["author", "lerobot", "ours", "qwen"], help="default: detected")
    c.add_argument(
        "--dataset", help="which dataset's stats LeRobot gets / the name of a LeRobot folder's stats"
    )
    c.set_defaults(fn=cmd_convert)
    f = sub.add_parser("fit-tokenizer", help="fit an action tokenizer on a LeRobot dataset")
    f.add_argument("--dataset", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--kind", default="fast", choices=["fast", "bins", "rvq"])
    f.add_argument("--horizon", type=int, default=16)
    f.add_argument("--max-chunks", type=int, default=4000)
    f.add_argument("--options", help='JSON, e.g. \'{"scale": 10, "vocab_size": 512}\'')
    f.set_defaults(fn=cmd_fit_tokenizer)
    _add_data_parsers(sub)
    return p


def _add_data_parsers(sub: Any) -> None:
    """The ``stats``, ``demo``, ``report`` and ``view`` sub-commands."""
    st = sub.add_parser("stats", help="(re)compute meta/stats.json of a LeRobot dataset")
    st.add_argument("--dataset", required=True)
    st.add_argument("--out")
    st.set_defaults(fn=cmd_stats)
    d = sub.add_parser(
        "demo", help="the embedded default: MetaWorld demos -> train -> closed-loop eval -> report"
    )
    d.add_argument("--quick", action="store_true", help="3-minute smoke version")
    d.add_argument(
        "--multi",
        action="store_true",
        help="one model on MetaWorld + ALOHA vs one model per robot, per-embodiment success table",
    )
    d.add_argument("--out", help="default: runs/demo (runs/demo_multi with --multi)")
    d.add_argument("--seeds", nargs="+", type=int, help="--multi: training seeds (default 0 1 2; --quick: 0)")
    d.add_argument("--worker", type=int, default=0, help="--multi: this process's index among --workers")
    d.add_argument(
        "--workers", type=int, default=1, help="--multi: processes sharing the (seed, model) cells"
    )
    d.add_argument("--mode", choices=["flow", "discrete"], help="which action head the evaluated policy uses")
    d.add_argument(
        "--objective",
        help='JSON weights, e.g. \'{"w_text_ce": 0, "w_action_ce": 0, "w_flow": 1}\' (flow-only ablation)',
    )
    d.set_defaults(fn=cmd_demo)
    r = sub.add_parser("report", help="one self-contained HTML page for a run folder (needs its eval.json)")
    r.add_argument("run_dir")
    r.add_argument("--out", help="default: RUN_DIR/report.html")
    r.set_defaults(fn=cmd_report)
    v = sub.add_parser("view", help="a static HTML page of a LeRobot dataset's episodes")
    v.add_argument("dataset")
    v.add_argument("--out", help="default: DATASET/view.html")
    v.add_argument("--episodes", type=int, default=10, help="how many episodes to show")
    v.add_argument("--rerun", action="store_true", help="also write a Rerun .rrd (needs rerun-sdk)")
    v.set_defaults(fn=cmd_view)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from wall_robots.robot import UnsafeActionError

    from .training.guards import NonFiniteError

    try:
        _require(args.cmd)
        return args.fn(args)
    except ImportError as e:
        hint = _extra_hint(e)
        if hint is None:
            raise
        logger.error("%s", hint)
        return 2
    except (ValueError, KeyError, FileNotFoundError, NonFiniteError, UnsafeActionError, OSError) as e:
        logger.error("%s: %s", type(e).__name__, e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
