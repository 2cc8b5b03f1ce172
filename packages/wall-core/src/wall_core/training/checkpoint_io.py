"""Checksums for Lightning checkpoints: every ``.ckpt`` gets a ``<name>.ckpt.sha256`` next to it, written after
the checkpoint (atomically), and a resume verifies it before the file is read.

A checkpoint whose bytes changed after it was written (bit rot, a partial copy, an edit) is refused with an
error naming the file; so is one without its ``.sha256`` (copied alone), unless ``resume_verify=false``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from wall_data.integrity import sha256_file

__all__ = ["ChecksumCheckpointIO", "checksum_path", "verify_checkpoint"]
logger = logging.getLogger(__name__)


def checksum_path(ckpt: str | Path) -> Path:
    """``last.ckpt`` -> ``last.ckpt.sha256``."""
    ckpt = Path(ckpt)
    return ckpt.with_name(ckpt.name + ".sha256")


def verify_checkpoint(ckpt: str | Path, required: bool = True) -> None:
    """Raise ``ValueError`` naming ``ckpt`` when its sha256 differs from its ``.sha256`` file (or that file is
    unreadable). A checkpoint without one is an error when ``required`` (``resume_verify``), else a warning.
    A sharded (fsdp2) checkpoint folder has no checksums: an error when ``required``, else a warning."""
    ckpt, side = Path(ckpt), checksum_path(ckpt)
    if ckpt.is_dir():
        if required:
            raise ValueError(
                f"resume checkpoint {ckpt} is a sharded (fsdp2) folder, whose shards carry no .sha256; set "
                "resume_verify=false to resume it unchecked"
            )
        logger.warning("%s is a sharded checkpoint folder: its integrity cannot be checked", ckpt)
        return
    if not side.is_file():
        if required:
            raise ValueError(
                f"resume checkpoint {ckpt} has no {side.name}, so its integrity cannot be checked (copy it along "
                "with the checkpoint, or set resume_verify=false to resume anyway)"
            )
        logger.warning("%s has no %s: its integrity cannot be checked (resume_verify=false)", ckpt, side.name)
        return
    want = side.read_text(errors="replace").split()
    if len(want) < 1 or len(want[0]) != 64:
        raise ValueError(f"{side} is not a sha256 file (expected 64 hex digits); delete it or restore it")
    if sha256_file(ckpt) != want[0]:
        raise ValueError(
            f"resume checkpoint {ckpt}: sha256 differs from {side.name}: the file changed after it was written "
            "(bit rot, a partial copy or an edit); resume from another checkpoint"
        )


class ChecksumCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO that also writes ``<ckpt>.sha256`` (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Save ``checkpoint`` to ``path``, then its sha256 next to it."""
        super().save_checkpoint(checkpoint, path, storage_options)
        side = checksum_path(path)
        tmp = side.with_name(side.name + ".tmp")
        tmp.write_text(f"{sha256_file(Path(path))}  {Path(path).name}\n")
        os.replace(tmp, side)

    def remove_checkpoint(self, path: Any) -> None:
        """Remove the checkpoint and its sha256."""
        super().remove_checkpoint(path)
        checksum_path(path).unlink(missing_ok=True)
