"""The README's python blocks run as written (each makes the data it needs) in a fresh folder."""

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"README.md block {i}", "exec"), {"__name__": "__readme__"})
        except Exception as e:  # pragma: no cover - the message names the failing block
            pytest.fail(f"README block {i} failed: {type(e).__name__}: {e}")
