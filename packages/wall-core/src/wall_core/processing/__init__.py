"""Pre- and post-processing of the Wall VLA as a pipeline of small named steps.

Input side (``pipeline(samples) -> WallBatch``): :class:`KeyMapping` -> :class:`ObservationContract` ->
:class:`ImageConversion` -> [:class:`NormalizeAR`, with a discrete tokenizer] -> :class:`Normalize` ->
:class:`PadToEmbodiment` -> a :class:`PromptTokenizer` (:class:`DefaultPrompt`) -> :class:`Collate`. Output side (``pipeline.postprocess(actions, dataset)``):
:class:`CropToEmbodiment` -> :class:`Unnormalize`. Build it with :func:`build_pipeline`; save and load it with
``Pipeline.save_pretrained`` / ``Pipeline.from_pretrained``. New steps subclass :class:`SampleStep`,
:class:`BatchStep` or :class:`ActionStep` and are allowed in saved pipelines by ``@register_step``.
"""

from .base import (
    FORMAT_VERSION,
    STEP_REGISTRY,
    ActionStep,
    BatchStep,
    PipelineLoadError,
    ProcessorStep,
    Sample,
    SampleStep,
    register_step,
)
from .build import build_pipeline
from .collate import Collate
from .images import ImageConversion, to_model_image
from .keys import BUILTIN_KEY_MAPS, KeyMapping, ObservationContract
from .layout import CropToEmbodiment, PadToEmbodiment, embodiment_from_stats
from .normalize import Normalize, Unnormalize, normalize_tensor, unnormalize_tensor
from .normalize_ar import AR_KEY, NormalizeAR
from .pipeline import Pipeline
from .relative import ToAbsoluteActions, ToRelativeActions, relative_dims, relative_stats
from .tokenize import DefaultPrompt, PromptTokenizer

__all__ = [
    "AR_KEY",
    "BUILTIN_KEY_MAPS",
    "FORMAT_VERSION",
    "STEP_REGISTRY",
    "ActionStep",
    "BatchStep",
    "Collate",
    "CropToEmbodiment",
    "DefaultPrompt",
    "ImageConversion",
    "KeyMapping",
    "Normalize",
    "NormalizeAR",
    "ObservationContract",
    "PadToEmbodiment",
    "Pipeline",
    "PipelineLoadError",
    "ProcessorStep",
    "PromptTokenizer",
    "Sample",
    "SampleStep",
    "ToAbsoluteActions",
    "ToRelativeActions",
    "Unnormalize",
    "build_pipeline",
    "embodiment_from_stats",
    "normalize_tensor",
    "register_step",
    "relative_dims",
    "relative_stats",
    "to_model_image",
    "unnormalize_tensor",
]
