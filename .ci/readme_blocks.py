"""Run every ```python block of the given READMEs, each README in a fresh temporary folder.

Usage: ``python .ci/readme_blocks.py README.md packages/*/README.md``

The blocks of one README run in order in one interpreter namespace (a later block may use what an earlier
one made), with the temporary folder as the working directory, so a block must create the data it needs.
A block may instead name a fixture on its first line::

    # fixture: shared/fixtures/some_dataset

and the named path (relative to the repository root) is copied into the temporary folder under its own
name before the block runs. A failure prints the README, the block number (1-based, counted over the
README's python blocks), the block's first line in the file, and the traceback; the exit status is the
number of failing READMEs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
FIXTURE = re.compile(r"^#\s*fixture:\s*(\S+)\s*$")

# Runs inside the child interpreter: exec each block in a shared namespace, report the failing one.
CHILD = r"""
import json, sys, traceback
blocks = json.loads(sys.stdin.read())
ns = {"__name__": "__main__"}
for i, (line, src) in enumerate(blocks, 1):
    try:
        exec(compile(src, f"{sys.argv[1]} block {i} (line {line})", "exec"), ns)
    except BaseException:
        traceback.print_exc()
        print(f"README-BLOCK-FAILED {i} {line}", file=sys.stderr)
        sys.exit(1)
"""


def blocks_of(readme: Path) -> list[tuple[int, str]]:
    """The python blocks of ``readme`` as (1-based line of the block's first code line, source) pairs."""
    text = readme.read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def _copy_fixtures(blocks: list[tuple[int, str]], into: Path) -> None:
    for _, src in blocks:
        first = src.splitlines()[0] if src.strip() else ""
        m = FIXTURE.match(first)
        if not m:
            continue
        path = (ROOT / m.group(1)).resolve()
        if not path.exists():
            raise FileNotFoundError(f"README fixture {m.group(1)} does not exist (looked at {path})")
        dest = into / path.name
        if path.is_dir():
            shutil.copytree(path, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(path, dest)


def run_readme(readme: Path) -> bool:
    """Run the python blocks of one README; True when all of them ran without an exception."""
    name = readme.resolve().relative_to(ROOT).as_posix()
    blocks = blocks_of(readme)
    if not blocks:
        print(f"{name}: no python blocks", flush=True)
        return True
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="readme-") as tmp:
        _copy_fixtures(blocks, Path(tmp))
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, name],
            input=json.dumps(blocks),
            text=True,
            cwd=tmp,
            capture_output=True,
        )
    took = time.perf_counter() - start
    if proc.returncode == 0:
        print(f"{name}: {len(blocks)} python block(s) ran in {took:.1f} s", flush=True)
        return True
    failed = re.search(r"README-BLOCK-FAILED (\d+) (\d+)", proc.stderr)
    where = f"block {failed.group(1)} (line {failed.group(2)})" if failed else "the interpreter"
    print(f"FAILED {name}: {where} of {len(blocks)} after {took:.1f} s", flush=True)
    print(proc.stdout[-4000:], proc.stderr[-8000:], sep="\n", file=sys.stderr, flush=True)
    return False


def main(argv: list[str]) -> int:
    """Run every README named in ``argv``; the exit status counts the failing ones."""
    if not argv:
        print("usage: readme_blocks.py README.md [more READMEs...]", file=sys.stderr)
        return 2
    missing = [a for a in argv if not Path(a).is_file()]
    if missing:
        print(f"no such README: {', '.join(missing)}", file=sys.stderr)
        return 2
    failures = [a for a in argv if not run_readme(Path(a))]
    if failures:
        print(
            f"{len(failures)} README(s) with a failing python block: {', '.join(failures)}", file=sys.stderr
        )
    return len(failures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
