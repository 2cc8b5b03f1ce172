"""Image conversion, done once: camera frames -> the model's size and dtype (uint8 [3, h, w])."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import Sample, SampleStep, register_step

__all__ = ["ImageConversion", "to_model_image"]


def to_model_image(x: Tensor, size: tuple[int, int], key: str = "image") -> Tensor:
    """One camera frame -> uint8 [3, h, w] at ``size``.

    Accepts [3, h, w] or [h, w, 3]. uint8 is kept as is (no copy when the size already matches). Float
    frames must lie in [0, 1] and are converted by the rule ``uint8 = round(255 * x)`` (LeRobot's float image
    is value / 255). Any other dtype, or floats outside [0, 1], are refused. A frame of another size is resized
    once (bilinear, antialiased, rounded back to uint8).
    """
    if x.ndim == 3 and x.shape[0] != 3 and x.shape[-1] == 3:
        x = x.permute(2, 0, 1)
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"camera {key!r} must be [3, h, w] or [h, w, 3], got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if tuple(x.shape[1:]) == tuple(size):
            return x
        f = x.float()
    elif x.is_floating_point():
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"camera {key!r} is a float image with values in [{lo:.3g}, {hi:.3g}]; float images must lie in "
                "[0, 1] (or send uint8 0..255)"
            )
        f = x.float() * 255.0
    else:
        raise TypeError(f"camera {key!r} has dtype {x.dtype}; send uint8 0..255 or float in [0, 1]")
    if tuple(f.shape[1:]) != tuple(size):
        f = torch.nn.functional.interpolate(f[None], size=tuple(size), mode="bilinear", antialias=True)[0]
    return f.round().clamp(0, 255).to(torch.uint8)


@register_step
class ImageConversion(SampleStep):
    """Gather the model's cameras into ``images`` uint8 [C, 3, h, w] and ``image_valid`` bool [C].

    Absent cameras (allowed for VQA samples only; the contract step checks robots) are zero frames with
    ``image_valid`` False. The camera keys are removed from the sample.

    Args:
        cameras: camera keys in slot order.
        size: (h, w) the vision encoder takes.
    """

    def __init__(self, cameras: Sequence[str], size: Sequence[int]) -> None:
        self.cameras = list(cameras)
        if len(size) != 2:
            raise ValueError(f"image size must be (h, w), got {size}")
        self.size = (int(size[0]), int(size[1]))

    def config(self) -> dict[str, Any]:
        return dict(cameras=self.cameras, size=list(self.size))

    def summary(self) -> str:
        return f"cameras={self.cameras}, size={self.size}, dtype=uint8"

    def __call__(self, sample: Sample) -> Sample:
        """Camera keys -> ``images`` [C, 3, h, w] uint8 and ``image_valid`` [C] bool."""
        out = {k: v for k, v in sample.items() if k not in self.cameras}
        images = torch.zeros((len(self.cameras), 3, *self.size), dtype=torch.uint8)
        valid = torch.zeros(len(self.cameras), dtype=torch.bool)
        for j, cam in enumerate(self.cameras):
            if cam in sample:
                images[j] = to_model_image(sample[cam], self.size, cam)
                valid[j] = True
        out["images"], out["image_valid"] = images, valid
        return out
