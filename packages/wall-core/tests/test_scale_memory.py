"""The memory budget's code predicts a small wall-oss-0.5 model's measured training peak within 15%.

Measurement: torch's ``MemTracker`` (torch.distributed._tools) counts every tensor storage alive on the CPU
by category (parameters, gradients, optimiser state, activations, temporaries) through a dispatch mode
and module hooks, so its peak is the tensor-memory peak of the step itself, without the Python heap or
allocator caching that an RSS delta would mix in. It tracks the second step (the first creates the
AdamW state). Measured: fp32 99.4% and bf16-true 99.0% of the prediction at batch 8; fp32 with the real
activation-checkpointing switch (``WallVLA.set_activation_checkpointing``) 101.8% (33.3 MB measured against
75.2 MB without; activations + the recompute's temporaries 92.5% of the predicted activations).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from torch.distributed._tools.mem_tracker import MemTracker

from wall_core.model import WallVLA
from wall_core.model.presets import wall_oss_05_config
from wall_core.objective import WallObjective
from wall_core.training.memory import (
    Regime,
    activation_bytes,
    activation_costs,
    peak_bytes,
    state_bytes,
    synthetic_batch,
)
from wall_core.training.optim import OptimConfig, build_optimizer
from wall_core.training.precision import apply_precision_policy

_spec = importlib.util.spec_from_file_location(
    "mem_conftest", Path(__file__).parent / "model" / "conftest.py"
)
_mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mc)
SHAPE = dict(cameras=2, image_size=112, text_tokens=32, action_tokens=16)


def _small_author() -> dict:
    """The tiny released-architecture config, 4 layers / 4 vision blocks (2 full), widths 128 / 64."""
    a = copy.deepcopy(_mc.TINY_AUTHOR)
    a.update(
        hidden_size=128, intermediate_size=256, num_hidden_layers=4, dim_inputs=[128, 64], action_hidden_size=64,
        experts=[{"hidden_size": 128, "intermediate_size": 256}, {"hidden_size": 64, "intermediate_size": 128}],
        rope_scaling={"type": "mrope", "mrope_section": [4, 6, 6]},
    )  # fmt: skip
    a["vision_config"] = {**a["vision_config"], "depth": 4, "hidden_size": 64, "intermediate_size": 128,
                          "out_hidden_size": 128, "fullatt_block_indexes": [1, 3]}  # fmt: skip
    return a


@pytest.mark.parametrize("weights,ckpt", [("fp32", False), ("bf16", False), ("fp32", True)])
def test_predicted_peak_matches_measured_within_15_percent(weights, ckpt):
    author, regime, b = _small_author(), Regime(weights, weights=weights), 8
    torch.manual_seed(0)
    model = WallVLA(wall_oss_05_config(author)).train()
    if weights == "bf16":
        apply_precision_policy(model)
    states = state_bytes(model, regime)
    act = activation_bytes(author, regime, activation_costs(author, regime, **SHAPE), b, ckpt, **SHAPE)
    model.set_activation_checkpointing(ckpt)
    predicted = peak_bytes(states, act)

    batch = synthetic_batch(model, b, **SHAPE)
    opt, _ = build_optimizer(model, OptimConfig(warmup_steps=0))
    objective = WallObjective(1.0, 1.0, 1.0)

    def step() -> None:
        objective(model, batch, generator=torch.Generator().manual_seed(0)).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # creates the optimiser state
    tracker = MemTracker()
    tracker.track_external(model, opt)
    with tracker:
        step()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    measured = peak["Total"]
    assert abs(predicted / measured - 1) < 0.15, (predicted, measured)
    if not ckpt:  # activations dominate this check: it tests their count, not only the states
        assert act > 0.5 * measured
    kinds = {str(k.value) if hasattr(k, "value") else str(k): v for k, v in peak.items()}
    # with checkpointing the peak is in backward, where the recomputed layer's tensors count as "Temp"
    held = kinds["Activation"] + (kinds["Temp"] if ckpt else 0)
    assert abs(held / act - 1) < 0.15, (kinds, act)
    assert abs(kinds["Optstate"] / states["optimizer"] - 1) < 0.05
