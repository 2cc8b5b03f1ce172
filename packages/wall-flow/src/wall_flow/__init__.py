"""wall_flow: flow matching for action chunks (t=0 noise, t=1 data), usable in any policy.

Pieces: :class:`LinearPath` (path), time samplers, :func:`flow_loss` (velocity or action space, masked),
:func:`sample` (Euler / midpoint / Heun / RK4 over any conditioned velocity callable), and modules
(:class:`ActionExpert`, :class:`ActionExpertLayer`, :class:`FlowMLPHead`, ...).
"""

from .convention import from_openpi_time, from_openpi_velocity_fn, to_openpi_time, to_openpi_velocity
from .losses import broadcast_mask, flow_loss, masked_mean
from .modules import (
    ActionExpert,
    ActionExpertLayer,
    ActionInputProjector,
    AdaRMSNorm,
    FlowMLPHead,
    RMSNorm,
    SinusoidalTimeEmbedding,
    SwiGLU,
    joint_attention,
)
from .paths import LinearPath, PathSample, expand_time
from .solvers import SOLVERS, sample
from .timesamplers import (
    BetaTimeSampler,
    LogitNormalTimeSampler,
    TimeSampler,
    UniformTimeSampler,
    create_time_sampler,
)

__version__ = "0.1.0"
__all__ = [
    "SOLVERS",
    "ActionExpert",
    "ActionExpertLayer",
    "ActionInputProjector",
    "AdaRMSNorm",
    "BetaTimeSampler",
    "FlowMLPHead",
    "LinearPath",
    "LogitNormalTimeSampler",
    "PathSample",
    "RMSNorm",
    "SinusoidalTimeEmbedding",
    "SwiGLU",
    "TimeSampler",
    "UniformTimeSampler",
    "broadcast_mask",
    "create_time_sampler",
    "expand_time",
    "flow_loss",
    "from_openpi_time",
    "from_openpi_velocity_fn",
    "joint_attention",
    "masked_mean",
    "sample",
    "to_openpi_time",
    "to_openpi_velocity",
]
