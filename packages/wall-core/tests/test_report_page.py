"""wall report / wall view without a browser: Wilson intervals, the page's numbers, inlined assets, errors."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from wall_core.cli import main
from wall_core.demo import DemoConfig, _write_markdown
from wall_core.report import build_report, build_viewer, final_loss_table, wilson_interval

_spec = importlib.util.spec_from_file_location(
    "report_fixtures", Path(__file__).with_name("report_fixtures.py")
)
assert _spec is not None and _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)
make_run, make_dataset = fixtures.make_run, fixtures.make_dataset


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-4) and hi == 1.0
    with pytest.raises(ValueError, match="n >= 1"):
        wilson_interval(0, 0)


def test_report_numbers_equal_eval_json_and_assets_are_inline(tmp_path):
    run = make_run(tmp_path / "run")
    html = build_report(run).read_text()
    ev = json.loads((run / "eval" / "eval.json").read_text())
    for task, r in ev["per_task"].items():
        row = re.search(rf'<tr data-task="{task}"><td>{task}</td><td class="k">(\d+)</td><td class="n">(\d+)</td>'
                        rf'<td class="rate">([\d.]+)%</td>', html)  # fmt: skip
        assert row, task
        assert int(row[2]) == r["episodes"] and float(row[3]) == pytest.approx(
            100 * r["success_rate"], abs=0.05
        )
        assert int(row[1]) == sum(e["success"] for e in ev["episodes"] if e["task"] == task)
    # a: seeds 0..4 succeed on 0 and 3; b: on 0, 2, 4 -> 5 of 10 overall
    assert re.search(r'data-task="all">.*?class="rate">50.0%</td><td class="ci">\[23.7%, 76.3%\]', html)
    for e in ev["episodes"]:
        assert f'data-task="{e["task"]}" data-seed="{e["seed"]}"' in html
    recorded = [e for e in ev["episodes"] if e["video"]]
    assert {e["success"] for e in recorded if e["task"] == "a"} == {True, False}
    assert html.count('src="data:video/mp4;base64,') == len(recorded)
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in html
    assert "loss per term on dataset metaworld" in html and "loss per term on dataset vqa" in html
    assert "share of the backbone gradient norm" in html and "transformers" in html and '"seed": 0' in html


def test_report_without_eval_json_names_the_file(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "empty" / "eval.json"))):
        build_report(tmp_path / "empty")
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "eval.json" in caplog.text


def test_cli_report_and_view_write_pages(tmp_path):
    run = make_run(tmp_path / "run", episodes=2)
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 1000
    ds = make_dataset(tmp_path / "ds")
    assert main(["view", str(ds), "--out", str(tmp_path / "v.html")]) == 0
    html = (tmp_path / "v.html").read_text()
    assert html.count('<section class="episode"') == 2 and "pick the cube 1" in html
    assert html.count("data:video/mp4;base64,") == 2 * 2  # two cameras x two episodes
    assert "observation.state over time" in html and "action over time" in html
    with pytest.raises(FileNotFoundError, match="info.json"):
        build_viewer(tmp_path / "nothing")


def test_per_dataset_loss_keys_in_both_orders():
    from wall_core.report.page import _split_key

    terms = {"loss", "flow", "text_ce", "action_ce"}
    assert _split_key("metaworld/flow", terms) == ("metaworld", "flow")
    assert _split_key("flow/metaworld", terms) == ("metaworld", "flow")
    assert _split_key("vqa/text_ce", terms) == ("vqa", "text_ce")


def test_final_loss_table_per_dataset_means_over_seeds():
    seeds = [
        {
            "step": 9,
            "lr": 1e-3,
            "loss": 1.0,
            "flow": 0.5,
            "text_ce": 2.0,
            "aloha/flow": 0.25,
            "vqa/text_ce": 2.0,
        },
        {
            "step": 9,
            "lr": 1e-3,
            "loss": 3.0,
            "flow": 0.7,
            "text_ce": 4.0,
            "aloha/flow": 0.75,
            "vqa/text_ce": 4.0,
        },
    ]
    lines = final_loss_table(
        {"multi": seeds, "aloha_only": [{"loss": 0.5, "aloha/flow": 0.125}]}
    ).splitlines()
    assert lines[0] == "| dataset | loss | text_ce | flow |"
    assert lines[2] == "| multi: all | 2.0000 ± 1.0000 | 3.0000 ± 1.0000 | 0.6000 ± 0.1000 |"
    assert lines[3] == "| multi: aloha | — | — | 0.5000 ± 0.2500 |"
    assert lines[4] == "| multi: vqa | — | 3.0000 ± 1.0000 | — |"
    assert lines[5:] == ["| aloha_only: all | 0.5000 | — | — |", "| aloha_only: aloha | — | — | 0.1250 |"]
    one = final_loss_table({"policy": seeds[:1]}).splitlines()
    assert one[2:4] == ["| all | 1.0000 | 2.0000 | 0.5000 |", "| aloha | — | — | 0.2500 |"]


def test_demo_report_lists_the_final_losses_per_dataset(tmp_path):
    result = {"timings_s": {"train_s": 12.0}, "gradient_shares": {},
              "final_losses": {"step": 4, "loss": 0.8, "flow": 0.3, "metaworld/flow": 0.3, "vqa/text_ce": 1.5}}  # fmt: skip
    _write_markdown(DemoConfig(), tmp_path, {"episodes": 2, "frames": 40}, result, "| task |")
    md = (tmp_path / "report.md").read_text()
    table = md.split("## Final training losses, per dataset and term\n\n")[1].split("\n\n")[0].splitlines()
    assert table[0] == "| dataset | loss | text_ce | flow |"
    assert table[2:] == [
        "| all | 0.8000 | — | 0.3000 |",
        "| metaworld | — | — | 0.3000 |",
        "| vqa | — | 1.5000 | — |",
    ]
