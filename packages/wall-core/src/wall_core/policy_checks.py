"""Integrity of a :class:`~wall_core.policy.WallPolicy` folder: format version, per-file checksums, a complete
config, weights of the right dtypes and shapes with finite values.

A policy folder (written by ``WallPolicy.save_pretrained`` or by ``wall convert --to ours``)::

    config.yaml          {format_version: 1, model: {every WallVLAConfig field}, policy: {num_steps, method, ...}}
    model.safetensors    the model's tensors
    pipeline/            the processing pipeline (see wall_core.processing.base)
    checksums.json       {"algorithm": "sha256", "files": {relative path: sha256}} of everything above

Loading checks, in order: the checksums (an error names the file that changed, is missing or is not listed),
the config (known format version, every model key present, ``num_steps`` at most ``max_num_steps``), then the
weights (a safetensors file whose tensors have the model's names, shapes and floating dtypes; integer weights
are refused, never cast; NaN/inf refused). Every failure is a :class:`PolicyLoadError` naming the file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model

from wall_data.integrity import sha256_file

from .model import WallVLA, WallVLAConfig

__all__ = [
    "CHECKSUMS",
    "MAX_NUM_STEPS",
    "POLICY_FORMAT_VERSION",
    "PolicyLoadError",
    "load_weights",
    "read_policy_config",
    "verify_policy_folder",
    "write_checksums",
]
logger = logging.getLogger(__name__)

POLICY_FORMAT_VERSION = 1
CHECKSUMS = "checksums.json"
MAX_NUM_STEPS = 1000  # Euler steps per chunk; more holds the inference lock for minutes
REQUIRED = ("config.yaml", "model.safetensors", "pipeline/pipeline.json")
POLICY_KEYS: dict[str, type | tuple[type, ...]] = {
    "num_steps": int,
    "method": str,
    "check_actions": bool,
    "action_margin": (int, float),
    "guidance_weight": (int, float),
    "rtc_mode": str,
}
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


class PolicyLoadError(ValueError):
    """A policy folder is incomplete, corrupt or inconsistent; the message names the file and the fix."""


def _covered(folder: Path) -> list[str]:
    """Relative paths of the files a load reads: config, weights and everything under ``pipeline/``."""
    files = [f for f in ("config.yaml", "model.safetensors") if (folder / f).is_file()]
    pipe = folder / "pipeline"
    if pipe.is_dir():
        files += sorted(p.relative_to(folder).as_posix() for p in pipe.rglob("*") if p.is_file())
    return files


def write_checksums(folder: str | Path) -> Path:
    """Write ``folder/checksums.json`` with the sha256 of the config, the weights and every pipeline file;
    returns its path. Call it last, after every other file of the folder is written."""
    folder = Path(folder)
    files = {rel: sha256_file(folder / rel) for rel in _covered(folder)}
    out = folder / CHECKSUMS
    tmp = out.with_name(CHECKSUMS + ".tmp")
    tmp.write_text(json.dumps({"algorithm": "sha256", "files": files}, indent=1, sort_keys=True))
    tmp.replace(out)
    return out


def _manifest(folder: Path) -> dict[str, str]:
    path = folder / CHECKSUMS
    if not path.is_file():
        raise PolicyLoadError(
            f"{path} not found: the folder has no checksums, so corruption cannot be detected. Re-save it with "
            "WallPolicy.save_pretrained (or load it with verify_checksums=False if you trust every file)"
        )
    try:
        man = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PolicyLoadError(f"{path} is not valid JSON ({e}); re-save the policy folder") from e
    files = man.get("files") if isinstance(man, dict) else None
    if not isinstance(man, dict) or man.get("algorithm") != "sha256" or not isinstance(files, dict):
        raise PolicyLoadError(f"{path} is not a checksum manifest (needs algorithm 'sha256' and 'files')")
    return {str(k): str(v) for k, v in files.items()}


def verify_policy_folder(folder: str | Path, verify_checksums: bool = True) -> None:
    """Raise :class:`PolicyLoadError` unless ``folder`` has the required files and (``verify_checksums``)
    every file a load reads matches ``checksums.json``: a changed, missing or unlisted file is named."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"policy folder {folder} does not exist")
    missing = [f for f in REQUIRED if not (folder / f).is_file()]
    if missing:
        raise PolicyLoadError(
            f"{folder} lacks {missing}: not a WallPolicy folder (see WallPolicy.save_pretrained)"
        )
    if not verify_checksums:
        logger.warning("loading %s without verifying its checksums (verify_checksums=False)", folder)
        return
    known = _manifest(folder)
    for rel in _covered(folder):
        if rel not in known:
            raise PolicyLoadError(
                f"{folder / rel} is not listed in {CHECKSUMS} (added after the folder was written?); remove it "
                "or re-save the policy"
            )
        if sha256_file(folder / rel) != known[rel]:
            raise PolicyLoadError(
                f"{folder / rel}: sha256 differs from {CHECKSUMS}: the file changed after it was written (bit rot, "
                "a partial copy or an edit); copy it again or re-save the policy"
            )
    gone = sorted(rel for rel in known if not (folder / rel).is_file())
    if gone:
        raise PolicyLoadError(f"{folder}: files listed in {CHECKSUMS} are missing: {gone[:10]}")


