"""The released Wall-OSS-0.5 input contract as pure functions: prompt text, state bins, images, m-RoPE ids.

What the release feeds its Qwen2.5-VL backbone (fixture ``wall_oss_05/A/README.md`` documents every byte):

* the Qwen chat prompt (:func:`flow_prompt`): system turn, ``Observation:`` then per camera
  `` <label>: <|vision_start|><|image_pad|>…<|vision_end|>``, ``Instruction: {task}``, the state as text, then the
  assistant turn; the flow postfix is ``action_horizon`` ``<|action|>`` tokens (our model appends those slots
  itself, so the tokenised *prefix* ends at ``<|im_start|>assistant\\n``);
* the normalised state as 512 bins (:func:`state_bins`) joined by spaces, replacing ``<|propri|>`` before
  tokenisation;
* images resized so the long side is 448 (PIL bicubic), then transformers' ``Qwen2VLImageProcessorPil``
  (smart_resize to multiples of 28 within [min_pixels, max_pixels], CLIP normalisation, patchify);
* Qwen's 3-D m-RoPE position ids from transformers' own ``Qwen2_5_VLModel.get_rope_index``; the action slots
  then continue as ordinary text positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ACTION_TOKEN",
    "CAMERA_LABELS",
    "IMAGE_PAD",
    "PROPRI_TOKEN",
    "add_released_tokens",
    "camera_label",
    "flow_prompt",
    "image_processor",
    "mrope_position_ids",
    "preprocess_images",
    "quantile_normalize",
    "quantile_unnormalize",
    "resize_long_side",
    "stand_in_tokenizer",
    "state_bins",
    "state_text",
]

PROPRI_TOKEN, ACTION_TOKEN, IMAGE_PAD = "<|propri|>", "<|action|>", "<|image_pad|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
CAMERA_LABELS = {
    "face_view": "front view",
    "left_wrist_view": "left wrist view",
    "right_wrist_view": "right wrist view",
}
LONG_SIDE = 448
NUM_BINS = 512
# (token, stand-in fixture id); the real Qwen2.5-VL ids are 151643.. and, for the two added tokens, 151665/151666
STAND_IN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", VISION_START, VISION_END, "<|vision_pad|>",
                     IMAGE_PAD, "<|video_pad|>", PROPRI_TOKEN, ACTION_TOKEN]  # fmt: skip


def camera_label(key: str, labels: Mapping[str, str] | None = None) -> str:
    """``observation.images.face_view`` -> ``front view`` (release names; others: underscores -> spaces)."""
    name = key.removeprefix("observation.images.")
    table = CAMERA_LABELS if labels is None else labels
    return table.get(name, name.replace("_", " "))


def quantile_normalize(x: Tensor, q01: Tensor, q99: Tensor) -> Tensor:
    """LeRobot QUANTILES + the release's clamp: ``clamp(2 (x - q01) / (q99 - q01) - 1, -1, 1)``, x [..., D]."""
    q01, q99 = q01.to(x), q99.to(x)
    denom = q99 - q01
    denom = torch.where(denom == 0, torch.full_like(denom, 1e-8), denom)
    return (2 * (x - q01) / denom - 1).clamp(-1, 1)


def quantile_unnormalize(y: Tensor, q01: Tensor, q99: Tensor) -> Tensor:
    """Inverse of :func:`quantile_normalize` without a clamp: ``(y + 1) (q99 - q01) / 2 + q01``, y [..., D]."""
    q01, q99 = q01.to(y), q99.to(y)
    return (y + 1) * (q99 - q01) / 2 + q01


def state_bins(state_normalized: np.ndarray | Tensor) -> np.ndarray:
    """Normalised state [..., S] in [-1, 1] -> int64 bins [..., S] in [0, 511] (release's text state)."""
    x = np.asarray(
        state_normalized.detach().cpu() if isinstance(state_normalized, Tensor) else state_normalized
    )
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("normalised state contains NaN/inf; cannot write it as text bins")
    if (x < -1).any() or (x > 1).any():
        raise ValueError(
            f"normalised state must be clamped to [-1, 1] before binning (range {x.min()}..{x.max()})"
        )
    edges = np.linspace(-1, 1, NUM_BINS + 1)[:-1]
    return (np.digitize(x, edges) - 1).astype(np.int64)


def state_text(bins: Sequence[int] | np.ndarray) -> str:
    """Bins [S] -> ``"232 377 15 ..."`` (single spaces, no trailing space)."""
    return " ".join(str(int(b)) for b in np.asarray(bins).reshape(-1))


def flow_prompt(
    task: str, camera_labels: Sequence[str], image_tokens: Sequence[int], state: str, action_horizon: int
) -> tuple[str, str]:
    """(prefix, postfix) of the released flow prompt.

    ``image_tokens[c]`` = merged tokens of camera c (``t * h * w / merge**2``): each ``<|image_pad|>`` is
    expanded to that many copies. ``state``: the bins text that replaces ``<|propri|>``. The postfix is
    ``action_horizon`` ``<|action|>`` tokens; prefix + postfix is the string the release tokenises.
    """
    if len(camera_labels) != len(image_tokens):
        raise ValueError(f"{len(camera_labels)} camera labels but {len(image_tokens)} image token counts")
    if "\n" in task:
        raise ValueError(
            f"task must be one line (the release writes it on the 'Instruction:' line): {task!r}"
        )
    obs = "".join(
        f" {lab}: {VISION_START}{IMAGE_PAD * int(n)}{VISION_END}"
        for lab, n in zip(camera_labels, image_tokens)
    )
    prefix = (
        f"{SYSTEM}<|im_start|>user\nObservation:{obs}\nInstruction: {task}\n"
        f"Predict the next action in robot action.\nProprioception: {state}\n<|im_end|>\n<|im_start|>assistant\n"
    )
    return prefix, ACTION_TOKEN * action_horizon


