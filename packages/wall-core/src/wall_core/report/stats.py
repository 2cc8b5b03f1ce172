"""Confidence intervals for success rates and the table of final training losses."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["final_loss_table", "wilson_interval"]
TERM_ORDER = ("loss", "text_ce", "action_ce", "flow")  # columns first in this order, other terms after
NOT_LOSSES = ("step", "lr")


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


def _mean_std(values: Sequence[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.4f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return f"{mean:.4f} ± {std:.4f}"


def final_loss_table(final: Mapping[str, Sequence[Mapping[str, float]]]) -> str:
    """``{model: [last training-history row of each seed]}`` -> a markdown table of the final losses.

    A history row holds the batch's terms (``loss``, ``text_ce``, ...: row ``all``) and each dataset's terms
    as ``<dataset>/<term>`` keys (one row per dataset); ``step`` and ``lr`` are left out. One column per term
    (``loss``, ``text_ce``, ``action_ce``, ``flow``, then any other), the mean over seeds (± the population
    std when several); "—" where a dataset had no items for a term. With several models each row is named
    ``<model>: <dataset>``.
    """
    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    for model, rows in final.items():
        for row in rows:
            for key, value in row.items():
                dataset, _, term = key.rpartition("/")
                if key in NOT_LOSSES:
                    continue
                cells.setdefault((model, dataset or "all"), {}).setdefault(term, []).append(float(value))
    seen = list(dict.fromkeys(t for c in cells.values() for t in c))
    terms = [t for t in TERM_ORDER if t in seen] + [t for t in seen if t not in TERM_ORDER]
    lines = ["| dataset | " + " | ".join(terms) + " |", "|---" * (len(terms) + 1) + "|"]
    order = sorted(cells, key=lambda md: (list(final).index(md[0]), md[1] != "all", md[1]))
    for model, dataset in order:
        name = f"{model}: {dataset}" if len(final) > 1 else dataset
        vals = [_mean_std(cells[model, dataset][t]) if t in cells[model, dataset] else "—" for t in terms]
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(lines)