def _load_yaml(path: Path) -> Any:
    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:  # YAML syntax, bad bytes, interpolation: OmegaConf raises many types
        raise PolicyLoadError(f"{path} cannot be read as YAML ({type(e).__name__}: {e})") from e


def _check_num_steps(value: Any, where: str, max_num_steps: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_num_steps:
        raise PolicyLoadError(
            f"{where} is {value!r}; it must be an integer in [1, {max_num_steps}] (max_num_steps caps the Euler "
            "steps per chunk; raise it explicitly to allow more)"
        )


def read_policy_config(
    path: str | Path, max_num_steps: int = MAX_NUM_STEPS, overrides: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``config.yaml`` -> (model config dict, policy options with ``overrides`` applied), checked.

    Errors (:class:`PolicyLoadError`, naming the file): unknown or missing ``format_version``, a model section
    missing any :class:`WallVLAConfig` key (never filled with defaults), unknown policy keys or wrong types,
    ``num_steps`` outside [1, ``max_num_steps``].
    """
    path = Path(path)
    cfg = _load_yaml(path)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise PolicyLoadError(f"{path} must be a mapping with a 'model' section")
    version = cfg.get("format_version")
    if version != POLICY_FORMAT_VERSION:
        what = "has no format_version" if version is None else f"has format_version {version!r}"
        raise PolicyLoadError(
            f"{path} {what}; this wall_core reads policy folders of format_version {POLICY_FORMAT_VERSION}. "
            "Re-save the folder with this version's WallPolicy.save_pretrained, or upgrade wall-core"
        )
    model = dict(cfg["model"])
    missing = sorted(set(WallVLAConfig.__dataclass_fields__) - set(model))
    if missing:
        raise PolicyLoadError(
            f"{path}: the model section lacks {missing}; every WallVLAConfig key must be written (missing keys "
            "are not filled with defaults, which may differ from what the weights were trained with)"
        )
    policy = dict(cfg.get("policy") or {})
    policy.update(overrides or {})
    unknown = sorted(k for k in cfg.get("policy") or {} if k not in POLICY_KEYS)
    bad = [k for k, t in POLICY_KEYS.items() if k in policy and not isinstance(policy[k], t)]
    if unknown or bad:
        raise PolicyLoadError(f"{path}: policy section has unknown keys {unknown} or wrong types for {bad}")
    _check_num_steps(model.get("num_steps"), f"{path}: model.num_steps", max_num_steps)
    if "num_steps" in policy:
        _check_num_steps(policy["num_steps"], f"{path}: policy.num_steps", max_num_steps)
    return model, policy


def _header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """{name: (safetensors dtype, shape)} of a safetensors file, or PolicyLoadError naming it."""
    try:
        with safe_open(str(path), "pt") as f:
            return {k: (f.get_slice(k).get_dtype(), list(f.get_slice(k).get_shape())) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as e:
        raise PolicyLoadError(
            f"{path} is not a readable safetensors file ({e}); it is truncated, empty or of another format"
        ) from e


def load_weights(model: WallVLA, path: str | Path) -> None:
    """Load ``path`` (safetensors) into ``model`` after checking names, shapes and dtypes; then refuse NaN/inf.

    Integer or bool tensors where the model holds floats are refused (never cast). Raises
    :class:`PolicyLoadError` naming the file and the first tensors at fault.
    """
    path = Path(path)
    header = _header(path)
    want = model.state_dict()
    stored = {want[k].untyped_storage().data_ptr() for k in header if k in want}
    # a tied tensor (lm_head sharing the embedding) is saved once, under one of its names
    missing = sorted(k for k in set(want) - set(header) if want[k].untyped_storage().data_ptr() not in stored)
    unexpected = sorted(set(header) - set(want))
    if missing or unexpected:
        raise PolicyLoadError(
            f"{path} does not match the model of config.yaml: missing {missing[:5]} ({len(missing)}), unexpected "
            f"{unexpected[:5]} ({len(unexpected)}); the config and the weights come from different models"
        )
    shapes = [k for k, (_, shape) in header.items() if list(want[k].shape) != shape]
    if shapes:
        k = shapes[0]
        raise PolicyLoadError(
            f"{path}: {len(shapes)} tensor(s) have other shapes than the model's, e.g. {k} {header[k][1]} vs "
            f"{list(want[k].shape)}; the config and the weights come from different models"
        )
    ints = [k for k, (dt, _) in header.items() if dt not in _FLOAT_DTYPES and want[k].is_floating_point()]
    if ints:
        raise PolicyLoadError(
            f"{path}: {len(ints)} tensor(s) are not floating point, e.g. {ints[0]} is {header[ints[0]][0]}; "
            "integer weights are refused, not cast (the file was not written by WallPolicy.save_pretrained)"
        )
    try:
        load_model(model, str(path), strict=True)
    except (SafetensorError, RuntimeError, OSError) as e:
        raise PolicyLoadError(f"{path} cannot be loaded ({type(e).__name__}: {e})") from e
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise PolicyLoadError(
            f"{path}: {len(bad)} tensor(s) hold NaN/inf, e.g. {bad[:5]}; the weights are corrupt or came from a "
            "diverged run. Export from an earlier checkpoint"
        )
