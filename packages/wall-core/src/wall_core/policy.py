"""``WallPolicy``: a trained model + its processing pipeline as a wall-robots/openpi Policy, saved as
safetensors + YAML + the pipeline folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_model, save_model
from torch import Tensor

from wall_robots.robot import UnsafeActionError

from .model import WallBatch, WallVLA, WallVLAConfig
from .processing import Pipeline

__all__ = ["WallPolicy"]
logger = logging.getLogger(__name__)
TARGETS = ("action", "actions", "action_is_pad")  # training targets a logged observation may still carry


class WallPolicy:
    """``infer(obs) -> {"actions": [H, A_robot]}`` in the robot's own units.

    ``mode="flow"`` (default) samples the action expert with ``num_steps`` Euler steps over a cached prefix;
    ``mode="discrete"`` decodes action tokens through the LM head. Observations go through the same pipeline
    as training samples (training targets in them are ignored); the robot is the observation's ``dataset``
    (or the pipeline's default dataset for a single-robot policy).
    """

    def __init__(
        self,
        model: WallVLA,
        pipeline: Pipeline,
        num_steps: int = 10,
        method: str = "euler",
        mode: str = "flow",
        seed: int = 0,
        discrete_retries: int = 3,
        retry_temperature: float = 0.7,
        on_invalid: str = "flow",
    ) -> None:
        if mode not in ("flow", "discrete"):
            raise ValueError(f"mode must be 'flow' or 'discrete', got {mode!r}")
        if on_invalid not in ("flow", "refuse"):
            raise ValueError(
                f"on_invalid must be 'flow' (use the flow chunk) or 'refuse', got {on_invalid!r}"
            )
        if discrete_retries < 0 or retry_temperature <= 0:
            raise ValueError("need discrete_retries >= 0 and retry_temperature > 0")
        self.model, self.pipeline = model.eval(), pipeline
        self.num_steps, self.method, self.mode = num_steps, method, mode
        self.generator = torch.Generator().manual_seed(seed)
        # discrete decoding: greedy first; an invalid decode is retried by sampling (the paper retries up to 3
        # times at temperature 0.7); still invalid -> the flow chunk ("flow") or refused ("refuse": raises
        # wall_robots.UnsafeActionError, which the evaluation runner counts and never executes)
        self.discrete_retries, self.retry_temperature, self.on_invalid = (
            discrete_retries, retry_temperature, on_invalid
        )  # fmt: skip
        self.invalid_chunks = 0  # greedy decodes that were invalid
        self.discrete_counts = {"invalid": 0, "retried_valid": 0, "flow_fallback": 0, "refused": 0}

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def infer_batch(self, observations: list[dict[str, Any]]) -> np.ndarray:
        """B observations of one robot -> actions float32 [B, H, A_robot] in the robot's units."""
        obs = [{k: v for k, v in o.items() if k not in TARGETS} for o in observations]
        batch = self.pipeline(obs).to(self.device)
        if self.mode == "flow":
            norm = self._flow_chunk(batch)
        else:
            norm = self._discrete_chunk(batch)
        out = self.pipeline.postprocess(norm.cpu(), batch.dataset, self.pipeline.raw_states(obs))
        if isinstance(out, list):
            raise ValueError("infer_batch takes observations of one robot; call it once per robot")
        return out.numpy()

    def _flow_chunk(self, batch: WallBatch) -> Tensor:
        """Normalised padded flow chunk [B, H, A] from the policy's generator."""
        cfg = self.model.config
        noise = torch.randn(batch.batch_size, cfg.action_horizon, cfg.action_dim, generator=self.generator)
        return self.model.predict_actions(batch, self.num_steps, self.method, noise=noise.to(self.device))

    def _discrete_chunk(self, batch: WallBatch) -> Tensor:
        """Normalised padded chunk [B, H, A] from action tokens; invalid rows retried, then handled by
        ``on_invalid``. Counts land in :attr:`discrete_counts`."""
        codes = self.model.generate_action_tokens(batch, max_new_tokens=256)
        norm, valid = self.pipeline.decode_action_tokens(codes, batch.dataset)
        n_bad = int((~valid).sum())
        self.invalid_chunks += n_bad
        self.discrete_counts["invalid"] += n_bad
        for _ in range(self.discrete_retries):
            if bool(valid.all()):
                break
            # the whole batch is re-decoded (rows of a left-padded batch with images do not split cheaply);
            # only rows that were invalid take the new chunk
            codes = self.model.generate_action_tokens(
                batch, max_new_tokens=256, temperature=self.retry_temperature, generator=self.generator
            )
            again, ok = self.pipeline.decode_action_tokens(codes, batch.dataset)
            fixed = ok & ~valid
            norm[fixed] = again[fixed].to(norm.dtype)
            valid |= fixed
            self.discrete_counts["retried_valid"] += int(fixed.sum())
        if bool(valid.all()):
            return norm
        rows = (~valid).nonzero()[:, 0]
        if self.on_invalid == "refuse":
            self.discrete_counts["refused"] += len(rows)
            raise UnsafeActionError(
                f"discrete decoding gave no valid chunk for {len(rows)} row(s) after "
                f"{self.discrete_retries} sampled retries; nothing was executed"
            )
        self.discrete_counts["flow_fallback"] += len(rows)
        norm[rows] = self._flow_chunk(batch)[rows.to(self.device)].to(norm)
        return norm

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """One observation -> ``{"actions": float32 [H, A_robot]}``."""
        return {"actions": self.infer_batch([obs])[0]}

    def reset(self) -> None:
        """Nothing to reset (the policy keeps no per-episode state)."""

    def contract(self) -> dict[str, Any] | None:
        """``{robot name: wall_robots.ObservationContract}``, one per robot (dataset) this policy drives, as
        :class:`wall_robots.PolicyServer` publishes and checks them (None when the pipeline has no contract
        step). An observation names its robot under ``dataset`` (optional for a single-robot policy)."""
        from .contract import pipeline_contracts

        return pipeline_contracts(self.pipeline)

    @property
    def key_map(self) -> dict[str, str]:
        """Sender names this policy's pipeline renames (openpi's ``observation/image`` ...) -> ours."""
        from .contract import pipeline_key_map

        return pipeline_key_map(self.pipeline)

    # --- persistence -----------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``model.safetensors``, ``config.yaml`` and ``pipeline/`` into ``path``."""
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
        self.pipeline.save_pretrained(path / "pipeline")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, mode: str = "flow", **kw: Any) -> WallPolicy:
        """Load a folder written by :meth:`save_pretrained`; ``kw`` overrides the saved policy options."""
        path = Path(path)
        missing = [
            f
            for f in ("config.yaml", "model.safetensors", "pipeline/pipeline.json")
            if not (path / f).is_file()
        ]
        if missing:
            raise FileNotFoundError(f"{path} lacks {missing}: not a WallPolicy directory")
        cfg = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=True)
        if not isinstance(cfg, dict) or "model" not in cfg:
            raise ValueError(f"{path / 'config.yaml'} must be a mapping with a 'model' section")
        model = WallVLA(WallVLAConfig.from_dict(cfg["model"]))
        load_model(model, str(path / "model.safetensors"), strict=True)
        policy_kw = {**cfg.get("policy", {}), **kw}
        return cls(model, Pipeline.from_pretrained(path / "pipeline"), mode=mode, **policy_kw)