def add_released_tokens(tokenizer: Any) -> list[int]:
    """Add ``<|propri|>`` and ``<|action|>`` to a Qwen2.5-VL tokenizer (as the release does at load); ids."""
    vocab = tokenizer.get_vocab()
    new = [t for t in (PROPRI_TOKEN, ACTION_TOKEN) if t not in vocab]
    if new:
        tokenizer.add_tokens(new, special_tokens=True)
    ids = [int(tokenizer.convert_tokens_to_ids(t)) for t in (PROPRI_TOKEN, ACTION_TOKEN)]
    tokenizer.padding_side = "left"
    return ids


def stand_in_tokenizer() -> Any:
    """The fixture's stand-in vocabulary (the real Qwen tokenizer is not available offline).

    Byte level: special strings first (``<|endoftext|>`` = 256 ... ``<|action|>`` = 265), every other character
    as its UTF-8 bytes, byte b -> id b; no BOS/EOS; pad = ``<|endoftext|>``, left padding. It is
    :func:`wall_core.backbones.qwen_standin_tokenizer` with the fixture's ids.
    """
    from ..backbones.tokenizer import qwen_standin_tokenizer

    fast = qwen_standin_tokenizer({t: 256 + i for i, t in enumerate(STAND_IN_SPECIALS)})
    fast.padding_side = "left"
    return fast


def resize_long_side(image: np.ndarray | Tensor, long_side: int = LONG_SIDE) -> Any:
    """A camera frame -> PIL image whose longer side is ``long_side`` (bicubic, as the release).

    ``image``: uint8 [3, h, w] / [h, w, 3], or float [3, h, w] in [0, 1] (LeRobot; scaled by 255 and rounded).
    """
    from PIL import Image

    x = image.detach().cpu() if isinstance(image, Tensor) else torch.as_tensor(np.asarray(image))
    if x.ndim != 3 or 3 not in (x.shape[0], x.shape[-1]):
        raise ValueError(f"camera image must be [3, h, w] or [h, w, 3], got shape {tuple(x.shape)}")
    if x.shape[0] == 3 and x.shape[-1] != 3:
        x = x.permute(1, 2, 0)
    if x.dtype != torch.uint8:
        if not torch.is_floating_point(x):
            raise ValueError(f"camera image must be uint8 or float in [0, 1], got {x.dtype}")
        x = (x.float() * 255).round().clamp(0, 255).to(torch.uint8)
    pil = Image.fromarray(x.contiguous().numpy())
    w, h = pil.size
    scale = long_side / max(w, h)
    return pil.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)


def image_processor(min_pixels: int = 56 * 56, max_pixels: int = 12845056) -> Any:
    """transformers' PIL-backend Qwen2-VL image processor with the release's pixel limits."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels)


def preprocess_images(images: Sequence[np.ndarray | Tensor], processor: Any) -> tuple[Tensor, Tensor]:
    """Frames (batch-row major, then camera order) -> (pixel_values [N_patches, 1176], image_grid_thw [N, 3])."""
    if not images:
        raise ValueError("no camera images: the released prompt needs at least one camera")
    out = processor(images=[resize_long_side(im) for im in images], return_tensors="pt")
    return out["pixel_values"].float(), out["image_grid_thw"].long()


class _RopeIndex:
    """Holds a Qwen2.5-VL config so transformers' own ``get_rope_index`` can run without building the model."""

    def __init__(self, config: Any) -> None:
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

        self.config = config
        self._fn: Any = Qwen2_5_VLModel.get_rope_index
        self.get_vision_position_ids = Qwen2_5_VLModel.get_vision_position_ids.__get__(self)

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
        return self._fn(self, *args, **kwargs)


def mrope_position_ids(
    input_ids: Tensor, attention_mask: Tensor, image_grid_thw: Tensor | None, image_token_id: int, config: Any
) -> Tensor:
    """3-D m-RoPE ids [3, B, L] (long) of a left-padded prefix, via transformers' ``get_rope_index``.

    ``config``: a ``Qwen2_5_VLConfig`` (only ``vision_config.spatial_merge_size`` / ``tokens_per_second`` are
    read). Image tokens get (t, h, w) grid positions, text counts up by 1 on all axes; pad positions are set to
    1 (as the release; they are masked anyway). Action slots appended later continue at ``max + 1 + i``.
    """
    if input_ids.shape != attention_mask.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ"
        )
    mm_types = (input_ids == image_token_id).int()
    if int(mm_types.sum()) and image_grid_thw is None:
        raise ValueError("the prompt has image tokens but no image_grid_thw was given")
    pos, _ = _RopeIndex(config)(
        input_ids, mm_types, image_grid_thw=image_grid_thw, attention_mask=attention_mask
    )
    return pos.masked_fill(~attention_mask.bool()[None], 1)
