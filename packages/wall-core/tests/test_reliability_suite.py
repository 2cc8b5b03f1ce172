"""Issue 19: the reliability catalogue (benchmarks/reliability.py; ``nox -s reliability`` replays all of it)
holds at least 150 bad inputs across datasets, checkpoints, policies, the server and robots; a quarter of it,
taken evenly from every family, is replayed here and must give no crash, no silent wrong result, no data lost."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_quick_catalogue_has_no_crash_silent_result_or_data_loss(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import reliability
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    result = reliability.main(["--quick"])
    printed = capsys.readouterr()
    assert result["catalogue"] >= 150
    summary = result["summary"]
    assert set(summary) == {"dataset", "checkpoint", "policy", "server", "robot", "total"}
    total = summary["total"]
    assert total["inputs"] >= result["catalogue"] // 4 - 5
    assert (total["crash"], total["silent"], total["lost"]) == (0, 0, 0), printed.err
    assert total["clear"] + total["harmless"] == total["inputs"]
    assert "crashes" in printed.out and "total" in printed.out  # the table was printed
