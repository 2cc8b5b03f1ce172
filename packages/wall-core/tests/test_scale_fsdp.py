"""FSDP2 without a second process: the mixed-precision policies a precision string selects, resuming from a
sharded checkpoint folder (path, integrity and config checks), and FSDP2 on a 1-process gloo group (real
hooks, casts and DTensors) for bf16 dtypes and activation checkpointing on the released geometry. The
2-process runs are in test_scale_ddp.py (slow)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from wall_core.training import TrainConfig, load_config, train
from wall_core.training.checkpoint_io import verify_checkpoint
from wall_core.training.fsdp import precision_policies
from wall_core.training.guards import check_resume_path
from wall_core.training.resume import CONFIG_KEY, check_resume_config, config_text

_spec = importlib.util.spec_from_file_location(
    "fsdp_conftest", Path(__file__).parent / "model" / "conftest.py"
)
_mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mc)


def test_bf16_under_fsdp2_selects_bf16_units_and_fp32_modules():
    assert precision_policies("32-true") == {}
    for precision in ("bf16-mixed", "bf16-true"):
        p = precision_policies(precision)
        assert (p["unit"].param_dtype, p["unit"].reduce_dtype) == (torch.bfloat16, torch.float32)
        assert p["unit"].cast_forward_inputs and not p["root"].cast_forward_inputs  # batches stay fp32
        assert (p["fp32"].param_dtype, p["fp32"].output_dtype) == (torch.float32, torch.bfloat16)
        assert (p["fp32_out"].param_dtype, p["fp32_out"].output_dtype) == (torch.float32, None)
    with pytest.raises(ValueError, match="'16-mixed' under fsdp2"):
        precision_policies("16-mixed")


def _sharded_folder(tmp_path, cfg: TrainConfig):
    """A folder laid out as Lightning's ModelParallelStrategy writes it (shards + meta.pt)."""
    folder = tmp_path / "last.ckpt"
    folder.mkdir()
    (folder / "__0_0.distcp").write_bytes(b"")
    torch.save({"global_step": 2, CONFIG_KEY: config_text(cfg)}, folder / "meta.pt")
    return folder


def test_a_sharded_folder_resumes_with_its_config_checked(tmp_path):
    cfg = load_config(None, ["trainer.strategy=fsdp2", "trainer.devices=2"])
    folder = _sharded_folder(tmp_path, cfg)
    assert check_resume_path(folder) == folder
    with pytest.raises(ValueError, match="sharded .* no .sha256; set resume_verify=false"):
        verify_checkpoint(folder, required=True)
    verify_checkpoint(folder, required=False)  # a warning only
    single = load_config(
        None, [f"resume={folder}", "resume_verify=false"]
    )  # strategy auto: cannot load shards
    with pytest.raises(
        ValueError, match="sharded .fsdp2. checkpoint folder: resume it with trainer.strategy=fsdp2"
    ):
        train(single)
    assert check_resume_config(folder, cfg) == []
    changed = load_config(None, ["trainer.strategy=fsdp2", "trainer.devices=2", "optim.lr=0.5"])
    with pytest.raises(ValueError, match="optim.lr"):
        check_resume_config(folder, changed)
    (folder / "meta.pt").unlink()  # a folder without Lightning's metadata is no checkpoint
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_resume_path(folder)


@pytest.fixture
def one_process_group(tmp_path):
    """A 1-process gloo group and its 1-D mesh (FSDP2 on one rank: the hooks, casts and DTensors of a real
    run, the sharding trivial), torn down afterwards."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def _released_step(mesh, precision: str, checkpointing: bool, probe: tuple[str, ...] = ()):
    """The tiny wall-oss-0.5 model (Qwen2.5-VL tower) sharded with ``precision``: one forward + backward ->
    (loss, {param: local grad}, {probed module: input dtype})."""
    from wall_core.model import WallVLA
    from wall_core.model.presets import wall_oss_05_config
    from wall_core.objective import WallObjective
    from wall_core.training.fsdp import shard_model
    from wall_core.training.memory import synthetic_batch

    torch.manual_seed(0)
    model = WallVLA(wall_oss_05_config(_mc.TINY_AUTHOR)).train()
    batch = synthetic_batch(model, 2, cameras=1, image_size=56, text_tokens=8, action_tokens=4)
    model.set_activation_checkpointing(checkpointing)
    shard_model(model, mesh, precision)
    seen: dict[str, torch.dtype] = {}

    def record(name: str):
        def pre(_m, args) -> None:
            seen.setdefault(name, args[0].dtype)

        return pre

    for name, m in model.named_modules():
        if name.endswith(probe):
            m.register_forward_pre_hook(record(name))
    loss = WallObjective(1.0, 1.0, 1.0)(model, batch, generator=torch.Generator().manual_seed(0)).loss
    loss.backward()
    grads = {n: p.grad.to_local().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, seen


def test_fsdp2_bf16_and_checkpointing_on_the_released_geometry(one_process_group):
    """Under FSDP2: checkpointing leaves the fp32 loss and gradients unchanged (1e-6, as without FSDP); bf16
    runs the Qwen vision blocks' and decoder's norms and the action/state paths in fp32 and their linear
    layers in bf16, its loss within 2e-3 relative of fp32 (measured 2.4e-5: one step, random weights)."""
    loss0, grads0, _ = _released_step(one_process_group, "32-true", False)
    loss1, grads1, _ = _released_step(one_process_group, "32-true", True)
    torch.testing.assert_close(loss1, loss0, atol=1e-6, rtol=0)
    assert grads1.keys() == grads0.keys() and len(grads0) > 0
    for name, g in grads0.items():
        torch.testing.assert_close(grads1[name], g, atol=1e-6, rtol=0, msg=name)
    probe = ("blocks.0.norm1", "blocks.0.attn.qkv", "layers.0.input_layernorm", "layers.0.self_attn.q_proj",
             "expert.layers.0.norm_in", "expert.layers.0.qkv_proj", "expert.proj_in", "expert.proj_out")  # fmt: skip
    loss2, grads2, seen = _released_step(one_process_group, "bf16-mixed", True, probe)
    assert len(seen) == len(probe)
    fp32 = ("norm1", "input_layernorm", "norm_in", "proj_in", "proj_out")
    assert {
        n: d == (torch.float32 if n.endswith(fp32) else torch.bfloat16) for n, d in seen.items()
    } == dict.fromkeys(seen, True), seen
    torch.testing.assert_close(loss2, loss0, rtol=2e-3, atol=0)
    assert all(torch.isfinite(g).all() and g.dtype == torch.float32 for g in grads2.values())
