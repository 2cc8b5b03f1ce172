"""Token decoding through the backbone expert's LM head: discrete action tokens and free text (VQA answers,
subtask prompts). Greedy or sampled (temperature, top-p), KV-cached through :meth:`WallVLA.extend_prefix`
(one new row per step, no prefix re-run), or uncached (the whole prefix re-run per token, for checking).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .batch import WallBatch
from .masks import SEG

if TYPE_CHECKING:
    from .vla import PrefixCache

__all__ = ["DecodingMixin", "append_tokens", "pick_next"]


def append_tokens(batch: WallBatch, tokens: Tensor, segment: int) -> WallBatch:
    """``batch`` with one more prefix token per row (tokens [B]) at position 1 + the row's largest position."""
    b = tokens.shape[0]
    col = tokens[:, None].to(batch.input_ids)
    pos = batch.position_ids
    if pos is not None:
        nxt = pos.amax(dim=(0, 2)) + 1
        pos = torch.cat([pos, nxt[None, :, None].expand(3, b, 1)], dim=-1)
    ones = torch.ones(b, 1, dtype=torch.bool, device=tokens.device)
    return replace(
        batch,
        input_ids=torch.cat([batch.input_ids, col], 1),
        valid=torch.cat([batch.valid, ones], 1),
        segment=torch.cat([batch.segment, torch.full_like(col, segment)], 1),
        labels=torch.cat([batch.labels, torch.full_like(col, -100)], 1),
        position_ids=pos,
    )


def pick_next(
    logits: Tensor, temperature: float = 0.0, top_p: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Next ids [B] from logits [B, V]: argmax when ``temperature`` is 0, else a draw from
    softmax(logits / temperature) restricted to the smallest set of ids whose mass reaches ``top_p``."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_p, order = probs.sort(dim=-1, descending=True)
    drop = sorted_p.cumsum(-1) - sorted_p >= top_p  # mass before this id already reaches top_p
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    dev = generator.device if generator is not None else logits.device
    choice = torch.multinomial(sorted_p.to(dev), 1, generator=generator).to(logits.device)
    return order.gather(-1, choice)[:, 0]


class DecodingMixin:
    """Decoding methods of :class:`~wall_core.model.WallVLA` (needs prefix_forward / extend_prefix)."""

    config: Any
    backbone: Any
    host_vocab_size: int
    ids: dict[str, int]

    def prefix_forward(self, batch: WallBatch) -> PrefixCache:  # pragma: no cover - provided by WallVLA
        """See :meth:`WallVLA.prefix_forward`."""
        raise NotImplementedError

    def extend_prefix(self, cache: PrefixCache, token_ids: Tensor, segment: int = SEG.ACTION) -> PrefixCache:
        """See :meth:`WallVLA.extend_prefix`."""
        raise NotImplementedError  # pragma: no cover - provided by WallVLA

    @torch.no_grad()
    def generate_tokens(
        self,
        batch: WallBatch,
        vocab: str = "text",
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        eos_token_id: int | None = None,
        use_cache: bool = True,
    ) -> list[list[int]]:
        """The one decoding loop: token ids per row (eos excluded) continuing each prefix of ``batch``.

        ``vocab="text"``: only the host vocabulary may come (never the discrete action rows), ids are host ids,
        the new tokens are ``SEG.ANSWER`` (a VQA question, a subtask prompt ending in
        ``<|im_start|>assistant\\n``). ``vocab="action"``: only the discrete action rows, ids come back 0-based
        (host id - host vocabulary size), the new tokens are ``SEG.ACTION``. Greedy when ``temperature`` is 0,
        else sampled with ``top_p`` (:func:`pick_next`); stops at ``eos_token_id`` (default ``<|im_end|>``,
        always allowed) or after ``max_new_tokens``. ``use_cache``: one new KV row per step through
        :meth:`extend_prefix`; else the whole prefix is re-run per token (for checking the cache).
        """
        n_rows, lo = self.backbone.lm_head.weight.shape[0], self.host_vocab_size
        if vocab not in ("text", "action"):
            raise ValueError(f"vocab must be 'text' or 'action', got {vocab!r}")
        if vocab == "action" and not self.config.num_action_tokens:
            raise RuntimeError("this model has no discrete action vocabulary (num_action_tokens=0)")
        span = (0, lo) if vocab == "text" else (lo, lo + self.config.num_action_tokens)
        segment, shift = (SEG.ANSWER, 0) if vocab == "text" else (SEG.ACTION, lo)
        eos = self.ids["<|im_end|>"] if eos_token_id is None else eos_token_id
        dev = batch.input_ids.device
        bias = torch.full((n_rows,), float("-inf"), device=dev)
        bias[span[0] : span[1]], bias[eos] = 0.0, 0.0
        b = batch.batch_size
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        out: list[list[int]] = [[] for _ in range(b)]
        cache = self.prefix_forward(batch)
        hidden = cache.hidden[:, -1]
        for _ in range(max_new_tokens):
            nxt = pick_next(self.backbone.lm_head(hidden).float() + bias, temperature, top_p, generator)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            for i in range(b):
                if not done[i] and nxt[i] != eos:
                    out[i].append(int(nxt[i]) - shift)
            done |= nxt == eos
            if done.all():
                break
            if use_cache:  # KV cache: one new row per step
                cache = self.extend_prefix(cache, nxt, segment)
                hidden = cache.hidden[:, -1]
            else:
                batch = append_tokens(batch, nxt, segment)
                hidden = self.prefix_forward(batch).hidden[:, -1]
        return out

    def generate_text(self, batch: WallBatch, **kw: Any) -> list[list[int]]:
        """Text ids per row (host vocabulary, eos excluded): :meth:`generate_tokens` with ``vocab="text"``
        (``kw``: its other options: ``max_new_tokens``, ``temperature``, ``top_p``, ``generator``,
        ``eos_token_id``, ``use_cache``)."""
        return self.generate_tokens(batch, "text", **kw)

    def generate_action_tokens(self, batch: WallBatch, **kw: Any) -> list[list[int]]:
        """Discrete action codes per row (0-based action ids), decoded until ``<|im_end|>``:
        :meth:`generate_tokens` with ``vocab="action"`` (``kw`` as :meth:`generate_text`)."""
        return self.generate_tokens(batch, "action", **kw)
