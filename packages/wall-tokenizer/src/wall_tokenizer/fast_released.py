"""FAST in the released processor's layout and ids (``physical-intelligence/fast``, FAST+).

The released processor (``UniversalActionProcessor``) quantises a chunk's DCT exactly as
:func:`~wall_tokenizer.fast.dct_coefficients` does, maps coefficient ``c`` to the character
``chr(max(c - min_token, 0))`` and encodes the string with a ``tokenizers`` byte-level BPE
(``ByteLevel`` pre-tokenizer and decoder: each character is split into its UTF-8 bytes first).  Its folder
holds ``tokenizer.json`` (that BPE), ``tokenizer_config.json`` and ``processor_config.json`` (``scale``,
``min_token``, ``vocab_size``, ``time_horizon``, ``action_dim``, the last two null for the universal FAST+).

:class:`ReleasedFASTTokenizer` loads and writes that layout and gives the released ids and decoded
actions; it never runs the folder's Python file.  Where the released processor fails silently we say so:
values below ``min_token`` saturate (as released) and are counted in ``last_stats``; a sequence that does
not spell H*D coefficients decodes with ``valid=False`` (the released processor returns zeros and
prints).  A ``tokenizer.json`` that does not spell the released alphabet is refused when loaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from .base import (
    RELEASED_CONFIG_FILE,
    RELEASED_TYPE,
    ActionTokenizer,
    DecodeResult,
    EncodeStats,
    as_chunks,
    as_token_lists,
    check_finite,
)
from .fast import dct_coefficients

__all__ = ["ReleasedFASTTokenizer"]
logger = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
_PROCESSOR_CLASS = "UniversalActionProcessor"
_AUTO_MAP = {"AutoProcessor": "processing_action_tokenizer.UniversalActionProcessor"}
# What transformers' PreTrainedTokenizerFast.save_pretrained wrote into the released tokenizer_config.json.
_TOKENIZER_CONFIG = {
    "added_tokens_decoder": {},
    "clean_up_tokenization_spaces": False,
    "model_max_length": 1000000000000000019884624838656,
    "tokenizer_class": "PreTrainedTokenizerFast",
}
_SURROGATES = 0xD800  # code points from here on cannot go through tokenizers (the released call raises)


def byte_level_bpe() -> Tokenizer:
    """An untrained ``tokenizers`` BPE set up as ``tokenizers.ByteLevelBPETokenizer()`` sets up its inner
    tokenizer (what the released ``fit`` trains): ByteLevel pre-tokenizer without prefix space, ByteLevel
    decoder and post-processor, no normalizer."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    return bpe


