"""``WallPolicy``: a trained model + processor as a wall-robots/openpi Policy, saved as safetensors + YAML."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_model, save_model

from .model import WallVLA, WallVLAConfig
from .processor import WallProcessor

__all__ = ["WallPolicy"]
logger = logging.getLogger(__name__)


class WallPolicy:
    """``infer(obs) -> {"actions": [H, A]}`` in the robot's own units. ``mode="flow"`` (default) samples the
    action expert with ``num_steps`` Euler steps over a cached prefix; ``mode="discrete"`` decodes action
    tokens through the LM head."""

    def __init__(
        self,
        model: WallVLA,
        processor: WallProcessor,
        num_steps: int = 10,
        method: str = "euler",
        mode: str = "flow",
        seed: int = 0,
    ) -> None:
        if mode not in ("flow", "discrete"):
            raise ValueError(f"mode must be 'flow' or 'discrete', got {mode!r}")
        self.model, self.processor = model.eval(), processor
        self.num_steps, self.method, self.mode = num_steps, method, mode
        self.generator = torch.Generator().manual_seed(seed)
        self.invalid_chunks = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _sample(self, obs: dict[str, Any]) -> dict[str, Any]:
        s = {k: v for k, v in obs.items() if k != "action"}
        if "prompt" in s and "task" not in s:
            s["task"] = s.pop("prompt")
        return s

    @torch.no_grad()
    def infer_batch(self, observations: list[dict[str, Any]]) -> np.ndarray:
        batch = self.processor([self._sample(o) for o in observations]).to(self.device)
        if self.mode == "flow":
            noise = torch.randn(
                batch.batch_size,
                self.model.config.action_horizon,
                self.model.config.action_dim,
                generator=self.generator,
            )
            norm = self.model.predict_actions(batch, self.num_steps, self.method, noise=noise.to(self.device))
        else:
            codes = self.model.generate_action_tokens(batch, max_new_tokens=256)
            padded, valid = self.processor.decode_action_tokens(codes)
            self.invalid_chunks += int((~valid).sum())
            norm = torch.from_numpy(padded)
        return self.processor.postprocess(norm)

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        return {"actions": self.infer_batch([obs])[0]}

    def reset(self) -> None:
        pass

    # --- persistence -----------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_model(self.model, str(path / "model.safetensors"))
        OmegaConf.save(
            OmegaConf.create(
                {
                    "model": self.model.config.to_dict(),
                    "policy": {"num_steps": self.num_steps, "method": self.method},
                }
            ),
            path / "config.yaml",
        )
        self.processor.save_pretrained(path / "processor")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, mode: str = "flow", **kw: Any) -> WallPolicy:
        path = Path(path)
        if not (path / "config.yaml").is_file() or not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"{path} lacks config.yaml/model.safetensors: not a WallPolicy directory")
        cfg = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=True)
        model = WallVLA(WallVLAConfig.from_dict(cfg["model"]))
        missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=True)
        policy_kw = {**cfg.get("policy", {}), **kw}
        return cls(model, WallProcessor.from_pretrained(path / "processor"), mode=mode, **policy_kw)
