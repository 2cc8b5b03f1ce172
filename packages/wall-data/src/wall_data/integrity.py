"""Per-file sha256 checksums (``meta/checksums.json``) and crash-safe commits of dataset files.

A :class:`Commit` stages new versions of files as ``<file>.tmp`` (fsynced), then:

1. writes the manifest with ``pending: {file: [old sha256 | null, new sha256]}`` (atomic rename);
2. renames every staged file into place in the order staged (each rename is atomic; the folder is fsynced);
3. writes the manifest again with the new hashes and no ``pending`` entry.

A process killed at any point leaves every file either in its old or its new version, and the manifest
accepts both while ``pending`` is present, so a reader sees the last finished commit (or the one in flight,
complete). :func:`verify` checks files against the manifest and names each file that differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST", "Commit", "Problem", "load_manifest", "sha256_file", "verify"]

MANIFEST = "meta/checksums.json"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: the file (relative to the root where known), the episode and the
    frame where it applies, and what is wrong and how to fix it."""

    message: str
    file: str | None = None
    episode: int | None = None
    frame: int | None = None

    def __str__(self) -> str:
        loc = " ".join(
            f"{name} {v}" for name, v in (("episode", self.episode), ("frame", self.frame)) if v is not None
        )
        prefix = ": ".join(p for p in (self.file, loc) if p)
        return f"{prefix}: {self.message}" if prefix else self.message


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_manifest(root: Path) -> dict[str, Any] | None:
    """The parsed ``meta/checksums.json`` of ``root``, or None when the dataset has none (older writers).
    Raises ValueError when the file exists but is not a manifest."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        man = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    if (
        not isinstance(man, dict)
        or man.get("algorithm") != "sha256"
        or not isinstance(man.get("files"), dict)
    ):
        raise ValueError(f"{path} is not a checksum manifest (needs algorithm 'sha256' and a 'files' map)")
    return man


def _write_manifest(root: Path, man: dict[str, Any]) -> None:
    path = root / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(man, indent=1, sort_keys=True))
    _fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def verify(
    root: Path, files: list[str] | None = None, manifest: dict[str, Any] | None = None
) -> list[Problem]:
    """Check ``files`` (paths relative to ``root``; default: every file in the manifest) against the
    manifest. Returns one :class:`Problem` per missing or changed file (empty when all match or when the
    dataset has no manifest). A file not in the manifest is a problem only when named in ``files``."""
    man = manifest if manifest is not None else load_manifest(root)
    if man is None:
        return []
    known: dict[str, str] = man["files"]
    pending: dict[str, list[str | None]] = man.get("pending", {})
    problems = []
    for rel in files if files is not None else sorted(set(known) | set(pending)):
        ok = {h for h in [known.get(rel), *pending.get(rel, [])] if h}
        path = root / rel
        if not path.is_file():
            if rel in pending and pending[rel][0] is None:
                continue  # a new file of an interrupted commit that never reached its place
            problems.append(Problem("listed in meta/checksums.json but missing; the dataset is partial", rel))
        elif not ok:
            problems.append(
                Problem("not listed in meta/checksums.json (added after the dataset was written?)", rel)
            )
        elif sha256_file(path) not in ok:
            problems.append(
                Problem(
                    "sha256 differs from meta/checksums.json: the file changed after it was written (bit rot, "
                    "a partial copy or an edit); re-download or re-write it (verify_checksums=False skips this)",
                    rel,
                )
            )
    return problems


class Commit:
    """Stage new versions of files under ``root`` and publish them together (see the module docstring).

    >>> c = Commit(root); tmp = c.stage("data/chunk-000/file-000.parquet"); write(tmp); c.commit()
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._staged: list[tuple[str, Path]] = []

    def stage(self, rel: str) -> Path:
        """Path to write the new version of ``rel`` to (``<rel>.tmp``); its folder is created."""
        tmp = self.root / (rel + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        self._staged.append((rel, tmp))
        return tmp

    def commit(self) -> dict[str, str]:
        """Publish every staged file; returns {rel: sha256}. Raises FileNotFoundError for a staged file
        that was never written (nothing is published then)."""
        missing = [rel for rel, tmp in self._staged if not tmp.is_file()]
        if missing:
            raise FileNotFoundError(f"staged files were never written: {missing}")
        man = load_manifest(self.root) or {"algorithm": "sha256", "files": {}}
        man.pop("pending", None)
        new = {}
        for rel, tmp in self._staged:
            _fsync_file(tmp)
            new[rel] = sha256_file(tmp)
        _write_manifest(self.root, {**man, "pending": {r: [man["files"].get(r), h] for r, h in new.items()}})
        for rel, tmp in self._staged:
            os.replace(tmp, self.root / rel)
        for folder in {(self.root / rel).parent for rel, _ in self._staged}:
            _fsync_dir(folder)
        man["files"].update(new)
        _write_manifest(self.root, man)
        self._staged = []
        return new
