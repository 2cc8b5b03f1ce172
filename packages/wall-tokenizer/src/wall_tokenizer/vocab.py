"""Place action-token ids in a host VLM vocabulary and map them back.

Qwen2.5-VL has no free block of rarely used ids, so (as wall-x does) action tokens are *appended* after the
host vocabulary as new tokens ``<|action_token_i|>``; the host model resizes its embeddings to
``host_vocab_size + num_action_tokens``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["VocabMapper"]


class VocabMapper:
    """Bijection between action ids [0, num_action_tokens) and host ids [host_vocab_size, host + n).

    ``host_vocab_size``: the host text tokenizer's length (151,665 for Qwen2.5-VL); ``num_action_tokens``:
    the action tokenizer's ``vocab_size``; ``prefix`` names the added token strings."""

    def __init__(self, host_vocab_size: int, num_action_tokens: int, prefix: str = "action_token") -> None:
        if host_vocab_size < 0 or num_action_tokens < 1:
            raise ValueError("need host_vocab_size >= 0 and num_action_tokens >= 1")
        self.host_vocab_size = int(host_vocab_size)
        self.num_action_tokens = int(num_action_tokens)
        self.prefix = prefix

    @property
    def total_vocab_size(self) -> int:
        """Rows the host embedding needs: host_vocab_size + num_action_tokens."""
        return self.host_vocab_size + self.num_action_tokens

    def token_strings(self) -> list[str]:
        """Strings to add to the host text tokenizer, in id order."""
        return [f"<|{self.prefix}_{i}|>" for i in range(self.num_action_tokens)]

    def to_host(self, ids: Any) -> np.ndarray:
        """Action ids (any shape) -> host ids (int64, same shape); ValueError for ids out of range."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.num_action_tokens):
            raise ValueError(
                f"action ids must lie in [0, {self.num_action_tokens}), got range [{arr.min()}, {arr.max()}]"
            )
        return arr + self.host_vocab_size

    def is_action(self, host_ids: Any) -> np.ndarray:
        """Host ids (any shape) -> bool mask (same shape), True where the id is an action token."""
        arr = np.asarray(host_ids, dtype=np.int64)
        return (arr >= self.host_vocab_size) & (arr < self.total_vocab_size)

    def from_host(self, host_ids: Any, strict: bool = True) -> np.ndarray:
        """Host ids (any shape) -> action ids (int64, same shape); with ``strict=False`` non-action ids
        become -1 instead of raising ValueError."""
        arr = np.asarray(host_ids, dtype=np.int64)
        mask = self.is_action(arr)
        if strict and not mask.all():
            bad = arr[~mask].reshape(-1)[:5].tolist()
            raise ValueError(
                f"ids {bad} are not action tokens (expected [{self.host_vocab_size}, {self.total_vocab_size})); "
                "pass strict=False to get -1 for them"
            )
        return np.where(mask, arr - self.host_vocab_size, -1)
