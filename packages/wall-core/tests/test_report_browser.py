"""The report and the dataset viewer in a real headless Chromium: no console errors, every video plays
(readyState, finite duration, time advances), numbers on the page equal eval.json, screenshots saved."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from wall_core.report import build_report, build_viewer

logger = logging.getLogger(__name__)
_spec = importlib.util.spec_from_file_location(
    "report_fixtures", Path(__file__).with_name("report_fixtures.py")
)
assert _spec is not None and _spec.loader is not None
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

PLAY_JS = """const done = arguments[arguments.length - 1];
const vids = Array.from(document.querySelectorAll('video'));
Promise.all(vids.map(v => new Promise(res => {
  const report = () => res({ready: v.readyState, duration: v.duration, t0: v.currentTime, err: v.error && v.error.code});
  if (v.readyState >= 2) report(); else { v.addEventListener('loadeddata', report); v.addEventListener('error', report); }
}))).then(states => Promise.all(vids.map(v => v.play().then(() => null, e => String(e)))).then(errs =>
  setTimeout(() => done(states.map((s, i) => Object.assign(s, {playErr: errs[i], t1: vids[i].currentTime,
                                                                paused: vids[i].paused}))), 700)));"""


def _binaries() -> tuple[str, str]:
    """Chromium and chromedriver paths; installs Debian's packages when missing and root, else skips."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if (browser is None or driver is None) and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"], check=False)
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("headless Chromium needed: apt-get install chromium chromium-driver (as root)")
    return browser, driver


@pytest.fixture(scope="module")
def chrome():
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install 'wall-core[test]' (selenium)")
    browser, driver = _binaries()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1800"):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver))
    d.set_script_timeout(30)
    yield d
    d.quit()


def _load(chrome, page: Path, shot: Path) -> list[dict]:
    """Open ``page`` from disk, play its videos, save a full-page screenshot; returns per-video states."""
    chrome.get(page.resolve().as_uri())
    time.sleep(0.5)
    states = chrome.execute_async_script(PLAY_JS)
    height = chrome.execute_script("return document.body.scrollHeight")
    chrome.set_window_size(1280, min(int(height) + 40, 6000))
    chrome.save_screenshot(str(shot))
    logger.warning("screenshot of %s saved to %s", page.name, shot)
    errors = [e for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    assert shot.stat().st_size > 10_000
    return states


def _assert_played(states: list[dict], n: int) -> None:
    assert len(states) == n
    for s in states:
        assert s["err"] is None and s["playErr"] is None, s
        assert s["ready"] >= 2 and 0 < s["duration"] < 60, s  # HAVE_CURRENT_DATA, finite duration
        assert s["t1"] > s["t0"] and not s["paused"], s


def test_report_in_chromium(chrome, tmp_path):
    run = fixtures.make_run(tmp_path / "run")
    page = build_report(run)
    ev = json.loads((run / "eval" / "eval.json").read_text())
    states = _load(chrome, page, tmp_path / "report.png")
    _assert_played(states, sum(1 for e in ev["episodes"] if e["video"]))
    rows = chrome.execute_script(
        "return Array.from(document.querySelectorAll('#success tr[data-task]')).map(r => "
        "[r.dataset.task, r.querySelector('.k').innerText, r.querySelector('.n').innerText, "
        "r.querySelector('.rate').innerText])"
    )
    shown = {t: (int(k), int(n), float(rate.rstrip("%"))) for t, k, n, rate in rows}
    for task, r in ev["per_task"].items():
        k = sum(e["success"] for e in ev["episodes"] if e["task"] == task)
        assert shown[task] == (k, r["episodes"], pytest.approx(100 * r["success_rate"], abs=0.05))
    total = sum(e["success"] for e in ev["episodes"])
    assert shown["all"] == (
        total,
        len(ev["episodes"]),
        pytest.approx(100 * total / len(ev["episodes"]), abs=0.05),
    )
    seeds = chrome.execute_script(
        "return Array.from(document.querySelectorAll('tr.episode')).map(r => [r.dataset.task, +r.dataset.seed])"
    )
    assert seeds == [[e["task"], e["seed"]] for e in ev["episodes"]]


def test_viewer_in_chromium(chrome, tmp_path):
    ds = fixtures.make_dataset(tmp_path / "ds")
    page = build_viewer(ds, tmp_path / "view.html")
    states = _load(chrome, page, tmp_path / "view.png")
    _assert_played(states, 2 * 2)
    tasks = chrome.execute_script(
        "return Array.from(document.querySelectorAll('.task')).map(b => b.innerText)"
    )
    assert tasks == ["pick the cube 0", "pick the cube 1"]
