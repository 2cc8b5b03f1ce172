"""A byte-level text tokenizer built locally (no download): 256 byte symbols + the special tokens."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from .base import SPECIAL_TOKENS

__all__ = ["byte_level_tokenizer"]


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)
    fast.add_special_tokens(
        {"pad_token": "<|pad|>", "eos_token": "<|im_end|>", "additional_special_tokens": SPECIAL_TOKENS[1:]}
    )
    return fast
