"""wall report / wall view without a browser: Wilson intervals, the page's numbers, inlined assets, errors."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from wall_core.cli import main
from wall_core.report import build_report, build_viewer, wilson_interval

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
