"""Training-time samplers for t in [0, 1] (t=0 noise, t=1 data).

``BetaTimeSampler`` is the Wall-OSS / π0 schedule: ``t = s·(1 - b)``, ``b ~ Beta(α=1.5, β=1)``, ``s=0.999``.
Beta(1.5, 1) leans towards 1, so ``1 - b`` leans towards 0: training concentrates on the *noisy* end, as π0
intends, and t never reaches exactly 1 (s < 1 keeps a little noise in every sample).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "BetaTimeSampler",
    "LogitNormalTimeSampler",
    "TimeSampler",
    "UniformTimeSampler",
    "create_time_sampler",
]

Device = torch.device | str | None


class TimeSampler:
    """Base class: ``sample(batch_size, device, generator) -> t`` [batch_size] float32 in [0, 1]."""

    def sample(
        self, batch_size: int, device: Device = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``batch_size`` times (from ``generator`` when given, else the global RNG)."""
        raise NotImplementedError


class UniformTimeSampler(TimeSampler):
    """t ~ U(0, 1)."""

    def sample(
        self, batch_size: int, device: Device = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """[batch_size] uniform times."""
        return torch.rand(batch_size, device=device, generator=generator)


class BetaTimeSampler(TimeSampler):
    """t = s·(1 - b), b ~ Beta(alpha, beta) (Wall-OSS / π0: alpha 1.5, beta 1, s 0.999)."""

    def __init__(self, alpha: float = 1.5, beta: float = 1.0, s: float = 0.999) -> None:
        if alpha <= 0 or beta <= 0 or not 0 < s <= 1:
            raise ValueError(f"need alpha, beta > 0 and 0 < s <= 1, got {alpha}, {beta}, {s}")
        self.alpha, self.beta, self.s = alpha, beta, s

    def sample(
        self, batch_size: int, device: Device = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """[batch_size] times; exact inverse-CDF draws (reproducible per generator) when alpha or beta is 1."""
        u = torch.rand(batch_size, device=device, generator=generator)
        if self.beta == 1.0:  # Beta(a, 1) has CDF b**a
            b = u ** (1.0 / self.alpha)
        elif self.alpha == 1.0:
            b = 1 - u ** (1.0 / self.beta)
        else:  # general case: torch.distributions (draws from the global RNG)
            b = torch.distributions.Beta(self.alpha, self.beta).sample((batch_size,)).to(u.device)
        return self.s * (1 - b)


class LogitNormalTimeSampler(TimeSampler):
    """t = sigmoid(m + s·z), z ~ N(0, 1) (SD3-style)."""

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean, self.std = mean, std

    def sample(
        self, batch_size: int, device: Device = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """[batch_size] logit-normal times."""
        z = torch.randn(batch_size, device=device, generator=generator)
        return torch.sigmoid(self.mean + self.std * z)


def create_time_sampler(name: str, **kwargs: float) -> TimeSampler:
    """``"beta"``, ``"uniform"`` or ``"logit_normal"`` with its keyword arguments."""
    table: dict[str, type[TimeSampler]] = {
        "beta": BetaTimeSampler,
        "uniform": UniformTimeSampler,
        "logit_normal": LogitNormalTimeSampler,
    }
    if name not in table:
        raise KeyError(f"unknown time sampler {name!r}; choose one of {sorted(table)}")
    return table[name](**kwargs)
