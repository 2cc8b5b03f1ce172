"""``build_pipeline``: the one constructor of the Wall pipeline, from a model (+ stats, tokenizers, robots)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import wall_data
import wall_tokenizer

from .base import PipelineKeyError
from .collate import Collate
from .images import ImageConversion
from .keys import ACTION, STATE, KeyMapping, ObservationContract
from .layout import NAN_IS_MISSING, CropToEmbodiment, PadToEmbodiment, embodiment_from_stats
from .normalize import Normalize, Unnormalize
from .normalize_ar import NormalizeAR
from .pipeline import Pipeline
from .relative import ToAbsoluteActions, ToRelativeActions
from .tokenize import DefaultPrompt, PromptTokenizer

if TYPE_CHECKING:
    from ..model import WallVLA

__all__ = ["build_pipeline"]


def _embodiments(
    stats: Mapping[str, Mapping[str, wall_data.FeatureStats]],
    given: Mapping[str, wall_data.EmbodimentSpec] | None,
) -> dict[str, wall_data.EmbodimentSpec]:
    robots = [ds for ds, f in stats.items() if ACTION in f or STATE in f]
    extra = sorted(set(given or {}) - set(robots))
    if extra:
        raise PipelineKeyError(
            f"embodiments given for {extra} but there are no stats for them; stats cover {robots}"
        )
    out = {}
    for ds in robots:
        spec = (given or {}).get(ds) or embodiment_from_stats(ds, stats[ds])
        for key, n in ((STATE, spec.state_dim), (ACTION, spec.action_dim)):
            have = len(stats[ds][key].q01) if key in stats[ds] else 0
            if have != n:
                raise ValueError(
                    f"dataset {ds!r}: embodiment {spec.name!r} has {n} {key} dims, its stats have {have}"
                )
        out[ds] = spec
    return out


def _check_action_tokenizer(model: WallVLA, action_tokenizer: wall_tokenizer.ActionTokenizer | None) -> None:
    """Raise if the action tokenizer has more ids than the model reserves (``num_action_tokens``)."""
    cfg = model.config
    if action_tokenizer is not None and action_tokenizer.vocab_size > cfg.num_action_tokens:
        raise ValueError(f"the action tokenizer has {action_tokenizer.vocab_size} ids but the model reserves "
                         f"num_action_tokens={cfg.num_action_tokens}; build the model with the tokenizer's size")  # fmt: skip


def _check_relative(
    relative: Mapping[str, wall_data.RelativeActions] | None, specs: Mapping[str, wall_data.EmbodimentSpec]
) -> None:
    """Raise if ``relative`` names datasets that are not robot datasets (keys of ``specs``)."""
    unknown = sorted(set(relative or {}) - set(specs))
    if unknown:
        raise PipelineKeyError(
            f"relative actions given for {unknown}, which are not robot datasets: {sorted(specs)}"
        )


def _ar_normalizer(
    given: NormalizeAR | None,
    action_tokenizer: wall_tokenizer.ActionTokenizer | None,
    robot_stats: Mapping[str, Mapping[str, wall_data.FeatureStats]],
    clamp: bool,
) -> NormalizeAR | None:
    """The AR normaliser: ``given``, else (with an action tokenizer) one from ``robot_stats``, else None.

    Raises if it lacks a range for one of the robot datasets (keys of ``robot_stats``).
    """
    if given is None and action_tokenizer is not None:
        given = NormalizeAR.from_stats(robot_stats, clamp=clamp)
    if given is not None:
        lacking = sorted(ds for ds in robot_stats if ds not in given.ranges)
        if lacking:
            raise PipelineKeyError(f"the AR normaliser has no range for dataset(s) {lacking}; it covers "
                                   f"{sorted(given.ranges)}. Build it from every robot's stats")  # fmt: skip
    return given


def _default_prompt(
    model: WallVLA,
    action_tokenizer: wall_tokenizer.ActionTokenizer | None,
    max_prompt_tokens: int,
    max_answer_tokens: int,
    on_long_answer: str,
) -> DefaultPrompt:
    """The :class:`DefaultPrompt` step for ``model`` (its image tokens per camera, host vocabulary, tokenizer)."""
    cfg, bb = model.config, model.backbone
    size = (cfg.image_size, cfg.image_size)
    return DefaultPrompt(
        bb.num_image_tokens(size), model.host_vocab_size, max_prompt_tokens, max_answer_tokens, on_long_answer,
        text_tokenizer=bb.tokenizer, action_tokenizer=action_tokenizer,
    )  # fmt: skip


def _robot_input_steps(
    model: WallVLA,
    specs: Mapping[str, wall_data.EmbodimentSpec],
    robot_stats: Mapping[str, Mapping[str, wall_data.FeatureStats]],
    ar_normalizer: NormalizeAR | None,
    relative: Mapping[str, wall_data.RelativeActions] | None,
    norm_mode: str,
    clamp: bool,
) -> list:
    """The input steps between KeyMapping and the prompt step: ObservationContract -> (ToRelativeActions) ->
    ImageConversion -> (NormalizeAR) -> Normalize -> PadToEmbodiment."""
    cfg = model.config
    robots = {ds: {"state_dim": s.state_dim, "action_dim": s.action_dim,
                   "nan_is_missing": bool(s.meta.get(NAN_IS_MISSING))} for ds, s in specs.items()}  # fmt: skip
    return [
        ObservationContract(cfg.cameras, cfg.action_horizon, robots),
        *([ToRelativeActions(relative)] if relative else []),
        ImageConversion(cfg.cameras, (cfg.image_size, cfg.image_size)),
        *([ar_normalizer] if ar_normalizer is not None else []),
        Normalize(robot_stats, mode=norm_mode, clamp=clamp),
        PadToEmbodiment(cfg.state_dim, cfg.action_dim, cfg.action_horizon, specs),
    ]


def _output_steps(
    model: WallVLA,
    specs: Mapping[str, wall_data.EmbodimentSpec],
    robot_stats: Mapping[str, Mapping[str, wall_data.FeatureStats]],
    relative: Mapping[str, wall_data.RelativeActions] | None,
    norm_mode: str,
) -> list:
    """The output steps: CropToEmbodiment -> Unnormalize -> (ToAbsoluteActions, with ``relative``)."""
    cfg = model.config
    return [
        CropToEmbodiment(cfg.state_dim, cfg.action_dim, specs),
        Unnormalize(robot_stats, mode=norm_mode),
        *([ToAbsoluteActions(relative)] if relative else []),
    ]


def build_pipeline(
    model: WallVLA,
    *,
    stats: Mapping[str, Mapping[str, wall_data.FeatureStats]],
    action_tokenizer: wall_tokenizer.ActionTokenizer | None = None,
    embodiments: Mapping[str, wall_data.EmbodimentSpec] | None = None,
    key_maps: Sequence[str] = ("lerobot", "openpi"),
    default_dataset: str | None = None,
    norm_mode: str = "quantile",
    clamp: bool = True,
    max_prompt_tokens: int = 96,
    max_answer_tokens: int = 256,
    on_long_answer: str = "skip",
    prompt: PromptTokenizer | None = None,
    ar_normalizer: NormalizeAR | None = None,
    relative: Mapping[str, wall_data.RelativeActions] | None = None,
) -> Pipeline:
    """The whole pre/post-processing of a :class:`WallVLA`.

    Args:
        model: gives cameras, image size, padded widths, action horizon (its config), the text tokenizer,
            image tokens per camera and the host vocabulary size (its backbone).
        stats: ``{dataset: {feature: FeatureStats}}``, one entry per robot dataset (``observation.state`` and
            ``action``); samples are normalised with their own dataset's stats.
        action_tokenizer: discrete action tokenizer (fitted on normalised actions) or None.
        embodiments: ``{dataset: EmbodimentSpec}``; a dataset without one gets a spec packed from index 0,
            sized from its stats.
        key_maps: built-in key maps to apply (``lerobot``, ``openpi``).
        default_dataset: dataset of robot observations naming none; default: the only robot, if there is one.
        norm_mode, clamp: normalisation rule (see :mod:`wall_core.processing.normalize`).
        max_prompt_tokens, max_answer_tokens, on_long_answer: text limits in tokens (see :class:`DefaultPrompt`).
        prompt: a tokenisation step replacing :class:`DefaultPrompt` (another prompt format).
        ar_normalizer: the discrete branch's own normaliser (:class:`NormalizeAR`), covering every robot
            dataset; default (with an action tokenizer): ``NormalizeAR.from_stats(stats)``, i.e. the flow
            normaliser's q01/q99, so the discrete targets are unchanged (the paper does not say what the
            release's AR normaliser holds). The tokenizer must have been fitted on its output.
        relative: ``{dataset: RelativeActions}`` for datasets trained on delta-from-state actions (their
            ``stats["action"]`` must be relative-chunk stats, see :func:`~wall_core.processing.relative_stats`).

    Returns: a :class:`Pipeline` with inputs KeyMapping -> ObservationContract -> (ToRelativeActions, with
    ``relative``) -> ImageConversion -> [NormalizeAR, with an action tokenizer] -> Normalize ->
    PadToEmbodiment -> (prompt step) -> Collate, and outputs CropToEmbodiment -> Unnormalize ->
    (ToAbsoluteActions).
    """
    _check_action_tokenizer(model, action_tokenizer)
    specs = _embodiments(stats, embodiments)
    _check_relative(relative, specs)
    if default_dataset is None and len(specs) == 1:
        default_dataset = next(iter(specs))
    robot_stats = {ds: stats[ds] for ds in specs}
    ar_normalizer = _ar_normalizer(ar_normalizer, action_tokenizer, robot_stats, clamp)
    limits = (max_prompt_tokens, max_answer_tokens, on_long_answer)
    tok = prompt or _default_prompt(model, action_tokenizer, *limits)  # built first: its errors come first
    inputs = [
        KeyMapping.from_presets(key_maps, model.config.cameras, default_dataset),
        *_robot_input_steps(model, specs, robot_stats, ar_normalizer, relative, norm_mode, clamp),
        tok,
        Collate(model.backbone.token_id("<|pad|>")),
    ]
    return Pipeline(inputs, _output_steps(model, specs, robot_stats, relative, norm_mode))
