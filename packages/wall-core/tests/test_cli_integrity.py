"""Issue 19 finding 5 and the CLI: ``wall stats`` validates the dataset first (problems named, exit 2, never a
traceback); ``wall eval`` / ``wall demo`` / ``wall serve`` without their extra say which one to install."""

import json
import logging
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import wall_data as wd
from wall_core.cli import main


@pytest.fixture(scope="module")
def video_ds(tmp_path_factory):
    feats = {
        "observation.state": {"dtype": "float32", "shape": [3]},
        "action": {"dtype": "float32", "shape": [2]},
        "observation.images.cam": {"dtype": "video", "shape": [16, 16, 3]},
    }
    w = wd.LeRobotWriter(tmp_path_factory.mktemp("ds") / "v", fps=10, features=feats)
    for ep in range(2):
        for i in range(8):
            w.add_frame({"observation.state": np.full(3, i, float), "action": np.array([ep, i], float),
                         "observation.images.cam": np.full((16, 16, 3), 20 * i, np.uint8)})  # fmt: skip
        w.save_episode(task="wave")
    return w.finalize()


def _info(root, fn):
    info = json.loads((root / "meta/info.json").read_text())
    fn(info)
    (root / "meta/info.json").write_text(json.dumps(info))


def _string_column(root):
    f = next((root / "data").rglob("*.parquet"))
    t = pq.read_table(f)
    i = t.schema.get_field_index("observation.state")
    pq.write_table(t.set_column(i, "observation.state", pa.array(["x"] * len(t))), f)


def _mp4(root, fn):
    fn(next((root / "videos").rglob("*.mp4")))


EDITS = {
    "fps 0": (lambda r: _info(r, lambda i: i.update(fps=0)), "fps must be a finite number > 0"),
    "empty features": (lambda r: _info(r, lambda i: i.update(features={})), "'features' is empty"),
    "string column": (_string_column, "file-000.parquet"),
    "missing mp4": (lambda r: _mp4(r, lambda p: p.unlink()), "missing video file"),
    "corrupt mp4": (lambda r: _mp4(r, lambda p: p.write_bytes(p.read_bytes()[:200])), "file-000.mp4"),
}


def test_stats_on_a_good_dataset_updates_its_checksums(video_ds, tmp_path):
    root = shutil.copytree(video_ds, tmp_path / "good")
    assert main(["stats", "--dataset", str(root)]) == 0
    assert wd.validate_dataset(root) == []  # meta/stats.json rewritten and its sha256 recorded


@pytest.mark.parametrize("name", sorted(EDITS))
def test_stats_on_a_bad_dataset_names_the_problem_and_fails(video_ds, tmp_path, caplog, name):
    root = shutil.copytree(video_ds, tmp_path / "bad")
    edit, message = EDITS[name]
    edit(root)
    before = (root / "meta/stats.json").read_bytes()
    with caplog.at_level(logging.ERROR):
        assert main(["stats", "--dataset", str(root)]) == 2
    assert message in caplog.text and "Traceback" not in caplog.text
    assert (root / "meta/stats.json").read_bytes() == before  # nothing written from bad data


@pytest.mark.parametrize("cmd", [["eval", "--policy", "nowhere"], ["demo", "--quick"]])
def test_sim_commands_without_the_extra_say_which_to_install(monkeypatch, caplog, cmd, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "metaworld", None)  # as if not installed
    with caplog.at_level(logging.ERROR):
        assert main([*cmd, "--out", str(tmp_path / "o")]) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0].getMessage()
    assert "pip install 'wall-core[sim]'" in errors[0].getMessage() and "wall-robots" not in caplog.text
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "random"])
def test_serve_and_eval_with_a_damaged_policy_exit_2_without_traceback(tmp_path, caplog, make, damage):
    from wall_core.policy import WallPolicy

    model, pipe, _ = make()
    folder = WallPolicy(model, pipe).save_pretrained(tmp_path / "p")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(
        {"truncated": data[: len(data) // 3], "empty": b"", "random": np.random.bytes(999)}[damage]
    )
    with caplog.at_level(logging.ERROR):
        assert main(["serve", "--policy", str(folder), "--port", "0"]) == 2
        assert main(["eval", "--policy", str(folder), "--out", str(tmp_path / "e")]) == 2
    assert caplog.text.count("model.safetensors: sha256 differs") == 2 and "Traceback" not in caplog.text
