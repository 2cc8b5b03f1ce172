"""``WallPolicy``: a trained model + its processing pipeline as a wall-robots/openpi Policy, saved as
safetensors + YAML + the pipeline folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_model
from torch import Tensor

from wall_flow import prefix_sample, rtc_sample
from wall_robots.robot import UnsafeActionError

from . import policy_checks, policy_contract
from .model import WallBatch, WallVLA, WallVLAConfig
from .processing import KeyMapping, PadToEmbodiment, Pipeline
from .processing.layout import hold_sources

__all__ = ["WallPolicy"]
logger = logging.getLogger(__name__)
TARGETS = ("action", "actions", "action_is_pad")  # training targets a logged observation may still carry


class WallPolicy:
    """``infer(obs) -> {"actions": [H, A_robot]}`` in the robot's own units.

    ``mode="flow"`` (default) samples the action expert with ``num_steps`` Euler steps over a cached prefix;
    ``mode="discrete"`` decodes action tokens through the LM head, unnormalised with the pipeline's AR
    normaliser. Observations go through the same pipeline as training samples (training targets in them are
    ignored); the robot is the observation's ``dataset`` (or the pipeline's default dataset for a single-robot
    policy).

    A discrete decode that is invalid is retried ``discrete_retries`` times by sampling at
    ``retry_temperature``; a row still invalid is never executed, it becomes (``on_invalid``):
    ``"flow"`` the flow chunk; ``"refuse"`` nothing (raises ``wall_robots.UnsafeActionError``, which the
    evaluation runner counts); ``"hold"`` a chunk that keeps the robot where it is: every step repeats the
    observation's state for the absolute-position action dims (named like a state dim in the robot's
    ``EmbodimentSpec``) and is 0 for its delta dims (``spec.meta["delta_actions"]``); a robot whose spec cannot
    say is a ValueError here. Counts land in :attr:`discrete_counts` (``invalid`` greedy decodes,
    ``retried_valid``, ``flow_fallback``, ``refused``, ``held``).

    Real-time chunking: ``infer(obs, prefix_actions, delay)`` samples the next chunk guided so that its first
    ``delay`` actions agree with ``prefix_actions`` (the previous chunk's actions that still execute while this
    one is computed). ``rtc_mode="guidance"`` (default, any flow model): prefix-guided sampling
    (:func:`wall_flow.rtc_sample`, guidance-weight clip ``guidance_weight``, Euler only); ``"prefix"`` (for a
    model trained with training-time RTC, ``objective.rtc_max_delay`` > 0, which saves this mode): the first
    ``delay`` steps are the prefix itself, fed as clean actions at t = 1 (:func:`wall_flow.prefix_sample`).

    Every chunk is checked before it is returned (``check_actions=True``, the default): NaN/inf or values
    outside the declared bounds (:meth:`contract`, from the action stats widened by ``action_margin`` x their
    range on each side) raise ``wall_robots.UnsafeActionError`` and are counted in :attr:`refused_chunks`;
    ``check_actions=False`` turns this off (logged).
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
        guidance_weight: float = 5.0,
        check_actions: bool = True,
        action_margin: float = 1.0,
        rtc_mode: str = "guidance",
    ) -> None:
        if mode not in ("flow", "discrete"):
            raise ValueError(f"mode must be 'flow' or 'discrete', got {mode!r}")
        if on_invalid not in ("flow", "refuse", "hold"):
            raise ValueError(
                f"on_invalid must be 'flow' (use the flow chunk), 'refuse' or 'hold', got {on_invalid!r}"
            )
        if on_invalid == "hold":
            for spec in pipeline.find(PadToEmbodiment).embodiments.values():
                try:
                    hold_sources(spec)
                except ValueError as e:
                    raise ValueError(f"on_invalid='hold' is not possible: {e}") from e
        if discrete_retries < 0 or retry_temperature <= 0:
            raise ValueError("need discrete_retries >= 0 and retry_temperature > 0")
        if not guidance_weight >= 0:
            raise ValueError(f"guidance_weight (the RTC clip beta) must be >= 0, got {guidance_weight}")
        if rtc_mode not in ("guidance", "prefix"):
            raise ValueError(f"rtc_mode must be 'guidance' or 'prefix' (training-time RTC), got {rtc_mode!r}")
        self.guidance_weight, self.rtc_mode = float(guidance_weight), rtc_mode
        self.model, self.pipeline = model.eval(), pipeline
        self.num_steps, self.method, self.mode = num_steps, method, mode
        self.generator = torch.Generator().manual_seed(seed)
        # discrete decoding: greedy first; an invalid decode is retried by sampling (the paper retries up to 3
        # times at temperature 0.7); still invalid -> on_invalid (see the class docstring)
        self.discrete_retries, self.retry_temperature, self.on_invalid = (
            discrete_retries, retry_temperature, on_invalid
        )  # fmt: skip
        self.invalid_chunks = 0  # greedy decodes that were invalid
        self.discrete_counts = {"invalid": 0, "retried_valid": 0, "flow_fallback": 0, "refused": 0, "held": 0}
        self._init_action_checks(check_actions, action_margin)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def infer_batch(
        self, observations: list[dict[str, Any]], prefix_actions: Any = None, delay: int = 0
    ) -> np.ndarray:
        """B observations of one robot -> actions float32 [B, H, A_robot] in the robot's units.

        ``prefix_actions`` [B, P, A_robot] (robot units, ``delay <= P <= H``) with ``delay`` >= 1: RTC-guided
        sampling (see the class doc). ``delay = 0`` samples exactly as without a prefix (nothing is frozen).
        """
        obs = [{k: v for k, v in o.items() if k not in TARGETS} for o in observations]
        batch = self.pipeline(obs).to(self.device)
        states = self.pipeline.raw_states(obs)  # for relative actions (None when no step reads them)
        held = torch.zeros(batch.batch_size, dtype=torch.bool)
        prefix = None if prefix_actions is None else self._prefix(prefix_actions, delay, batch, states)
        if prefix is None and delay:
            raise ValueError(f"delay={delay} needs prefix_actions (the previous chunk's remaining actions)")
        if self.mode == "flow":
            norm = self._flow_chunk(batch, prefix if delay > 0 else None, delay)
        elif prefix is not None:
            raise ValueError(
                "prefix_actions (real-time chunking) need mode='flow'; the discrete head has no RTC"
            )
        else:
            norm, held = self._discrete_chunk(batch)
        out = self.pipeline.postprocess(norm.cpu(), batch.dataset, states)
        if isinstance(out, list):
            raise ValueError("infer_batch takes observations of one robot; call it once per robot")
        if bool(held.any()):
            rows = held.nonzero()[:, 0].tolist()
            out[held] = self.pipeline.hold_actions([observations[i] for i in rows]).to(out.dtype)
        return self._checked(out.numpy(), batch.dataset)

    # --- action checks (wall_core.policy_contract) -----------------------------------------------------------
    def _init_action_checks(self, check_actions: bool, action_margin: float) -> None:
        if not (action_margin >= 0 and np.isfinite(action_margin)):
            raise ValueError(f"action_margin must be finite and >= 0, got {action_margin}")
        self.check_actions, self.action_margin, self.refused_chunks = bool(check_actions), action_margin, 0
        self._bounds: dict[str, policy_contract.Bounds] = {}
        if not self.check_actions:
            logger.warning(
                "WallPolicy: action checks disabled (check_actions=False); chunks go out unchecked"
            )

    def contract(self) -> Any:
        """The ``wall_robots.ObservationContract`` of the robot this policy drives (a dict robot name ->
        contract when it drives several; None when it drives none): observation keys, shapes, dtypes,
        cameras, action horizon and dim, and the action bounds :meth:`infer` enforces."""
        return policy_contract.policy_contract(self.model.config, self.pipeline, self.action_margin)

    def _checked(self, actions: np.ndarray, datasets: list[str] | None) -> np.ndarray:
        """``actions`` [B, H, A_robot] unchanged, or UnsafeActionError (counted) for a bad row."""
        if not self.check_actions:
            return actions
        names = datasets or [self.pipeline.default_dataset or ""] * len(actions)
        for ds in set(names) - set(self._bounds):
            self._bounds[ds] = policy_contract.action_bounds(self.pipeline, ds, self.action_margin)
        try:
            policy_contract.check_chunk(actions, names, self._bounds)
        except UnsafeActionError:
            self.refused_chunks += 1
            raise
        return actions

    def _prefix(self, prefix_actions: Any, delay: int, batch: WallBatch, states: Any = None) -> Tensor:
        """Check robot-unit ``prefix_actions`` [B, P, A_robot] and map them to the normalised padded space."""
        H, B = self.model.config.action_horizon, batch.batch_size
        p = torch.as_tensor(np.asarray(prefix_actions, dtype=np.float32))
        dataset = batch.dataset[0] if batch.dataset else None
        zeros = torch.zeros(1, 1, self.model.config.action_dim)
        a_robot = self.pipeline.postprocess(zeros, dataset, None if states is None else states[:1])
        assert isinstance(a_robot, Tensor)
        A = a_robot.shape[-1]
        if not isinstance(delay, int) or not 0 <= delay <= H:
            raise ValueError(f"delay must be an int in [0, action_horizon={H}], got {delay!r}")
        if p.dim() != 3 or p.shape[0] != B or p.shape[2] != A or not delay <= p.shape[1] <= H:
            raise ValueError(
                f"prefix_actions must be [P, A_robot={A}] per observation with delay={delay} <= P <= "
                f"action_horizon={H} (the previous chunk's actions still to run, robot units); got "
                f"{list(p.shape[1:]) if p.dim() == 3 else list(p.shape)}"
            )
        if not bool(torch.isfinite(p).all()):
            raise ValueError(
                "prefix_actions contain NaN or inf; pass the finite actions the robot will execute"
            )
        return self.pipeline.preprocess_actions(p, dataset, states).to(self.device)

    def _flow_chunk(self, batch: WallBatch, prefix: Tensor | None = None, delay: int = 0) -> Tensor:
        """Normalised padded flow chunk [B, H, A] from the policy's generator; RTC-guided when ``prefix``
        (normalised padded [B, P, A]) is given with ``delay`` >= 1."""
        cfg, model = self.model.config, self.model
        noise = torch.randn(batch.batch_size, cfg.action_horizon, cfg.action_dim, generator=self.generator)
        noise = noise.to(self.device)
        if prefix is None:
            return model.predict_actions(batch, self.num_steps, self.method, noise=noise)
        if (self.method or model.flow.solver) != "euler":
            raise ValueError(f"real-time chunking samples with Euler steps; this policy uses {self.method!r}")
        cache = model.prefix_forward(batch)
        dm = batch.dof_mask.to(noise.dtype)
        dm2 = dm if dm.dim() == 2 else dm[:, 0]

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            return model.flow_forward(x, t, cache, batch.dof_mask)

        steps = self.num_steps or model.flow.num_steps
        if self.rtc_mode == "prefix":
            x = prefix_sample(velocity, noise, prefix, delay, num_steps=steps, t1=model.flow.t_end)
        else:
            x = rtc_sample(
                velocity, noise, prefix, delay, beta=self.guidance_weight, num_steps=steps,
                t1=model.flow.t_end, dof_mask=dm2,
            )  # fmt: skip
        return x * (dm if dm.dim() == 3 else dm[:, None, :])

    def _discrete_chunk(self, batch: WallBatch) -> tuple[Tensor, Tensor]:
        """(normalised padded chunk [B, H, A] from action tokens, held bool [B]: rows to replace by the hold
        chunk); invalid rows retried, then handled by ``on_invalid``. Counts land in :attr:`discrete_counts`."""
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
            return norm, ~valid.cpu()
        rows = (~valid).nonzero()[:, 0]
        if self.on_invalid == "refuse":
            self.discrete_counts["refused"] += len(rows)
            raise UnsafeActionError(
                f"discrete decoding gave no valid chunk for {len(rows)} row(s) after "
                f"{self.discrete_retries} sampled retries; nothing was executed"
            )
        if self.on_invalid == "hold":
            self.discrete_counts["held"] += len(rows)
            return norm, ~valid.cpu()
        self.discrete_counts["flow_fallback"] += len(rows)
        norm[rows] = self._flow_chunk(batch)[rows.to(self.device)].to(norm)
        return norm, torch.zeros(len(valid), dtype=torch.bool)

    def infer(self, obs: dict[str, Any], prefix_actions: Any = None, delay: int = 0) -> dict[str, Any]:
        """One observation -> ``{"actions": float32 [H, A_robot]}``.

        ``prefix_actions`` [P, A_robot] (robot units; the previous chunk's actions that still run, aligned with
        the new chunk's steps 0..P-1, ``delay <= P <= H``) and ``delay`` d: the first d actions are guided to
        the prefix (real-time chunking). ``delay = 0`` (with or without a prefix) is plain sampling.
        """
        prefix = None if prefix_actions is None else np.asarray(prefix_actions, dtype=np.float32)[None]
        return {"actions": self.infer_batch([obs], prefix, delay)[0]}

    def reset(self) -> None:
        """Nothing to reset (the policy keeps no per-episode state)."""

    @property
    def key_map(self) -> dict[str, str]:
        """Sender names this policy's pipeline renames (openpi's ``observation/image`` ...) -> ours, for the
        server to apply before it checks an observation against :meth:`contract`."""
        try:
            return dict(self.pipeline.find(KeyMapping).rename)
        except KeyError:
            return {}

    # --- persistence -----------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``model.safetensors``, ``config.yaml`` (with ``format_version``), ``pipeline/`` and, last,
        ``checksums.json`` (sha256 of every file) into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_model(self.model, str(path / "model.safetensors"))
        OmegaConf.save(
            OmegaConf.create(
                {
                    "format_version": policy_checks.POLICY_FORMAT_VERSION,
                    "model": self.model.config.to_dict(),
                    "policy": {
                        "num_steps": self.num_steps,
                        "method": self.method,
                        "guidance_weight": self.guidance_weight,
                        "rtc_mode": self.rtc_mode,
                    },
                }
            ),
            path / "config.yaml",
        )
        self.pipeline.save_pretrained(path / "pipeline")
        policy_checks.write_checksums(path)
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        mode: str = "flow",
        verify_checksums: bool = True,
        max_num_steps: int = policy_checks.MAX_NUM_STEPS,
        **kw: Any,
    ) -> WallPolicy:
        """Load a folder written by :meth:`save_pretrained`; ``kw`` overrides the saved policy options.

        Checked first (``policy_checks.PolicyLoadError`` naming the file otherwise): checksums
        (``verify_checksums``), format version, a complete config, ``num_steps <= max_num_steps``, weights
        (names, shapes, float dtypes, finite), and the agreement of config, weights and pipeline.
        """
        model, pipeline, policy_kw = _load_parts(Path(path), verify_checksums, max_num_steps, kw)
        return cls(model, pipeline, mode=mode, **policy_kw)


def _load_parts(
    path: Path, verify_checksums: bool, max_num_steps: int, kw: dict[str, Any]
) -> tuple[WallVLA, Pipeline, dict[str, Any]]:
    """(model, pipeline, policy options) of a policy folder, every part checked (see ``from_pretrained``)."""
    policy_checks.verify_policy_folder(path, verify_checksums)
    model_cfg, policy_kw = policy_checks.read_policy_config(path / "config.yaml", max_num_steps, kw)
    try:
        cfg = WallVLAConfig.from_dict(model_cfg)
    except (KeyError, TypeError, ValueError) as e:
        raise policy_checks.PolicyLoadError(f"{path / 'config.yaml'}: invalid model config ({e})") from e
    model = WallVLA(cfg)
    policy_checks.load_weights(model, path / "model.safetensors")
    try:
        pipeline = Pipeline.from_pretrained(path / "pipeline")
    except Exception as e:  # a corrupt step file can raise anything; name the folder
        raise policy_checks.PolicyLoadError(
            f"{path / 'pipeline'} cannot be loaded ({type(e).__name__}: {e})"
        ) from e
    policy_contract.check_agreement(cfg, pipeline, str(path))
    return model, pipeline, policy_kw
