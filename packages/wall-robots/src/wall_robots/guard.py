"""Checks every action chunk before anything executes it: [H, A] with H >= 1, finite, within the policy's
declared bounds. Used by :class:`wall_robots.ActionChunker` (hence :func:`wall_robots.evaluate`) and by the
policy server's replies. Turning it off is explicit (``check_actions=False``) and logged."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from .contract import ObservationContract, contracts_of
from .robot import UnsafeActionError

__all__ = ["ActionGuard", "EmptyChunkError"]
logger = logging.getLogger(__name__)


class EmptyChunkError(UnsafeActionError):
    """The policy returned a chunk with no actions (``[0, A]`` or an empty list)."""


def checked_chunk(out: Any, guard: ActionGuard | None) -> np.ndarray:
    """``policy.infer``'s reply -> its ``actions`` as float64 [H, A], passed through ``guard`` when given
    (which refuses non-finite or out-of-bounds chunks); without a guard only emptiness and rank are checked."""
    if not isinstance(out, dict) or "actions" not in out:
        raise ValueError(f"policy.infer must return a dict with 'actions' [H, A], got {type(out).__name__}")
    if guard is not None:
        return guard.check(out["actions"])
    chunk = np.asarray(out["actions"], dtype=np.float64)
    if chunk.size == 0:
        raise EmptyChunkError(f"the policy returned an empty chunk of shape {list(chunk.shape)}")
    if chunk.ndim != 2:
        raise ValueError(f"policy returned actions of shape {chunk.shape}; expected [H, A]")
    return chunk


class ActionGuard:
    """Refuses bad action chunks, counting why.

    ``low``/``high``: the declared bounds ([A] or scalars; None = the policy declares none, then only
    finiteness and ``max_abs`` are checked); ``action_dim`` A and ``action_horizon`` H when declared;
    ``max_abs``: a sanity cap for policies without bounds (|a| above it is refused); ``tolerance``: slack
    allowed outside [low, high] for float round-off. :meth:`check` returns the chunk as float64 [H, A] or
    raises :class:`UnsafeActionError`; ``refused`` and ``reasons`` count refusals.
    """

    def __init__(
        self,
        low: Sequence[float] | np.ndarray | float | None = None,
        high: Sequence[float] | np.ndarray | float | None = None,
        action_dim: int | None = None,
        action_horizon: int | None = None,
        max_abs: float = 1e6,
        tolerance: float = 1e-6,
    ) -> None:
        if (low is None) != (high is None):
            raise ValueError("ActionGuard: give both low and high, or neither")
        self.low = None if low is None else np.asarray(low, dtype=float)
        self.high = None if high is None else np.asarray(high, dtype=float)
        if self.low is not None and self.high is not None and not self._bounds_ok(self.low, self.high):
            raise ValueError(f"ActionGuard bounds must be finite with low <= high, got {low}, {high}")
        if not (max_abs > 0 and np.isfinite(max_abs)):
            raise ValueError(f"ActionGuard max_abs must be finite and > 0, got {max_abs}")
        self.action_dim, self.action_horizon = action_dim, action_horizon
        self.max_abs, self.tolerance = float(max_abs), float(tolerance)
        self.checked, self.refused = 0, 0
        self.reasons: Counter[str] = Counter()

    @staticmethod
    def _bounds_ok(low: np.ndarray, high: np.ndarray) -> bool:
        return bool(np.isfinite(low).all() and np.isfinite(high).all() and np.all(low <= high))

    @classmethod
    def from_contract(cls, contract: ObservationContract, **kw: Any) -> ActionGuard:
        """A guard with the contract's action bounds, dim and horizon."""
        return cls(
            contract.action_low, contract.action_high, contract.action_dim, contract.action_horizon, **kw
        )

    @classmethod
    def for_policy(cls, policy: Any, **kw: Any) -> ActionGuard:
        """A guard from the policy's declared contract (one robot), else finiteness and ``max_abs`` only."""
        contracts = contracts_of(policy)
        if contracts and len(contracts) == 1:
            return cls.from_contract(next(iter(contracts.values())), **kw)
        if contracts:  # several robots: bounds differ per robot, the dims are still known to be padded alike
            logger.info("policy drives %d robots; its chunks are checked for finiteness only", len(contracts))
        else:
            logger.info(
                "%s declares no action bounds (no contract()); chunks are checked for finiteness and |a| <= %g",
                type(policy).__name__,
                kw.get("max_abs", 1e6),
            )
        return cls(**kw)

    def _refuse(
        self, reason: str, message: str, exc: type[UnsafeActionError] = UnsafeActionError
    ) -> UnsafeActionError:
        self.refused += 1
        self.reasons[reason] += 1
        logger.warning("refused action chunk: %s", message)
        return exc(f"refused action chunk: {message}")

    def check(self, actions: Any) -> np.ndarray:
        """Validate one chunk ``actions`` [H, A]; returns it as float64 [H, A] or raises (counted)."""
        self.checked += 1
        try:
            chunk = np.asarray(actions, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise self._refuse("not numeric", f"actions are not a numeric array ({e})") from None
        if chunk.size == 0:
            raise self._refuse(
                "empty",
                f"the policy returned an empty chunk of shape {list(chunk.shape)}; expected [H >= 1, A]",
                EmptyChunkError,
            )
        if chunk.ndim != 2:
            raise self._refuse("shape", f"actions have shape {list(chunk.shape)}; expected [H, A]")
        if self.action_dim is not None and chunk.shape[1] != self.action_dim:
            raise self._refuse(
                "shape", f"actions have {chunk.shape[1]} dims; the policy declares {self.action_dim}"
            )
        if self.action_horizon is not None and chunk.shape[0] != self.action_horizon:
            raise self._refuse(
                "shape", f"chunk has {chunk.shape[0]} steps; the policy declares {self.action_horizon}"
            )
        if not np.isfinite(chunk).all():
            bad = int((~np.isfinite(chunk)).sum())
            raise self._refuse("non-finite", f"{bad} of {chunk.size} values are NaN or inf")
        if np.abs(chunk).max() > self.max_abs:
            raise self._refuse(
                "too large", f"max |a| = {np.abs(chunk).max():.3g} exceeds max_abs={self.max_abs:g}"
            )
        if self.low is not None and self.high is not None:
            lo, hi = self.low - self.tolerance, self.high + self.tolerance
            out = (chunk < lo) | (chunk > hi)
            if out.any():
                dims = sorted(set(np.nonzero(out)[1].tolist()))
                raise self._refuse(
                    "out of bounds",
                    f"{int(out.sum())} values outside the declared bounds on dims {dims} "
                    f"(range of the chunk [{chunk.min():.3g}, {chunk.max():.3g}])",
                )
        return chunk

    def summary(self) -> dict[str, Any]:
        """``{"checked": n, "refused": m, "reasons": {reason: count}}``."""
        return {"checked": self.checked, "refused": self.refused, "reasons": dict(self.reasons)}
