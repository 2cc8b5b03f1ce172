"""Text tokenizers built locally (no download).

* :func:`byte_level_tokenizer`: 256 byte symbols + our special tokens (the ``small`` / ``qwen2.5-vl-tiny``
  presets).
* :func:`qwen_standin_tokenizer`: a byte-level stand-in for the Qwen2.5-VL tokenizer: byte b -> id b, Qwen's
  special tokens at the ids the model config names (the real Qwen ids, or a small checkpoint's), so prompts
  in the released template tokenise without the real BPE files. Digits and ASCII are single bytes there as
  well; only the number of text tokens differs from the real tokenizer.
"""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from .base import SPECIAL_TOKENS

__all__ = ["QWEN_SPECIAL_IDS", "byte_level_tokenizer", "qwen_standin_tokenizer"]

# Qwen2.5-VL's ids; <|propri|> / <|action|> are appended after the 151665 entries of its tokenizer.
QWEN_SPECIAL_IDS = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
    "<|vision_end|>": 151653, "<|vision_pad|>": 151654, "<|image_pad|>": 151655, "<|video_pad|>": 151656,
    "<|propri|>": 151665, "<|action|>": 151666,
}  # fmt: skip


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer: the 256 ByteLevel symbols (sorted) then SPECIAL_TOKENS; pad ``<|pad|>``."""
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


def qwen_standin_tokenizer(special_ids: dict[str, int] | None = None) -> PreTrainedTokenizerFast:
    """Byte b -> id b, special tokens at ``special_ids`` (default :data:`QWEN_SPECIAL_IDS`); pad
    ``<|endoftext|>``, eos ``<|im_end|>``; special strings are matched before bytes."""
    ids = dict(QWEN_SPECIAL_IDS if special_ids is None else special_ids)
    clash = sorted(t for t, i in ids.items() if i < 256)
    if clash:
        raise ValueError(f"special tokens {clash} have ids < 256, which are the byte ids")
    for need in ("<|endoftext|>", "<|im_end|>", "<|image_pad|>"):
        if need not in ids:
            raise KeyError(f"special_ids must name {need!r}; got {sorted(ids)}")
    vocab = {ch: b for b, ch in bytes_to_unicode().items()}  # GPT-2 ByteLevel alphabet
    vocab.update(ids)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ids])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, clean_up_tokenization_spaces=False)
    fast.add_special_tokens({"pad_token": "<|endoftext|>", "eos_token": "<|im_end|>"})
    return fast
