"""wall_core: the Wall-OSS-0.5 VLA — backbones, Mixture-of-Transformers action expert, gradient-bridged
objective, Lightning training, the ``wall`` CLI and the embedded MetaWorld default."""

from .backbones import BackboneAdapter, create_backbone, list_backbones, register_backbone
from .model import (
    SEG,
    WallBatch,
    WallOutput,
    WallVLA,
    WallVLAConfig,
    flow_attention_mask,
    prefix_attention_mask,
)
from .objective import ObjectiveOutput, WallObjective, loss_terms
from .policy import WallPolicy
from .processing import Pipeline, ProcessorStep, build_pipeline, register_step

__version__ = "0.1.0"
__all__ = [
    "SEG",
    "BackboneAdapter",
    "ObjectiveOutput",
    "Pipeline",
    "ProcessorStep",
    "WallBatch",
    "WallObjective",
    "WallOutput",
    "WallPolicy",
    "WallVLA",
    "WallVLAConfig",
    "build_pipeline",
    "create_backbone",
    "flow_attention_mask",
    "list_backbones",
    "loss_terms",
    "prefix_attention_mask",
    "register_backbone",
    "register_step",
]
