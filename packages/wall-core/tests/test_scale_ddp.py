"""Data parallelism through Lightning: 2 CPU processes (DDP over gloo) against one process with the same
global batch, and checkpoints saved under DDP resumed in one process and under DDP.

Tolerances. The two runs see the same samples with the same per-sample flow noise and times
(``trainer.flow_noise=sample``), so they differ only in fp32 summation order: DDP averages two 2-row
gradients (gloo all-reduce) where one process reduces 4 rows at once. Losses then agree to ~1e-7 relative
(checked at rtol 1e-5). Weights after 4 AdamW steps (lr 1e-3) agree to 1.2e-5 (measured): AdamW divides
each gradient by its running RMS, so an element whose gradient is near zero turns a rounding-level gradient
difference into an update difference of up to lr per step; we check atol 5e-5 (5% of one step's largest
update) with rtol 0. A DDP run resumed under DDP repeats the same arithmetic, so it is checked bit for bit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wall_core.training.module import rescale_loader_position, row_generators

WORKER = Path(__file__).parent / "dist_worker.py"
_spec = importlib.util.spec_from_file_location("dist_worker", WORKER)
_worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_worker)


def _run(data: Path, out: Path, devices: int, *extra: str) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """One worker run (global batch 4 = devices x per-process batch) -> (history, exported weights)."""
    args = [str(data), str(out), "--devices", str(devices), "--batch-size", str(4 // devices), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(WORKER), *args], cwd=out.parent, env=env, capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads((out / "history.json").read_text()), load_file(str(out / "policy/model.safetensors"))


def _losses(history: list[dict]) -> list[float]:
    return [h["loss"] for h in history]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow  # about 3 minutes on the shared 2-core machine: 6 processes start torch + Lightning
def test_ddp_matches_one_process_and_resumes_both_ways(tmp_path):
    data = _worker.make_toy(tmp_path / "toy")
    h1, w1 = _run(data, tmp_path / "single", 1)
    h2, w2 = _run(data, tmp_path / "ddp", 2, "--save-at", "2")
    assert [h["step"] for h in h2] == [0, 1, 2, 3]
    torch.testing.assert_close(torch.tensor(_losses(h2)), torch.tensor(_losses(h1)), rtol=1e-5, atol=0)
    assert 0 < _max_diff(w1, w2) <= 5e-5  # not bitwise (different reduction order), but within AdamW's bound
    ckpt = str(tmp_path / "ddp" / "step2.ckpt")
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2 and saved["wall_world_size"] == 2

    h3, w3 = _run(data, tmp_path / "resumed_ddp", 2, "--resume", ckpt)
    assert [h["step"] for h in h3] == [2, 3] and _losses(h3) == _losses(h2)[2:]
    assert _max_diff(w3, w2) == 0.0  # DDP -> DDP: bit for bit

    h4, w4 = _run(data, tmp_path / "resumed_single", 1, "--resume", ckpt)
    assert [h["step"] for h in h4] == [2, 3]  # continues the same sample stream (loader position x 2 / 1)
    torch.testing.assert_close(torch.tensor(_losses(h4)), torch.tensor(_losses(h2)[2:]), rtol=1e-5, atol=0)
    assert _max_diff(w4, w2) <= 5e-5 and _max_diff(w4, w1) <= 5e-5


@pytest.mark.slow  # about 2 minutes: 5 processes
def test_ddp_with_uneven_denominators_matches_one_process(tmp_path):
    """FAST token counts and valid flow elements differ between the ranks; the objective divides by their
    mean over the ranks, so DDP still matches one process (same tolerances as above). With each rank's own
    denominators (``trainer.global_loss_denominators=false``) it does not. Measured: losses 9e-8 relative and
    weights 2.0e-5 from one process; with own denominators 9.4% and 5.9e-3."""
    data = _worker.make_toy(tmp_path / "toy")
    h1, w1 = _run(data, tmp_path / "single", 1, "--uneven")
    h2, w2 = _run(data, tmp_path / "ddp", 2, "--uneven")
    torch.testing.assert_close(torch.tensor(_losses(h2)), torch.tensor(_losses(h1)), rtol=1e-5, atol=0)
    assert _max_diff(w1, w2) <= 5e-5
    h3, w3 = _run(data, tmp_path / "ddp_local", 2, "--uneven", "--local-denominators")
    rel = max(abs(a - b) / abs(b) for a, b in zip(_losses(h3), _losses(h1)))
    assert rel > 1e-3 and _max_diff(w1, w3) > 10 * max(_max_diff(w1, w2), 1e-6), (rel, _max_diff(w1, w3))


def test_per_row_generators_do_not_depend_on_the_batch_split():
    """What a 2-rank split draws (rows 0, 2 | 1, 3) equals what one process draws for the same rows."""
    import wall_flow

    fm = wall_flow.FlowMatching(rtc_max_delay=2)
    x1 = torch.randn(4, 5, 3)
    whole = fm.draw(x1, generator=row_generators(7, 3, [0, 1, 2, 3]))
    for r in (0, 1):
        part = fm.draw(x1[r::2], generator=row_generators(7, 3, [r, r + 2]))
        for f in ("t", "x0", "x_t", "prefix_mask"):
            assert torch.equal(getattr(part, f), getattr(whole, f)[r::2]), f
    batch = fm.draw(x1, generator=torch.Generator().manual_seed(0))  # one generator: the default, unchanged
    again = fm.draw(x1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(batch.x0, again.x0) and not torch.equal(batch.x0[2:], whole.x0[2:])
    with pytest.raises(ValueError, match="3 per-row generators for a batch of 4"):
        fm.draw(x1, generator=row_generators(7, 3, [0, 1, 2]))


def test_loader_position_rescales_between_process_counts():
    ckpt = {
        "loops": {
            "fit_loop": {"state_dict": {"combined_loader": [{"_sampler_iter_state": {"samples_yielded": 4}}]}}
        }
    }
    rescale_loader_position(ckpt, 2, 1)  # 2 processes read 4 samples each = 8 for one process
    pos = ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["_sampler_iter_state"]
    assert pos["samples_yielded"] == 8
    rescale_loader_position(ckpt, 1, 4)
    assert pos["samples_yielded"] == 2
    with pytest.raises(ValueError, match="do not split over 3 processes"):
        rescale_loader_position(ckpt, 4, 3)


@pytest.mark.slow  # about 2 minutes on the shared machine: 3 processes start torch + Lightning
def test_fsdp2_matches_one_process_and_consolidates_to_the_unsharded_weights(tmp_path):
    """FSDP2 (ModelParallelStrategy, per-layer fully_shard) over gloo on 2 CPU processes: same losses and
    weights as one process (the DDP tolerances: it reduce-scatters where DDP all-reduces; measured 2.3e-5);
    its sharded checkpoint, consolidated in one process, equals the gathered full state dict bit for bit."""
    from wall_core.model import WallVLA
    from wall_core.policy import WallPolicy
    from wall_core.training.fsdp import consolidate_checkpoint

    data = _worker.make_toy(tmp_path / "toy")
    h1, w1 = _run(data, tmp_path / "single", 1)
    h2, w2 = _run(data, tmp_path / "fsdp", 2, "--strategy", "fsdp2")
    torch.testing.assert_close(torch.tensor(_losses(h2)), torch.tensor(_losses(h1)), rtol=1e-5, atol=0)
    assert 0 < _max_diff(w1, w2) <= 5e-5
    shards = tmp_path / "fsdp" / "checkpoints" / "last.ckpt"
    assert shards.is_dir() and len(list(shards.glob("*.distcp"))) == 2  # one shard file per rank
    config = WallPolicy.from_pretrained(tmp_path / "fsdp" / "policy").model.config
    file = consolidate_checkpoint(shards, WallVLA(config), tmp_path / "consolidated")
    assert _max_diff(load_file(str(file)), w2) == 0.0
    with pytest.raises(FileNotFoundError, match="not a sharded"):
        consolidate_checkpoint(tmp_path / "single", WallVLA(config))


@pytest.mark.slow  # about 3 minutes on the shared machine: 5 processes start torch + Lightning
def test_fsdp2_bf16_keeps_fp32_modules_and_its_sharded_checkpoint_resumes_exactly(tmp_path):
    """FSDP2 with ``trainer.precision=bf16-mixed`` (FSDP2's MixedPrecisionPolicy) and activation checkpointing
    on: the norms and the action/state paths compute in fp32, the linear layers in bf16 (input dtypes probed
    in the first step); losses within rtol 2e-3 of a one-process fp32 run (bf16 keeps 8 mantissa bits, one
    rounding is up to 3.9e-3 relative; measured 2.2e-4). The sharded checkpoint saved after step 2 (a folder
    of .distcp shards + meta.pt) resumed under FSDP2 with checkpointing off gives the uninterrupted run's
    losses and weights bit for bit: resume is exact and checkpointing changes no value under FSDP2."""
    data = _worker.make_toy(tmp_path / "toy")
    h1, _ = _run(data, tmp_path / "single", 1)
    bf16 = ["--strategy", "fsdp2", "--precision", "bf16-mixed"]
    h2, w2 = _run(
        data, tmp_path / "fsdp", 2, *bf16, "--activation-checkpointing", "--save-at", "2", "--probe-dtypes"
    )
    seen = json.loads((tmp_path / "fsdp" / "dtypes.json").read_text())
    fp32 = ("input_layernorm", "norm_in", "proj_in", "proj_out", "state_proj")
    assert len(seen) == 7 and all(
        v == ("torch.float32" if k.endswith(fp32) else "torch.bfloat16") for k, v in seen.items()
    ), seen
    torch.testing.assert_close(torch.tensor(_losses(h2)), torch.tensor(_losses(h1)), rtol=2e-3, atol=0)
    assert all(v.dtype == torch.float32 for v in w2.values())  # the sharded (optimiser) copy stayed fp32
    shards = tmp_path / "fsdp" / "step2.ckpt"
    assert len(list(shards.glob("*.distcp"))) == 2 and (shards / "meta.pt").is_file()
    h3, w3 = _run(data, tmp_path / "resumed", 2, *bf16, "--resume", str(shards))
    assert [h["step"] for h in h3] == [2, 3] and _losses(h3) == _losses(h2)[2:]
    assert _max_diff(w3, w2) == 0.0
