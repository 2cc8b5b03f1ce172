"""wall_flow: flow matching for action chunks (t=0 noise, t=1 data), usable in any policy.

:class:`FlowMatching` owns a whole recipe (path + time sampler + noise + loss + sampler) and is what a policy
uses. Pieces: :class:`LinearPath` (path; the one place ``x_t`` is formed), time samplers, :func:`flow_loss`
(velocity or action space, masked, two reductions), :func:`sample` (Euler / midpoint / Heun / RK4 over any
conditioned velocity callable), and modules (:class:`ActionExpert`, :class:`ActionExpertLayer`,
:class:`FlowMLPHead`, ...); :mod:`wall_flow.modules` documents the Mixture-of-Transformers host interface.
"""

from .attention import block_mask_from_dense, flex_joint_attention
from .convention import from_openpi_time, from_openpi_velocity_fn, to_openpi_time, to_openpi_velocity
from .losses import REDUCTIONS, broadcast_mask, flow_loss, loss_count, masked_mean
from .matching import FlowMatching, Generators
from .modules import (
    ActionExpert,
    ActionExpertLayer,
    ActionInputProjector,
    AdaRMSNorm,
    FlowMLPHead,
    RMSNorm,
    RopeFn,
    SinusoidalTimeEmbedding,
    SwiGLU,
    joint_attention,
)
from .paths import LinearPath, PathSample, expand_time
from .rtc import guidance_weight, prefix_sample, prefix_times, rtc_sample, soft_mask
from .solvers import EVALS_PER_STEP, SOLVERS, sample, time_grid
from .timesamplers import (
    BetaTimeSampler,
    LogitNormalTimeSampler,
    TimeSampler,
    UniformTimeSampler,
    create_time_sampler,
)

__version__ = "0.1.0"
__all__ = [
    "EVALS_PER_STEP",
    "REDUCTIONS",
    "SOLVERS",
    "ActionExpert",
    "ActionExpertLayer",
    "ActionInputProjector",
    "AdaRMSNorm",
    "BetaTimeSampler",
    "FlowMLPHead",
    "FlowMatching",
    "Generators",
    "LinearPath",
    "LogitNormalTimeSampler",
    "PathSample",
    "RMSNorm",
    "RopeFn",
    "SinusoidalTimeEmbedding",
    "SwiGLU",
    "TimeSampler",
    "UniformTimeSampler",
    "block_mask_from_dense",
    "broadcast_mask",
    "create_time_sampler",
    "expand_time",
    "flex_joint_attention",
    "flow_loss",
    "from_openpi_time",
    "from_openpi_velocity_fn",
    "guidance_weight",
    "joint_attention",
    "loss_count",
    "masked_mean",
    "prefix_sample",
    "prefix_times",
    "rtc_sample",
    "sample",
    "soft_mask",
    "time_grid",
    "to_openpi_time",
    "to_openpi_velocity",
]
