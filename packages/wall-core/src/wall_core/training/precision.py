"""bf16-true with an fp32 policy: the numerically delicate modules keep fp32 weights and compute.

Under :func:`apply_precision_policy` every parameter is cast to the compute dtype (bf16) except those of
the *fp32 modules*: every normalisation layer (class name ending in ``Norm``: RMSNorm, LayerNorm, Qwen's
RMSNorm, AdaRMSNorm) and the action / state paths :data:`FP32_PATHS` (``expert.proj_in``: noisy actions and
time in, ``expert.proj_out``: velocity out, ``state_proj``: proprioception in). Each fp32 module gets a
forward pre-hook casting its floating inputs to fp32 and a forward hook casting its floating outputs to the
compute dtype, so it slots between bf16 neighbours — except ``expert.proj_out``, whose output (the
velocity the flow loss reads) stays fp32. Actions, noise, times and state stay fp32 end to end.

:class:`Bf16TruePrecision` is Lightning's ``bf16-true`` plugin with this policy; :func:`trainer_precision`
turns a ``precision`` string into the matching ``L.Trainer`` keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch.plugins.precision import HalfPrecision
from torch import Tensor, nn

__all__ = [
    "FP32_PATHS",
    "Bf16TruePrecision",
    "apply_precision_policy",
    "fp32_module_names",
    "keeps_fp32_output",
    "trainer_precision",
]
FP32_PATHS = ("expert.proj_in", "expert.proj_out", "state_proj")
KEEP_FP32_OUTPUT = ("expert.proj_out",)
_HOOKED = "_wall_fp32_hooks"


def _is_norm(module: nn.Module) -> bool:
    return type(module).__name__.endswith("Norm") or isinstance(module, nn.LayerNorm | nn.GroupNorm)


def _on_path(name: str, paths: tuple[str, ...]) -> bool:
    return any(name == p or name.endswith("." + p) for p in paths)


def keeps_fp32_output(name: str) -> bool:
    """Whether the fp32 module ``name`` hands its output on in fp32 (``expert.proj_out``: the velocity)."""
    return _on_path(name, KEEP_FP32_OUTPUT)


def fp32_module_names(model: nn.Module) -> list[str]:
    """Names of the modules the policy keeps in fp32 (outermost only: a child of a kept module is skipped)."""
    out: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(o + ".") for o in out):
            continue
        if _is_norm(m) or _on_path(name, FP32_PATHS):
            out.append(name)
    return out


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, tuple | list):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _hooks(out_dtype: torch.dtype | None) -> tuple[Callable[..., Any], Callable[..., Any]]:
    def pre(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return _cast(args, torch.float32), {k: _cast(v, torch.float32) for k, v in kwargs.items()}

    def post(_m: nn.Module, _args: Any, output: Any) -> Any:
        return output if out_dtype is None else _cast(output, out_dtype)

    return pre, post


def apply_precision_policy(model: nn.Module, compute_dtype: torch.dtype = torch.bfloat16) -> list[str]:
    """In place: cast ``model`` to ``compute_dtype`` and keep the fp32 modules (module docstring) in fp32
    with their casting hooks (registered once; calling again only re-casts) -> the fp32 module names."""
    model.to(compute_dtype)
    names = fp32_module_names(model)
    for name in names:
        m = model.get_submodule(name)
        m.float()
        if getattr(m, _HOOKED, False):
            continue
        pre, post = _hooks(None if keeps_fp32_output(name) else compute_dtype)
        m.register_forward_pre_hook(pre, with_kwargs=True)
        m.register_forward_hook(post)
        setattr(m, _HOOKED, True)
    return names


class Bf16TruePrecision(HalfPrecision):
    """Lightning's ``bf16-true`` with :func:`apply_precision_policy`: bf16 weights and compute except the
    norms and the action / state paths (fp32). Batches are passed through unconverted: each module casts
    what it reads, so actions, noise and state keep fp32."""

    def __init__(self) -> None:
        super().__init__("bf16-true")

    def convert_module(self, module: nn.Module) -> nn.Module:
        """bf16 + the fp32 policy, in place -> the module."""
        apply_precision_policy(module, torch.bfloat16)
        return module

    def convert_input(self, data: Any) -> Any:
        """Unchanged (see the class docstring)."""
        return data

    @contextmanager
    def forward_context(self) -> Generator[None, None, None]:
        """No default-dtype switch: tensors created in the step (flow times, noise, masks) stay fp32."""
        yield


def trainer_precision(precision: str) -> dict[str, Any]:
    """``L.Trainer`` keyword arguments for a precision string: ``bf16-true`` -> ``plugins=[Bf16TruePrecision()]``
    (the fp32 policy), anything else -> ``precision=<string>`` as Lightning reads it."""
    if precision == "bf16-true":
        return {"plugins": [Bf16TruePrecision()]}
    return {"precision": precision}
