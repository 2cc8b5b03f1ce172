"""Text / state / action tokenisation: one step class per prompt format.

:class:`PromptTokenizer` is the base every prompt format derives from; :class:`DefaultPrompt` is the layout of
the embedded presets. To add a format (e.g. the released Wall-OSS-0.5 chat template), subclass
:class:`PromptTokenizer` in its own module, implement ``__call__`` (a sample after padding -> the same sample
plus ``input_ids`` / ``segment`` / ``labels`` long [L], and optionally ``pixel_values`` / ``image_grid_thw`` /
``position_ids``), keep :meth:`config` JSON-able, decorate it with ``@register_step`` and put it in place of
``DefaultPrompt`` in the input steps (``build_pipeline(..., prompt=YourStep(...))``). The collation step pads
whatever it gets; the pipeline finds the tokenizer step by type for :meth:`decode_actions`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import wall_tokenizer

from ..model.masks import SEG
from .base import PipelineKeyError, Sample, SampleStep, register_step
from .keys import ACTION, is_vqa
from .normalize_ar import AR_KEY

__all__ = ["DefaultPrompt", "PromptTokenizer"]
logger = logging.getLogger(__name__)
SPECIALS = ("<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|propri|>", "<|pad|>")


class PromptTokenizer(SampleStep):
    """Base of the tokenisation steps: holds the text tokenizer (saved with ``save_pretrained`` into
    ``text_tokenizer/``) and the optional discrete action tokenizer (``action_tokenizer/``), and counts what
    text limits did (``counts``: prompts truncated, answers skipped)."""

    def __init__(self, text_tokenizer: Any = None, action_tokenizer: wall_tokenizer.ActionTokenizer | None = None,
                 host_vocab_size: int = 0) -> None:  # fmt: skip
        self.text_tokenizer, self.action_tokenizer = text_tokenizer, action_tokenizer
        self.host_vocab_size = int(host_vocab_size)
        self.counts = {"prompts_truncated": 0, "answers_skipped": 0}
        self._ids: dict[str, int] = {}

    @property
    def vocab(self) -> wall_tokenizer.VocabMapper | None:
        """Action ids [0, n) <-> host ids [host_vocab_size, host_vocab_size + n), or None without a tokenizer."""
        if self.action_tokenizer is None:
            return None
        return wall_tokenizer.VocabMapper(self.host_vocab_size, self.action_tokenizer.vocab_size)

    def token_id(self, token: str) -> int:
        """Id of a special token in the text tokenizer."""
        if token not in self._ids:
            if self.text_tokenizer is None:
                raise RuntimeError(f"{type(self).__name__} has no text tokenizer (load it or pass one)")
            tid = self.text_tokenizer.convert_tokens_to_ids(token)
            if tid is None or tid == self.text_tokenizer.unk_token_id:
                raise PipelineKeyError(f"token {token!r} is not in the text tokenizer")
            self._ids[token] = int(tid)
        return self._ids[token]

    def text_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        if self.text_tokenizer is None:
            raise RuntimeError(f"{type(self).__name__} has no text tokenizer (load it or pass one)")
        return list(self.text_tokenizer(text, add_special_tokens=False)["input_ids"])

    def save_files(self, folder: Path) -> None:
        if self.text_tokenizer is None:
            raise RuntimeError("cannot save a prompt step without its text tokenizer")
        self.text_tokenizer.save_pretrained(folder / "text_tokenizer")
        if self.action_tokenizer is not None:
            self.action_tokenizer.save(folder / "action_tokenizer")

    def load_files(self, folder: Path) -> None:
        from transformers import PreTrainedTokenizerFast

        if not (folder / "text_tokenizer").is_dir():
            raise FileNotFoundError(
                f"{folder / 'text_tokenizer'} is missing (the prompt step's text tokenizer)"
            )
        self.text_tokenizer = PreTrainedTokenizerFast.from_pretrained(folder / "text_tokenizer")
        at = folder / "action_tokenizer"
        self.action_tokenizer = wall_tokenizer.load(at) if at.exists() else None
        self._ids = {}

    def _tokenizer(self, dataset: str | None) -> wall_tokenizer.ActionTokenizer:
        """The action tokenizer for ``dataset`` (its own one inside a per-embodiment tokenizer)."""
        if self.action_tokenizer is None:
            raise RuntimeError("this pipeline has no action tokenizer")
        if isinstance(self.action_tokenizer, wall_tokenizer.PerEmbodimentTokenizer):
            return self.action_tokenizer.get(dataset)
        return self.action_tokenizer

    def encode_actions(self, action: Tensor, dataset: str | None = None) -> list[int]:
        """AR-normalised robot action [H, A_robot] (:data:`AR_KEY`) of ``dataset`` -> host token ids of its
        discrete code."""
        assert self.vocab is not None
        # wall_tokenizer is numpy-only, and FAST's DCT/BPE is fitted on float64 chunks: the one float64 hop
        codes = self._tokenizer(dataset).encode(action.detach().cpu().numpy().astype(np.float64)[None])[0]
        return self.vocab.to_host(codes).tolist()

    def decode_actions(
        self, codes: list[list[int]], datasets: list[str] | None = None
    ) -> tuple[list[Tensor], Tensor]:
        """Discrete action ids (not host ids) per row -> (AR-normalised robot actions, one float32
        [H, A_robot] per row, and valid bool [B]); ``datasets`` names each row's robot (needed by a
        per-embodiment tokenizer with several robots)."""
        names: list[str | None] = list(datasets) if datasets is not None else [None] * len(codes)
        rows: list[Tensor] = [torch.empty(0)] * len(codes)
        valid = torch.zeros(len(codes), dtype=torch.bool)
        for name in dict.fromkeys(names):
            idx = [i for i, n in enumerate(names) if n == name]
            res = self._tokenizer(name).decode([np.asarray(codes[i], dtype=np.int64) for i in idx])
            acts = torch.from_numpy(np.asarray(res.actions, dtype=np.float32))
            for j, i in enumerate(idx):
                rows[i], valid[i] = acts[j], bool(res.valid[j])
        return rows, valid


@register_step
class DefaultPrompt(PromptTokenizer):
    """The embedded presets' layout, per robot sample::

        [<|image_pad|> x image_tokens per present camera] <|im_start|> task <|propri|> [action ids <|im_end|>]

    (the action ids and ``<|im_end|>`` supervised, only when the sample has ``action`` and there is an action
    tokenizer; the ids encode :data:`AR_KEY`, the chunk as the AR normaliser scaled it); per VQA sample:
    images, ``<|im_start|>`` question, then answer + ``<|im_end|>`` supervised.

    Args:
        image_tokens: tokens one camera frame becomes in the backbone.
        host_vocab_size: size of the text vocabulary; action ids are placed after it (``VocabMapper``).
        max_prompt_tokens: instructions / questions longer than this many TOKENS are cut (counted).
        max_answer_tokens: supervised answers longer than this are never cut: ``on_long_answer="skip"`` drops
            the sample (counted in ``counts["answers_skipped"]``), ``"error"`` raises.
        text_tokenizer, action_tokenizer: objects (not in the config; saved as files).
    """

    def __init__(
        self,
        image_tokens: int,
        host_vocab_size: int,
        max_prompt_tokens: int = 96,
        max_answer_tokens: int = 256,
        on_long_answer: str = "skip",
        text_tokenizer: Any = None,
        action_tokenizer: wall_tokenizer.ActionTokenizer | None = None,
    ) -> None:
        super().__init__(text_tokenizer, action_tokenizer, host_vocab_size)
        if on_long_answer not in ("skip", "error"):
            raise ValueError(f"on_long_answer must be 'skip' or 'error', got {on_long_answer!r}")
        self.image_tokens, self.on_long_answer = int(image_tokens), on_long_answer
        self.max_prompt_tokens, self.max_answer_tokens = int(max_prompt_tokens), int(max_answer_tokens)

    def config(self) -> dict[str, Any]:
        return dict(image_tokens=self.image_tokens, host_vocab_size=self.host_vocab_size,
                    max_prompt_tokens=self.max_prompt_tokens, max_answer_tokens=self.max_answer_tokens,
                    on_long_answer=self.on_long_answer)  # fmt: skip

    def summary(self) -> str:
        at = self.action_tokenizer
        return (f"{super().summary()}, action_tokenizer={getattr(at, 'name', None)!r}"
                f"{f'[{at.vocab_size}]' if at is not None else ''}")  # fmt: skip

    def _prompt(self, text: str) -> list[int]:
        ids = self.text_ids(text)
        if len(ids) > self.max_prompt_tokens:
            if self.counts["prompts_truncated"] == 0:
                logger.warning("a prompt of %d tokens was cut to max_prompt_tokens=%d (counted from now on)",
                               len(ids), self.max_prompt_tokens)  # fmt: skip
            self.counts["prompts_truncated"] += 1
            ids = ids[: self.max_prompt_tokens]
        return ids

    def __call__(self, sample: Sample) -> Sample | None:
        """Padded sample -> + ``input_ids``, ``segment``, ``labels`` long [L]; ``None`` = skipped (long answer)."""
        ids: list[int] = []
        seg: list[int] = []
        labels: list[int] = []

        def add(tokens: list[int], kind: int, supervised: bool = False) -> None:
            ids.extend(tokens)
            seg.extend([kind] * len(tokens))
            labels.extend(tokens if supervised else [-100] * len(tokens))

        n_img = int(sample["image_valid"].sum())
        add([self.token_id("<|image_pad|>")] * (self.image_tokens * n_img), SEG.IMAGE)
        vqa = is_vqa(sample)
        add(
            [self.token_id("<|im_start|>"), *self._prompt(sample["question"] if vqa else sample["task"])],
            SEG.TEXT,
        )
        if vqa:
            if "answer" in sample:
                answer = self.text_ids(str(sample["answer"]))
                if len(answer) > self.max_answer_tokens:
                    if self.on_long_answer == "error":
                        raise ValueError(f"a VQA answer has {len(answer)} tokens > max_answer_tokens="
                                         f"{self.max_answer_tokens}; raise the limit or use on_long_answer='skip'")  # fmt: skip
                    self.counts["answers_skipped"] += 1
                    return None
                add([*answer, self.token_id("<|im_end|>")], SEG.ANSWER, supervised=True)
        else:
            if bool(sample["state_mask"].any()):
                add([self.token_id("<|propri|>")], SEG.STATE)
            if ACTION in sample and self.action_tokenizer is not None:
                if AR_KEY not in sample:
                    raise PipelineKeyError(
                        f"a robot sample with 'action' lacks {AR_KEY!r} (the AR-normalised chunk the discrete "
                        "tokenizer encodes): put a NormalizeAR step before Normalize (build_pipeline does)"
                    )
                add(
                    [
                        *self.encode_actions(sample[AR_KEY], sample.get("dataset")),
                        self.token_id("<|im_end|>"),
                    ],
                    SEG.ACTION,
                    supervised=True,
                )
        out = dict(sample)
        for k, v in (("input_ids", ids), ("segment", seg), ("labels", labels)):
            out[k] = torch.tensor(v, dtype=torch.long)
        return out
