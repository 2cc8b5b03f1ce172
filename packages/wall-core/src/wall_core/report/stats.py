"""Confidence intervals for success rates."""

from __future__ import annotations

import math

__all__ = ["wilson_interval"]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (default 95 %) for ``successes`` out of ``n`` trials; returns (low, high) in [0, 1].

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0/n or n/n.
    """
    if n <= 0:
        raise ValueError(f"need n >= 1 trials for a confidence interval, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
