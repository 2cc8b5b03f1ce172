"""Bad training checkpoints for ``resume=``: flipped and truncated bytes, empty/random/foreign files, a
pickle that would run code, URLs, a missing or damaged ``.sha256``, changed settings. What a resume reads
before Lightning does: :func:`check_resume_path`, :func:`verify_checkpoint`, :func:`check_resume_config`."""

from __future__ import annotations

import os
import pickle
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import torch

from wall_core.training import load_config
from wall_core.training.checkpoint_io import ChecksumCheckpointIO, checksum_path, verify_checkpoint
from wall_core.training.guards import check_resume_path
from wall_core.training.resume import CONFIG_KEY, check_resume_config, config_text

from . import Case, Outcome, expect_error, flip_byte, flips


def _cfg(**over: Any) -> Any:
    return load_config(None, [f"{k}={v}" for k, v in over.items()])


def write_base(path: Path) -> Path:
    """A checkpoint as ``wall train`` writes it (tensors + the run's config), with its ``.sha256``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"model.layer{i}.weight": torch.randn(64, 64) for i in range(4)}
    ckpt = {"state_dict": state, "global_step": 7, "epoch": 0, CONFIG_KEY: config_text(_cfg())}
    ChecksumCheckpointIO().save_checkpoint(ckpt, path)
    return path


def resume(path: str | Path, cfg: Any = None) -> list[str]:
    """The checks ``train()`` runs on ``resume=path`` before Lightning reads the file."""
    p = check_resume_path(path)
    verify_checkpoint(p)
    return check_resume_config(p, cfg if cfg is not None else _cfg())


class _Payload:
    """Unpickling this runs code (creates a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def _copy(base: Path, work: Path, name: str) -> Path:
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(base, d / base.name)
    shutil.copy(checksum_path(base), d / checksum_path(base).name)
    return d / base.name


def _pickle_case(work: Path, with_sidecar: bool) -> Case:
    def run() -> tuple[Outcome, str]:
        path = work / f"evil_{with_sidecar}" / "last.ckpt"
        path.parent.mkdir(parents=True, exist_ok=True)
        marker = path.parent / "ran"
        with open(path, "wb") as f:
            pickle.dump({"state_dict": _Payload(marker)}, f)
        if with_sidecar:  # an attacker can write a matching .sha256 too: the load itself must refuse
            from wall_data.integrity import sha256_file

            checksum_path(path).write_text(sha256_file(path) + "\n")
        outcome = expect_error(lambda: resume(path))
        return ("silent", "the pickle ran code") if marker.exists() else outcome

    return Case("checkpoint", f"pickle payload (sidecar={with_sidecar})", run)


def cases(work: Path) -> list[Case]:
    """Every checkpoint case."""
    base = write_base(work / "base" / "last.ckpt")
    size = base.stat().st_size
    out: list[Case] = []

    def damaged(name: str, edit: Any) -> Case:
        def run() -> tuple[Outcome, str]:
            p = _copy(base, work, name.replace(" ", "_").replace("@", "at"))
            edit(p)
            return expect_error(lambda: resume(p))

        return Case("checkpoint", name, run)

    out += [damaged(f"flip @{at}", lambda p, at=at: flip_byte(p, at, 0xFF)) for at in flips(size, 10)]
    for at in (0, 10, size // 4, size // 2, size - 1):
        out.append(damaged(f"truncate to {at}", lambda p, at=at: p.write_bytes(p.read_bytes()[:at])))
    out.append(damaged("random bytes", lambda p: p.write_bytes(os.urandom(size))))
    out.append(damaged("a text file", lambda p: p.write_text("not a checkpoint\n")))
    out.append(damaged("sidecar missing", lambda p: checksum_path(p).unlink()))
    out.append(damaged("sidecar garbage", lambda p: checksum_path(p).write_text("xyz\n")))
    out.append(damaged("sidecar of another file", lambda p: checksum_path(p).write_text("0" * 64 + "\n")))

    def resign(p: Path) -> None:  # damage + a matching sidecar: what the loader itself must catch
        p.write_bytes(p.read_bytes()[: size // 2])
        checksum_path(p).write_text(__import__("wall_data.integrity").integrity.sha256_file(p) + "\n")

    out.append(damaged("truncated and re-signed", resign))
    out += [_pickle_case(work, s) for s in (False, True)]
    for url in ("http://127.0.0.1:9/x.ckpt", "https://example.com/last.ckpt", "s3://bucket/last.ckpt",
                "file:///tmp/last.ckpt", "hf://org/repo/last.ckpt", "ftp://h/x.ckpt"):  # fmt: skip
        out.append(
            Case("checkpoint", f"url {url.split(':')[0]}", partial(expect_error, partial(resume, url)))
        )
    out.append(Case("checkpoint", "missing file", lambda: expect_error(lambda: resume(work / "nope.ckpt"))))
    out.append(Case("checkpoint", "a directory", lambda: expect_error(lambda: resume(work))))
    for key, value in (("optim.lr", 0.1), ("seed", 5), ("model.action_horizon", 8)):
        out.append(Case("checkpoint", f"resume with changed {key}",
                        partial(expect_error, partial(resume, base, _cfg(**{key: value})))))  # fmt: skip
    return out
