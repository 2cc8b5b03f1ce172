"""Import a package and every one of its modules; prove that named distributions are absent.

Usage: ``python .ci/import_all.py wall_core --skip wall_robots.serving --absent torch metaworld``

Run inside a venv that holds one package installed alone: an undeclared dependency shows up as an
ImportError naming the module that needed it. ``--skip`` names modules that need an extra (imported only
in the extras check); ``--absent`` names top-level modules that must not be importable at all (e.g.
torch for wall-tokenizer, the simulator for wall-core without extras).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import sys


def main(argv: list[str]) -> int:
    """Import ``package`` and its modules; exit 1 naming each failure or each present ``--absent`` module."""
    p = argparse.ArgumentParser()
    p.add_argument("package")
    p.add_argument("--skip", nargs="*", default=[])
    p.add_argument("--absent", nargs="*", default=[])
    args = p.parse_args(argv)
    problems = [f"{m} is installed but must not be" for m in args.absent if importlib.util.find_spec(m)]
    pkg = importlib.import_module(args.package)
    names = [args.package]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{args.package}."):
        if info.name in args.skip or any(info.name.startswith(s + ".") for s in args.skip):
            continue
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except ImportError as e:
            problems.append(f"import {info.name} failed: {e}")
    leaked = [m for m in args.absent if m in sys.modules]
    problems += [f"importing {args.package} loaded {m}" for m in leaked]
    for line in problems:
        print(f"FAILED {line}", file=sys.stderr)
    if not problems:
        absent = f"; absent: {', '.join(args.absent)}" if args.absent else ""
        print(f"{args.package}: {len(names)} modules import{absent}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
