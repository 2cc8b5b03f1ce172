"""The released Wall-OSS-0.5 input contract as pipeline steps, and the pipeline of a ``wall-oss-0.5`` model.

:class:`ReleasedImages` turns the camera frames into Qwen patch rows (long side 448, then Qwen's image
processor); :class:`ReleasedPrompt` writes the released chat prompt with the state as 512 text bins, tokenises
it and computes the m-RoPE position ids. :func:`build_released_pipeline` puts them between the shared steps:
KeyMapping -> ObservationContract -> ReleasedImages -> Normalize (quantile, clamp) -> PadToEmbodiment ->
ReleasedPrompt -> Collate; outputs CropToEmbodiment -> Unnormalize (no clamp).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch

import wall_data

from ..model.masks import SEG
from .base import Sample, SampleStep, register_step
from .collate import Collate
from .keys import KeyMapping, ObservationContract, is_vqa
from .layout import CropToEmbodiment, PadToEmbodiment, embodiment_from_stats
from .normalize import Normalize, Unnormalize
from .pipeline import Pipeline
from .tokenize import PromptTokenizer
from .wall_oss import (
    IMAGE_PAD,
    camera_label,
    flow_prompt,
    image_processor,
    mrope_position_ids,
    preprocess_images,
    state_bins,
    state_text,
)

if TYPE_CHECKING:
    from ..model import WallVLA

__all__ = ["ReleasedImages", "ReleasedPrompt", "build_released_pipeline"]


@register_step
class ReleasedImages(SampleStep):
    """Camera frames -> ``pixel_values`` float32 [N_patches, 1176] and ``image_grid_thw`` long [C_present, 3].

    Each present camera (in ``cameras`` order) is resized so its long side is 448 (bicubic) and passed through
    transformers' ``Qwen2VLImageProcessorPil`` (smart_resize within [min_pixels, max_pixels]); cameras of
    different sizes give different grids. ``images`` becomes a [C, 3, 1, 1] placeholder (the model reads the
    patch rows), ``image_valid`` [C] marks the present cameras and ``camera_keys`` lists them.

    Args:
        cameras: the model's camera keys in prompt order.
        min_pixels, max_pixels: Qwen's pixel limits (the release: 3136 and 12845056).
    """

    def __init__(self, cameras: Sequence[str], min_pixels: int = 3136, max_pixels: int = 12845056) -> None:
        self.cameras, self.min_pixels, self.max_pixels = list(cameras), int(min_pixels), int(max_pixels)
        self._proc = image_processor(self.min_pixels, self.max_pixels)

    def config(self) -> dict[str, Any]:
        return dict(cameras=self.cameras, min_pixels=self.min_pixels, max_pixels=self.max_pixels)

    def __call__(self, sample: Sample) -> Sample:
        """Camera keys -> ``pixel_values``, ``image_grid_thw``, ``images``, ``image_valid``, ``camera_keys``."""
        present = [c for c in self.cameras if c in sample]
        if not present:
            raise KeyError(
                f"the sample has none of the cameras {self.cameras}; the released prompt needs one"
            )
        out = {k: v for k, v in sample.items() if k not in self.cameras}
        out["pixel_values"], out["image_grid_thw"] = preprocess_images(
            [sample[c] for c in present], self._proc
        )
        out["images"] = torch.zeros((len(self.cameras), 3, 1, 1), dtype=torch.uint8)
        out["image_valid"] = torch.tensor([c in sample for c in self.cameras])
        out["camera_keys"] = present
        return out


@register_step
class ReleasedPrompt(PromptTokenizer):
    """A robot sample after padding -> the released flow prompt's ``input_ids`` / ``segment`` / ``labels``
    long [L] and ``position_ids`` long [3, L].

    The prompt (:func:`~wall_core.processing.wall_oss.flow_prompt`) carries the camera labels, one
    ``<|image_pad|>`` per merged vision token, the task and the padded normalised ``state`` [S] as 512 bins;
    it ends at ``<|im_start|>assistant\\n``: the model appends the ``action_horizon`` flow slots, whose
    positions continue from the prompt's largest m-RoPE id. No token is supervised (the flow prompt has no
    text target).

    Args:
        action_horizon: number of ``<|action|>`` slots (32 in the release); only used for the prompt string.
        spatial_merge_size, tokens_per_second: the vision config's values (for the m-RoPE ids).
        camera_labels: camera name -> label (default: the release's, e.g. ``face_view`` -> ``front view``).
        text_tokenizer: the Qwen tokenizer with ``<|propri|>`` / ``<|action|>`` added (saved as files).
    """

    def __init__(
        self,
        action_horizon: int = 32,
        spatial_merge_size: int = 2,
        tokens_per_second: int = 2,
        camera_labels: Mapping[str, str] | None = None,
        text_tokenizer: Any = None,
    ) -> None:
        super().__init__(text_tokenizer)
        self.action_horizon, self.merge = int(action_horizon), int(spatial_merge_size)
        self.tokens_per_second = int(tokens_per_second)
        self.camera_labels = dict(camera_labels) if camera_labels is not None else None
        vision = SimpleNamespace(spatial_merge_size=self.merge, tokens_per_second=self.tokens_per_second)
        self._rope_config = SimpleNamespace(vision_config=vision)

    def config(self) -> dict[str, Any]:
        return dict(action_horizon=self.action_horizon, spatial_merge_size=self.merge,
                    tokens_per_second=self.tokens_per_second, camera_labels=self.camera_labels)  # fmt: skip

    def prompt(self, sample: Sample) -> tuple[str, str]:
        """(prefix, postfix) strings of a sample that went through :class:`ReleasedImages` and padding."""
        if is_vqa(sample):
            raise ValueError(
                "the released flow prompt is for robot samples; VQA samples have no flow prompt here"
            )
        for key in ("task", "state", "image_grid_thw", "camera_keys"):
            if key not in sample:
                raise KeyError(f"ReleasedPrompt needs {key!r} (run ReleasedImages and PadToEmbodiment first)")
        grid = sample["image_grid_thw"]
        tokens = (grid.prod(-1) // (self.merge**2)).tolist()
        labels = [camera_label(k, self.camera_labels) for k in sample["camera_keys"]]
        bins = state_bins(sample["state"])
        return flow_prompt(str(sample["task"]), labels, tokens, state_text(bins), self.action_horizon)

    def __call__(self, sample: Sample) -> Sample:
        """Padded sample -> + ``input_ids``, ``segment``, ``labels`` long [L], ``position_ids`` long [3, L]."""
        prefix, _ = self.prompt(sample)
        ids = torch.tensor(self.text_ids(prefix), dtype=torch.long)
        image_id = self.token_id(IMAGE_PAD)
        n_img = int((ids == image_id).sum())
        want = int(sample["image_grid_thw"].prod(-1).sum()) // self.merge**2
        if n_img != want:
            raise ValueError(f"the tokenised prompt has {n_img} {IMAGE_PAD} tokens, the images give {want}")
        pos = mrope_position_ids(ids[None], torch.ones_like(ids)[None], sample["image_grid_thw"], image_id,
                                 self._rope_config)  # fmt: skip
        out = {k: v for k, v in sample.items() if k != "camera_keys"}
        out["input_ids"], out["position_ids"] = ids, pos[:, 0]
        out["segment"] = torch.where(ids == image_id, SEG.IMAGE, SEG.TEXT)
        out["labels"] = torch.full_like(ids, -100)
        return out


def build_released_pipeline(
    model: WallVLA,
    *,
    stats: Mapping[str, Mapping[str, wall_data.FeatureStats]],
    embodiments: Mapping[str, wall_data.EmbodimentSpec] | None = None,
    default_dataset: str | None = None,
    key_maps: Sequence[str] = ("lerobot", "openpi"),
    min_pixels: int = 3136,
    max_pixels: int = 12845056,
) -> Pipeline:
    """The released pre/post-processing for a ``wall-oss-0.5`` model (see the module docstring).

    ``stats``: ``{dataset: {"observation.state" / "action": FeatureStats}}`` (q01/q99 are used: from a converted
    checkpoint, :func:`wall_core.convert.feature_stats`); a dataset without an ``embodiments`` entry is packed
    from index 0, sized from its stats. The output side crops the 26-D layout to each robot's DOFs and
    unnormalises without a clamp.
    """
    cfg, bb = model.config, model.backbone
    specs = {ds: (embodiments or {}).get(ds) or embodiment_from_stats(ds, f) for ds, f in stats.items()}
    if default_dataset is None and len(specs) == 1:
        default_dataset = next(iter(specs))
    robots = {ds: {"state_dim": s.state_dim, "action_dim": s.action_dim} for ds, s in specs.items()}
    vision = bb.model.config.vision_config
    prompt = ReleasedPrompt(cfg.action_horizon, int(vision.spatial_merge_size), int(vision.tokens_per_second),
                            text_tokenizer=bb.tokenizer)  # fmt: skip
    inputs = [
        KeyMapping.from_presets(key_maps, cfg.cameras, default_dataset),
        ObservationContract(cfg.cameras, cfg.action_horizon, robots),
        ReleasedImages(cfg.cameras, min_pixels, max_pixels),
        Normalize(stats, mode="quantile", clamp=True),
        PadToEmbodiment(cfg.state_dim, cfg.action_dim, cfg.action_horizon, specs),
        prompt,
        Collate(prompt.token_id("<|endoftext|>")),
    ]
    outputs = [CropToEmbodiment(cfg.state_dim, cfg.action_dim, specs), Unnormalize(stats, mode="quantile")]
    return Pipeline(inputs, outputs)
