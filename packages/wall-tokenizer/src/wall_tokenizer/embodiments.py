"""One action tokenizer per embodiment (robot / dataset), behind one object and one id range.

Chosen over one tokenizer on the padded canonical layout by ``benchmarks/tokenizer_embodiments.py``: on real
MetaWorld (4-D) and ALOHA (14-D) demo chunks the per-embodiment FAST tokenizers spend 23 and 19 tokens per
chunk against 31 and 22 for one padded tokenizer, at the same reconstruction error (the DCT is per DOF, so
the padding changes only what BPE must learn), and still fewer with half the vocabulary each.

The sub-tokenizers' ids share ``[0, vocab_size)`` (``vocab_size`` = the largest); the sample's embodiment
name picks the tokenizer, as it picks the normalisation statistics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .base import ActionTokenizer, DecodeResult, create, load

__all__ = ["PerEmbodimentTokenizer"]
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class PerEmbodimentTokenizer(ActionTokenizer):
    """``{embodiment name: fitted ActionTokenizer}`` with one chunk length H; each may have its own D.

    ``encode(chunks, embodiment=name)`` / ``decode(tokens, embodiment=name)`` route to that tokenizer (the
    name may be left out when there is only one). Build it from fitted tokenizers, or with :meth:`fit_each`.
    Saved as one folder per embodiment under the tokenizer's folder.
    """

    name = "per_embodiment"

    def __init__(self, tokenizers: Mapping[str, ActionTokenizer] | None = None) -> None:
        super().__init__()
        self.tokenizers: dict[str, ActionTokenizer] = {}
        self.vocab_size = 0
        for n, tok in (tokenizers or {}).items():
            self.add(n, tok)

    def add(self, name: str, tokenizer: ActionTokenizer) -> None:
        """Add a fitted tokenizer for embodiment ``name`` (a folder-safe name; same H as the others)."""
        if not _NAME.match(name):
            raise ValueError(f"embodiment name {name!r} must use only letters, digits, '_', '.', '-'")
        if not tokenizer.is_fitted:
            raise ValueError(f"the tokenizer for {name!r} is not fitted")
        if self.action_horizon is not None and tokenizer.action_horizon != self.action_horizon:
            raise ValueError(
                f"{name!r} is fitted for action_horizon={tokenizer.action_horizon}, the others for "
                f"{self.action_horizon}; fit every embodiment's tokenizer on chunks of one length"
            )
        self.tokenizers[name] = tokenizer
        self.action_horizon = tokenizer.action_horizon
        self.vocab_size = max(t.vocab_size for t in self.tokenizers.values())

    @classmethod
    def fit_each(
        cls, chunks: Mapping[str, np.ndarray], kind: str = "fast", **options: Any
    ) -> PerEmbodimentTokenizer:
        """Fit one ``kind`` tokenizer (``options`` to its constructor) per entry of ``{name: chunks [N, H, D]}``."""
        return cls({n: create(kind, **options).fit(x) for n, x in chunks.items()})

    def get(self, embodiment: str | None) -> ActionTokenizer:
        """The tokenizer of ``embodiment`` (None: the only one); KeyError naming the known ones otherwise."""
        if embodiment is None and len(self.tokenizers) == 1:
            return next(iter(self.tokenizers.values()))
        if embodiment not in self.tokenizers:
            raise KeyError(
                f"no action tokenizer for embodiment {embodiment!r}; this one has {sorted(self.tokenizers)}"
            )
        return self.tokenizers[embodiment]

    def fit(self, chunks: np.ndarray) -> PerEmbodimentTokenizer:
        """Not available: chunks carry no embodiment name. Use :meth:`fit_each`."""
        raise TypeError(
            "PerEmbodimentTokenizer.fit needs names: use PerEmbodimentTokenizer.fit_each({name: chunks})"
        )

    def encode(self, chunks: np.ndarray, embodiment: str | None = None) -> list[np.ndarray]:
        """Chunks [B, H, D_embodiment] of one embodiment -> B id arrays in ``[0, vocab_size)``."""
        return self.get(embodiment).encode(chunks)

    def decode(
        self,
        tokens: Any,
        action_horizon: int | None = None,
        action_dim: int | None = None,
        embodiment: str | None = None,
    ) -> DecodeResult:
        """B id sequences of one embodiment -> actions [B, H, D_embodiment] and valid [B]."""
        return self.get(embodiment).decode(tokens, action_horizon, action_dim)

    def _config(self) -> dict[str, Any]:
        return {"action_horizon": self.action_horizon, "embodiments": sorted(self.tokenizers)}

    def _save_state(self, path: Path) -> None:
        for n, tok in self.tokenizers.items():
            tok.save(path / n)

    @classmethod
    def _from_saved(cls, config: dict[str, Any], path: Path) -> PerEmbodimentTokenizer:
        names = config.get("embodiments")
        if not isinstance(names, list) or not all(isinstance(n, str) and _NAME.match(n) for n in names):
            raise ValueError(f"{path}: 'embodiments' must list folder-safe names, got {json.dumps(names)}")
        return cls({n: load(path / n) for n in names})
