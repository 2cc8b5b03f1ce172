"""Bad datasets: corrupt bytes (with checksums), parquet bit flips (page checksums only), wrong metadata,
wrong columns, broken videos, and writer misuse. Each must be refused by ``validate_dataset`` (a problem
listed, never an exception) and by the reader (opening it and reading every sample raises a clear error)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import wall_data as wd

from . import Case, Outcome, classify, expect_error, flip_byte, flips, worst

FEATS = {
    "observation.state": {"dtype": "float32", "shape": [3]},
    "action": {"dtype": "float32", "shape": [2]},
    "observation.images.cam": {"dtype": "video", "shape": [16, 16, 3]},
}
DATA, EPISODES = "data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet"
VIDEO = "videos/observation.images.cam/chunk-000/file-000.mp4"


def write_base(root: Path, episodes: int = 3, length: int = 8) -> Path:
    """The clean dataset every case starts from: 3 episodes x 8 frames, state [3], action [2], one video."""
    w = wd.LeRobotWriter(root, fps=10, features=FEATS)
    for ep in range(episodes):
        for i in range(length):
            w.add_frame({"observation.state": np.array([ep, i, 0.5], float), "action": np.array([ep, -i], float),
                         "observation.images.cam": np.full((16, 16, 3), 25 * i, np.uint8)})  # fmt: skip
        w.save_episode(task=f"task {ep % 2}")
    return w.finalize()


def consume(root: Path) -> tuple[Outcome, str]:
    """Both consumers: ``validate_dataset`` must list a problem; the reader must raise a clear error."""
    try:
        problems = wd.validate_dataset(root)
        v: tuple[Outcome, str] = ("clear", str(problems[0])[:160]) if problems else ("silent", "no problem")
    except Exception as e:  # validate_dataset must never raise
        v = ("crash", classify(e)[1])

    def read() -> int:
        ds = wd.LeRobotDataset(root, cameras=["observation.images.cam"], action_horizon=2)
        return sum(1 for i in range(len(ds)) if ds[i] is not None)

    return worst(v, expect_error(read))


def same_data(root: Path, base: Path) -> bool:
    """True when every column of ``root`` reads back exactly as in ``base``."""
    a, b = (wd.LeRobotDataset(r, cameras=[], verify_checksums=False).arrays for r in (root, base))
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def _info(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        info = json.loads((root / "meta/info.json").read_text())
        fn(info)
        (root / "meta/info.json").write_text(json.dumps(info))

    return edit


def _table(rel: str, fn: Callable[[pa.Table], pa.Table]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        pq.write_table(fn(pq.read_table(root / rel)), root / rel)

    return edit


def _col(name: str, fn: Callable[[list[Any]], Any]) -> Callable[[pa.Table], pa.Table]:
    def edit(t: pa.Table) -> pa.Table:
        i = t.schema.get_field_index(name)
        new = fn(t[name].to_pylist())
        return t.set_column(i, name, new if isinstance(new, pa.Array) else pa.array(new))

    return edit


def _set_row(values: list[Any], row: int, value: Any) -> list[Any]:
    values[row] = value
    return values


def _vec(name: str, fn: Callable[[np.ndarray], np.ndarray], dtype: Any = None) -> Callable[[Path], None]:
    def edit(t: pa.Table) -> pa.Table:
        x = fn(np.array(t[name].to_pylist(), dtype=np.float64))
        arr = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), dtype or pa.float32()), x.shape[1])
        return t.set_column(t.schema.get_field_index(name), name, arr)

    return _table(DATA, edit)


def _nan_at(x: np.ndarray, value: float = float("nan")) -> np.ndarray:
    x[5, 1] = value
    return x


SEMANTIC: dict[str, Callable[[Path], Any]] = {
    "info fps=0": _info(lambda i: i.update(fps=0)),
    "info fps=-1": _info(lambda i: i.update(fps=-1)),
    "info fps=NaN": _info(lambda i: i.update(fps=float("nan"))),
    "info fps='ten'": _info(lambda i: i.update(fps="ten")),
    "info features={}": _info(lambda i: i.update(features={})),
    "info action dtype complex64": _info(lambda i: i["features"]["action"].update(dtype="complex64")),
    "info action dtype string": _info(lambda i: i["features"]["action"].update(dtype="string")),
    "info action shape missing": _info(lambda i: i["features"]["action"].pop("shape")),
    "info action shape [-1]": _info(lambda i: i["features"]["action"].update(shape=[-1])),
    "info action shape [3]": _info(lambda i: i["features"]["action"].update(shape=[3])),
    "info state shape [2]": _info(lambda i: i["features"]["observation.state"].update(shape=[2])),
    "info image shape 8x8": _info(lambda i: i["features"]["observation.images.cam"].update(shape=[8, 8, 3])),
    "info total_frames+1": _info(lambda i: i.update(total_frames=i["total_frames"] + 1)),
    "info total_episodes+1": _info(lambda i: i.update(total_episodes=i["total_episodes"] + 1)),
    "info codebase_version v9": _info(lambda i: i.update(codebase_version="v9.0")),
    "info task_index undeclared": _info(lambda i: i["features"].pop("task_index")),
    "info features a list": _info(lambda i: i.update(features=[1, 2])),
    "info.json truncated": lambda r: (r / "meta/info.json").write_text(
        (r / "meta/info.json").read_text()[:40]
    ),
    "info.json empty": lambda r: (r / "meta/info.json").write_bytes(b""),
    "info.json random bytes": lambda r: (r / "meta/info.json").write_bytes(
        np.random.default_rng(0).bytes(300)
    ),
    "info.json a list": lambda r: (r / "meta/info.json").write_text("[1, 2, 3]"),
    "state NaN": _vec("observation.state", _nan_at),
    "action inf": _vec("action", lambda x: _nan_at(x, float("inf"))),
    "state 1e300 float64": _vec("observation.state", lambda x: _nan_at(x, 1e300), pa.float64()),
    "action ragged rows": _table(
        DATA, _col("action", lambda v: [r[:1] if i == 4 else r for i, r in enumerate(v)])
    ),
    "state strings": _table(DATA, _col("observation.state", lambda v: [str(r) for r in v])),
    "action column dropped": _table(DATA, lambda t: t.drop_columns(["action"])),
    "task_index unknown": _table(DATA, _col("task_index", lambda v: _set_row(v, 9, 7))),
    "episode_index wrong": _table(DATA, _col("episode_index", lambda v: _set_row(v, 3, 2))),
    "frame_index gap": _table(DATA, _col("frame_index", lambda v: _set_row(v, 3, 9))),
    "timestamps reversed": _table(DATA, _col("timestamp", lambda v: v[::-1])),
    "timestamp off by 1 s": _table(DATA, _col("timestamp", lambda v: _set_row(v, 6, v[6] + 1.0))),
    "index duplicated": _table(DATA, _col("index", lambda v: _set_row(v, 2, v[1]))),
    "rows dropped": _table(DATA, lambda t: t.slice(0, len(t) - 3)),
    "episode length+1": _table(EPISODES, _col("length", lambda v: _set_row(v, 1, v[1] + 1))),
    "episode from/to index swapped": _table(
        EPISODES,
        lambda t: t.rename_columns(
            [
                {"dataset_from_index": "dataset_to_index", "dataset_to_index": "dataset_from_index"}.get(n, n)
                for n in t.column_names
            ]
        ),
    ),  # fmt: skip
    "video from/to timestamps swapped": _table(
        EPISODES,
        lambda t: t.rename_columns(
            [
                n.replace("from_timestamp", "@")
                .replace("to_timestamp", "from_timestamp")
                .replace("@", "to_timestamp")
                for n in t.column_names
            ]
        ),
    ),  # fmt: skip
    "episodes table emptied": _table(EPISODES, lambda t: t.slice(0, 0)),
    "mp4 missing": lambda r: (r / VIDEO).unlink(),
    "mp4 truncated": lambda r: (r / VIDEO).write_bytes((r / VIDEO).read_bytes()[:300]),
    "mp4 empty": lambda r: (r / VIDEO).write_bytes(b""),
    "mp4 random bytes": lambda r: (r / VIDEO).write_bytes(np.random.default_rng(1).bytes(4000)),
    "data parquet missing": lambda r: (r / DATA).unlink(),
    "data parquet empty": lambda r: (r / DATA).write_bytes(b""),
    "tasks table missing": lambda r: (r / "meta/tasks.parquet").unlink(),
    "stats.json truncated": lambda r: (r / "meta/stats.json").write_text(
        (r / "meta/stats.json").read_text()[:50]
    ),
}
# stats.json is read by validate_dataset (and training), not by the sample reader
VALIDATE_ONLY = {"stats.json truncated"}


def _copy(base: Path, dst: Path, keep_manifest: bool) -> Path:
    shutil.copytree(base, dst)
    if not keep_manifest:
        (dst / "meta/checksums.json").unlink()
    return dst


def _semantic_case(base: Path, work: Path, name: str, edit: Callable[[Path], Any]) -> Case:
    def run() -> tuple[Outcome, str]:
        root = _copy(base, work / name.replace(" ", "_").replace("/", "_"), keep_manifest=False)
        edit(root)
        if name in VALIDATE_ONLY:
            problems = wd.validate_dataset(root)
            return ("clear", str(problems[0])[:160]) if problems else ("silent", "no problem")
        return consume(root)

    return Case("dataset", f"no manifest: {name}", run)


def _bytes_case(base: Path, work: Path, rel: str, how: str, at: int, keep_manifest: bool) -> Case:
    def run() -> tuple[Outcome, str]:
        root = _copy(base, work / f"{how}_{at}_{rel.replace('/', '_')}_{keep_manifest}", keep_manifest)
        path = root / rel
        if how == "flip":
            flip_byte(path, at)
        else:
            path.write_bytes(path.read_bytes()[:at])
        outcome = consume(root)
        if outcome[0] == "silent" and same_data(root, base):
            return (
                "harmless",
                "bytes changed outside the data (footer metadata); every value reads back exactly",
            )
        return outcome

    label = "checksums" if keep_manifest else "page checksums only"
    return Case("dataset", f"{label}: {how} {rel} @{at}", run)


def _writer_cases(work: Path) -> list[Case]:
    feats = {"observation.state": {"dtype": "float32", "shape": [3]}, "n": {"dtype": "int64", "shape": [1]}}
    good = {"observation.state": [1.0, 2.0, 3.0], "n": [1]}

    def frame(**over: Any) -> Callable[[], Any]:
        def run() -> Any:
            w = wd.LeRobotWriter(work / "w", fps=10, features=feats, overwrite=True)
            return w.add_frame({**good, **over})

        return run

    calls: dict[str, Callable[[], Any]] = {
        "writer fps=0": lambda: wd.LeRobotWriter(work / "w", fps=0, features=feats, overwrite=True),
        "writer fps=NaN": lambda: wd.LeRobotWriter(
            work / "w", fps=float("nan"), features=feats, overwrite=True
        ),
        "writer features={}": lambda: wd.LeRobotWriter(work / "w", fps=10, features={}, overwrite=True),
        "writer dtype complex": lambda: wd.LeRobotWriter(
            work / "w", fps=10, features={"a": {"dtype": "complex64", "shape": [1]}}, overwrite=True
        ),
        "writer float into int64": frame(n=[1.5]),
        "writer unknown frame key": frame(extra=1),
        "writer wrong shape": frame(**{"observation.state": [1.0, 2.0]}),
        "writer NaN value": frame(**{"observation.state": [1.0, float("nan"), 3.0]}),
        "writer string for float": frame(**{"observation.state": "abc"}),
        "writer missing key": lambda: wd.LeRobotWriter(
            work / "w", fps=10, features=feats, overwrite=True
        ).add_frame({"n": [1]}),
    }
    return [Case("dataset", name, partial(expect_error, fn)) for name, fn in calls.items()]


def cases(work: Path) -> list[Case]:
    """Every dataset case; the clean dataset is written once under ``work``."""
    base = write_base(work / "base")
    out = [_semantic_case(base, work, n, e) for n, e in SEMANTIC.items()]
    for rel in (DATA, EPISODES, VIDEO, "meta/info.json", "meta/tasks.parquet"):
        size = (base / rel).stat().st_size
        out += [_bytes_case(base, work, rel, "flip", at, True) for at in flips(size, 6)]
        out += [_bytes_case(base, work, rel, "truncate", at, True) for at in (0, size // 3, size - 1)]
    size = (base / DATA).stat().st_size
    out += [_bytes_case(base, work, DATA, "flip", at, False) for at in flips(size, 12)]
    from .writer_kill import cases as kill_cases

    return out + _writer_cases(work) + kill_cases(work)