class ReleasedFASTTokenizer(ActionTokenizer):
    """FAST with the released processor's alphabet, BPE and folder layout: chunks [B, H, D] <-> ids.

    ``scale``, ``vocab_size`` and ``min_frequency`` as in the released ``fit`` (defaults 10, 1024, 2).
    ``action_horizon`` / ``action_dim`` fix H and D; None (FAST+) accepts any chunk shape and then
    ``decode`` needs them as arguments.  Build one with :meth:`fit`, or load a released folder with
    :func:`wall_tokenizer.load`; :meth:`save` writes the released layout.
    """

    name = RELEASED_TYPE

    def __init__(
        self,
        scale: float = 10.0,
        vocab_size: int = 1024,
        min_frequency: int = 2,
        action_horizon: int | None = None,
        action_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self.scale = float(scale)
        self.vocab_size = int(vocab_size)
        self.min_frequency = int(min_frequency)
        self.action_horizon = None if action_horizon is None else int(action_horizon)
        self.action_dim = None if action_dim is None else int(action_dim)
        self.min_token: int | None = None
        self.max_token: int | None = None
        self._bpe: Tokenizer | None = None
        self._dead = np.zeros(0, dtype=bool)  # [max - min + 1]: values this BPE cannot spell

    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` has run or a folder was loaded (H and D may still be None: FAST+)."""
        return self._bpe is not None and self.min_token is not None

    def _ready(self) -> tuple[Tokenizer, int]:
        self._require_fitted()
        if self._bpe is None or self.min_token is None:
            raise RuntimeError("ReleasedFASTTokenizer is not fitted: call .fit(chunks) or load a folder")
        return self._bpe, self.min_token

    # --- fit ---------------------------------------------------------------------------------------------
    def fit(self, chunks: Any) -> ReleasedFASTTokenizer:
        """Fit ``min_token`` / ``max_token`` and the byte-level BPE as the released ``fit`` does.

        ``chunks``: an array [N, H, D], or a list of [H_i, D_i] arrays of any shapes (then H and D stay
        None unless all chunks share them).  Returns ``self``."""
        arrays = _chunk_list(chunks)
        coefs = [row for a in arrays for row in dct_coefficients(a, self.scale).astype(np.int64)]
        allc = np.concatenate(coefs)
        lo, hi = int(allc.min()), int(allc.max())
        n_sym = hi - lo + 1
        if n_sym > min(self.vocab_size, _SURROGATES):
            raise ValueError(
                f"quantised DCT coefficients span {n_sym} values (scale={self.scale}) but vocab_size="
                f"{self.vocab_size}; raise vocab_size to at least {n_sym}, lower scale or normalise actions"
            )
        if n_sym + 100 > self.vocab_size:
            logger.warning("FAST: alphabet of %d symbols is almost the vocab size %d", n_sym, self.vocab_size)
        bpe = byte_level_bpe()
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab_size,
            min_frequency=self.min_frequency,
            show_progress=False,
            special_tokens=[],
            initial_alphabet=[chr(i) for i in range(n_sym)],
            max_token_length=10000,
        )
        bpe.train_from_iterator([_chars(c - lo) for c in coefs], trainer=trainer, length=len(coefs))
        if bpe.get_vocab_size() > self.vocab_size:
            raise ValueError(
                f"the byte-level BPE needs {bpe.get_vocab_size()} entries (alphabet plus byte symbols) but "
                f"vocab_size={self.vocab_size}; raise vocab_size"
            )
        shapes = {a.shape[1:] for a in arrays}
        if len(shapes) == 1:
            self.action_horizon, self.action_dim = next(iter(shapes))
        self._set_bpe(bpe, lo, n_sym)
        return self

    def _set_bpe(self, bpe: Tokenizer, min_token: int, n_sym: int | None) -> None:
        """Check ``bpe`` against the released alphabet (see :func:`_check_released_alphabet`) and adopt it."""
        n_sym, dead = _check_released_alphabet(bpe, min_token, n_sym)
        self.min_token, self.max_token, self._bpe, self._dead = min_token, min_token + n_sym - 1, bpe, dead

    # --- encode / decode ---------------------------------------------------------------------------------
    def encode(self, chunks: np.ndarray) -> list[np.ndarray]:
        """Chunks [B, H, D] (or one [H, D]) -> B int64 id arrays, the released processor's ids.

        ``last_stats`` counts the values outside the fitted ``[min_token, max_token]`` and those inside it
        that the BPE cannot spell.  All are encoded as released: values below ``min_token`` saturate to it;
        values above ``max_token`` go through (the byte-level BPE spells them with more tokens, or drops
        them when their bytes are not in its vocabulary); unspellable values (never seen by the fit) are
        dropped.  A chunk with a dropped value decodes with ``valid=False``; a saturated one decodes to
        ``min_token`` there."""
        bpe, lo = self._ready()
        arr = as_chunks(chunks, self.action_dim, self.action_horizon, finite=False, keep_float32=True)
        q = dct_coefficients(arr, self.scale)
        if not np.isfinite(q).all():
            check_finite(arr)
            raise ValueError("action chunks are too large to tokenize (DCT overflow); normalise them first")
        codes = q - lo
        n_sym = self._dead.size
        lost = (codes < 0) | (codes >= n_sym)
        if self._dead.any():
            lost |= self._dead[np.clip(codes, 0, n_sym - 1).astype(np.int64)]
        per_chunk = np.count_nonzero(lost, axis=1).astype(np.int64)
        self.last_stats = EncodeStats(
            int(per_chunk.sum()), int(np.count_nonzero(per_chunk)), len(q), per_chunk
        )
        np.maximum(codes, 0, out=codes)
        if codes.size and codes.max() >= _SURROGATES:
            raise ValueError(
                f"a quantised coefficient maps to code point {int(codes.max())} >= {_SURROGATES} (actions of "
                f"about {(_SURROGATES + lo) / self.scale:.0f}); normalise actions to about [-1, 1]"
            )
        encs = bpe.encode_batch([_chars(row) for row in codes])
        return [np.asarray(e.ids, dtype=np.int64) for e in encs]

    def decode(
        self, tokens: Any, action_horizon: int | None = None, action_dim: int | None = None
    ) -> DecodeResult:
        """B id sequences -> actions [B, H, D] (float64) and valid [B], as the released ``decode``.

        H and D: the arguments, else the tokenizer's own (ValueError if neither is set: FAST+ leaves them
        open).  A sequence is valid when all its ids are in the vocabulary and it decodes to exactly H*D
        characters that are coefficients; then its actions equal the released processor's.  Otherwise
        the coefficients that are there stay in place (missing ones zero) and ``valid`` is False."""
        bpe, lo = self._ready()
        h, d = action_horizon or self.action_horizon, action_dim or self.action_dim
        if h is None or d is None:
            raise ValueError(
                "decode needs action_horizon and action_dim: pass them (this tokenizer's "
                f"processor_config.json leaves them open: time_horizon={self.action_horizon}, "
                f"action_dim={self.action_dim})"
            )
        seqs = as_token_lists(tokens)
        n_ids = bpe.get_vocab_size()
        known = [(s >= 0) & (s < n_ids) for s in seqs]
        texts = bpe.decode_batch([s[k].tolist() for s, k in zip(seqs, known)], skip_special_tokens=False)
        coefs = np.zeros((len(seqs), h * d))
        valid = np.array([bool(k.all()) for k in known], dtype=bool)
        for b, text in enumerate(texts):
            chars = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
            good = chars < _SURROGATES  # U+FFFD: bytes that are not UTF-8, i.e. not a coefficient
            valid[b] &= chars.size == h * d and bool(good.all())
            row = np.where(good, chars.astype(np.float64) + lo, 0.0)[: h * d]
            coefs[b, : row.size] = row
        coefs /= self.scale
        actions = scipy.fft.idct(coefs.reshape(len(seqs), h, d), type=2, axis=1, norm="ortho")
        return DecodeResult(actions=actions, valid=valid)

    # --- persistence -------------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        """Only what the released files cannot hold (they stay loadable by the released processor)."""
        return {"max_token": self.max_token, "min_frequency": self.min_frequency}

    def _save_state(self, path: Path) -> None:
        bpe, lo = self._ready()
        bpe.save(str(path / TOKENIZER_FILE))
        (path / TOKENIZER_CONFIG_FILE).write_text(json.dumps(_TOKENIZER_CONFIG, indent=2))
        scale: float | int = int(self.scale) if self.scale.is_integer() else self.scale
        processor = {
            "action_dim": self.action_dim,
            "auto_map": _AUTO_MAP,
            "min_token": lo,
            "processor_class": _PROCESSOR_CLASS,
            "scale": scale,
            "time_horizon": self.action_horizon,
            "vocab_size": self.vocab_size,
        }
        (path / RELEASED_CONFIG_FILE).write_text(json.dumps(processor, indent=2))

    @classmethod
    def _from_saved(cls, config: dict[str, Any], path: Path) -> ReleasedFASTTokenizer:
        """Load a folder in the released layout; ``config`` holds our extras (empty for a released one)."""
        proc = _read_processor_config(path / RELEASED_CONFIG_FILE)
        tok = cls(
            proc["scale"],
            proc["vocab_size"],
            int(config.get("min_frequency", 2)),
            proc.get("time_horizon"),
            proc.get("action_dim"),
        )
        bpe_file = path / TOKENIZER_FILE
        if not bpe_file.is_file():
            raise FileNotFoundError(f"{bpe_file} not found: a released FAST folder holds the BPE there")
        try:
            bpe = Tokenizer.from_file(str(bpe_file))
        except Exception as err:  # tokenizers raises a bare Exception for unreadable files
            raise ValueError(f"{bpe_file} is not a readable tokenizers file ({err})") from err
        lo = proc["min_token"]
        saved_max = config.get("max_token")
        try:
            tok._set_bpe(bpe, lo, None if saved_max is None else int(saved_max) - lo + 1)
        except ValueError as err:
            raise ValueError(f"{bpe_file}: {err}") from err
        if bpe.get_vocab_size() > tok.vocab_size:
            logger.warning(
                "%s: the BPE has %d entries, more than vocab_size=%d; using %d",
                bpe_file,
                bpe.get_vocab_size(),
                tok.vocab_size,
                bpe.get_vocab_size(),
            )
            tok.vocab_size = bpe.get_vocab_size()
        return tok


def _chars(codes: np.ndarray) -> str:
    """Non-negative integral codes [L] -> the string of those code points."""
    return codes.astype("<u4").tobytes().decode("utf-32-le")


def _chunk_list(chunks: Any) -> list[np.ndarray]:
    """An array [N, H, D] / [H, D] or a list of [H_i, D_i] (or [N_i, H_i, D_i]) arrays -> a list of
    validated [N_i, H_i, D_i] arrays."""
    if isinstance(chunks, list | tuple):
        if not chunks:
            raise ValueError("fit needs at least one action chunk, got an empty list")
        return [as_chunks(c, keep_float32=True) for c in chunks]
    return [as_chunks(chunks, keep_float32=True)]


def _read_processor_config(file: Path) -> dict[str, Any]:
    """Read and check ``processor_config.json``: the released processor class, ``scale`` > 0, integral
    ``min_token`` and ``vocab_size`` >= 1, optional integral ``time_horizon`` / ``action_dim``."""
    proc = json.loads(file.read_text())
    if not isinstance(proc, dict) or proc.get("processor_class") != _PROCESSOR_CLASS:
        got = proc.get("processor_class") if isinstance(proc, dict) else type(proc).__name__
        raise ValueError(
            f"{file} is not a FAST processor config (processor_class {got!r}, expected {_PROCESSOR_CLASS!r})"
        )
    missing = [k for k in ("scale", "min_token", "vocab_size") if k not in proc]
    if missing:
        raise ValueError(f"{file} lacks {missing}: the released FAST processor config names all three")
    for key in ("min_token", "vocab_size", "time_horizon", "action_dim"):
        value = proc.get(key)
        if value is not None and not (isinstance(value, int | float) and float(value).is_integer()):
            raise ValueError(f"{file}: {key} must be an integer or null, got {value!r}")
        proc[key] = None if value is None else int(value)
    if not isinstance(proc["scale"], int | float) or not proc["scale"] > 0:
        raise ValueError(f"{file}: scale must be a number > 0, got {proc['scale']!r}")
    return proc


def _check_released_alphabet(bpe: Tokenizer, min_token: int, n_sym: int | None) -> tuple[int, np.ndarray]:
    """Check that ``bpe`` spells the released alphabet; return its size ``max_token - min_token + 1`` and
    which of its symbols [n_sym] the BPE cannot spell.

    The released ``fit`` starts the BPE from the alphabet ``chr(0) .. chr(n_sym - 1)`` (one character per
    coefficient value from ``min_token`` up), so every one of them is a vocabulary entry.  ``n_sym`` is
    checked when given; when not (a released folder does not store ``max_token``) it is read off the
    vocabulary as the run of those characters from ``chr(0)``: exact unless 256 <= n_sym < 324, where the
    run may continue into the ByteLevel byte symbols (U+0100..U+0143).  The zero coefficient must be in
    the alphabet and survive encode -> decode.  Symbols the BPE cannot spell (values the fit never saw,
    whose byte symbol is missing: the released processor drops them) are logged as a warning; ValueError
    when they are the zero coefficient or most of the alphabet."""
    vocab = bpe.get_vocab()
    run = 0
    while chr(run) in vocab:
        run += 1
    hint = "this is not a BPE fitted by the released FAST processor on these coefficients (wrong tokenizer.json?)"
    if n_sym is None:
        n_sym = run
    elif run < n_sym:
        raise ValueError(
            f"the vocabulary lacks the alphabet symbol chr({run}) (coefficient {min_token + run}); {hint}"
        )
    if n_sym == 0:
        raise ValueError(
            f"the vocabulary lacks chr(0), the symbol of coefficient min_token={min_token}; {hint}"
        )
    zero = -min_token
    if not 0 <= zero < n_sym:
        raise ValueError(
            f"min_token={min_token} puts coefficient 0 outside the {n_sym}-symbol alphabet; {hint}"
        )
    probes = [chr(i) for i in range(n_sym)]
    back = bpe.decode_batch([e.ids for e in bpe.encode_batch(probes)], skip_special_tokens=False)
    dead_mask = np.array([p != b for p, b in zip(probes, back)], dtype=bool)
    dead = np.flatnonzero(dead_mask).tolist()
    if zero in dead or len(dead) * 2 > n_sym:
        raise ValueError(
            f"{len(dead)} of its {n_sym} alphabet symbols (coefficient 0 among them: "
            f"{zero in dead}) do not survive encode -> decode; {hint}"
        )
    if dead:
        logger.warning(
            "FAST: %d coefficient values cannot be spelled by this BPE (the released processor drops them): %s",
            len(dead),
            [min_token + i for i in dead[:10]],
        )
    return n_sym, dead_mask
