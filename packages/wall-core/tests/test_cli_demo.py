"""The `wall` CLI on a small dataset, and the embedded default in its --quick form (the README's main job)."""

import json
import os

import numpy as np
import pytest

import wall_data as wd
import wall_tokenizer as wt
from wall_core.cli import main


@pytest.fixture
def dataset(tmp_path):
    w = wd.LeRobotWriter(
        tmp_path / "ds",
        fps=10,
        features={
            "observation.state": {"dtype": "float32", "shape": [3]},
            "action": {"dtype": "float32", "shape": [2]},
        },
    )
    rng = np.random.default_rng(0)
    for ep in range(4):
        for i in range(30):
            w.add_frame(
                {"observation.state": rng.normal(size=3), "action": [np.sin(i / 4 + ep), 0.5 * np.cos(i / 5)]}
            )
        w.save_episode(task="wave")
    return w.finalize()


def test_cli_stats_and_fit_tokenizer(dataset, tmp_path):
    (dataset / "meta/stats.json").unlink()
    assert main(["stats", "--dataset", str(dataset)]) == 0
    stats = wd.load_stats(dataset / "meta/stats.json")
    assert stats["action"].max[0] <= 1.0 and stats["action"].count == 120
    out = tmp_path / "tok"
    assert (
        main(
            [
                "fit-tokenizer",
                "--dataset",
                str(dataset),
                "--out",
                str(out),
                "--horizon",
                "8",
                "--options",
                '{"scale": 10, "vocab_size": 128}',
            ]
        )
        == 0
    )
    tok = wt.load(out)
    assert tok.horizon == 8 and tok.action_dim == 2


def test_cli_reports_bad_input_without_traceback(tmp_path, caplog):
    assert main(["stats", "--dataset", str(tmp_path / "missing")]) == 2
    assert "info.json" in caplog.text
    caplog.clear()
    assert main(["train", "optim.nope=1"]) == 2  # unknown keys are refused by the structured config
    assert "nope" in caplog.text


@pytest.mark.skipif(os.environ.get("MUJOCO_GL") != "osmesa", reason="needs MUJOCO_GL=osmesa (nox sets it)")
@pytest.mark.slow  # about 2 minutes on 2 idle cores: MetaWorld demos, training, closed-loop eval
def test_demo_quick_end_to_end(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    result = json.loads((tmp_path / "demo/result.json").read_text())
    assert set(result["per_task"]) == {"reach-v3", "button-press-topdown-v3"}
    assert all(t["expert_success_rate"] == 1.0 for t in result["expert"].values())
    first = result["final_losses"]
    assert {"text_ce", "action_ce", "flow"} <= set(first)
    hist = json.loads((tmp_path / "demo/train/history.json").read_text())
    assert hist[-1]["flow"] < hist[0]["flow"]  # learning happened
    assert hist[-1]["text_ce"] < hist[0]["text_ce"]
    assert (tmp_path / "demo/loss_curves.png").stat().st_size > 1000
    assert "| reach-v3 |" in (tmp_path / "demo/report.md").read_text()
    assert (tmp_path / "demo/train/policy/model.safetensors").exists()
