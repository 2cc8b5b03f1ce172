"""FSDP2 settings that need no process group: the mixed-precision policies a precision string selects, and
resuming from a sharded checkpoint folder (path, integrity and config checks). The 2-process runs are in
test_scale_ddp.py (slow)."""

from __future__ import annotations

import pytest
import torch

from wall_core.training import TrainConfig, load_config, train
from wall_core.training.checkpoint_io import verify_checkpoint
from wall_core.training.fsdp import precision_policies
from wall_core.training.guards import check_resume_path
from wall_core.training.resume import CONFIG_KEY, check_resume_config, config_text


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
