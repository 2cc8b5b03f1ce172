"""``lora:`` in the training config: train() adapts the model, only adapters + action/state paths move, and the
exported policy is the merged plain model (loads without peft, acts as the adapted one)."""

import copy
import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import torch

import wall_data as wd
from wall_core.policy import WallPolicy
from wall_core.training import load_config, train
from wall_core.training.lora import FULL_TRAIN

pytest.importorskip("peft")


class _Snapshots(L.Callback):
    """The adapted model's state at the first step and a copy of the adapted model when training ends."""

    def on_train_start(self, trainer, pl_module):
        self.start = {n: p.detach().clone() for n, p in pl_module.model.state_dict().items()}
        self.trainable = [n for n, p in pl_module.model.named_parameters() if p.requires_grad]

    def on_train_end(self, trainer, pl_module):
        self.adapted = copy.deepcopy(pl_module.model).eval()


def test_lora_training_changes_only_adapters_and_exports_merged(toy_lerobot, tmp_path):
    root = toy_lerobot(image_size=64)
    cfg = load_config(None, [
        f"out_dir={tmp_path / 'run'}", "optim.max_steps=3", "optim.warmup_steps=1",
        "data.batch_size=4", "model.action_horizon=4", "model.state_dim=8", "model.action_dim=4",
        "model.cameras=[observation.images.cam]", "tokenizer.options.vocab_size=128",
        "trainer.enable_progress_bar=false", "model.backbone_overrides={num_layers: 2}",
        "lora.r=4", "lora.alpha=8",
    ])  # fmt: skip
    cfg.data.datasets = [{"root": str(root), "kind": "lerobot", "name": "toy"}]
    snap = _Snapshots()
    policy, module = train(cfg, callbacks=[snap])
    assert len(module.history) == 3 and all(np.isfinite(h["loss"]) for h in module.history)

    # the optimiser saw adapters + full-train paths only (no vision, norms, embeddings or base weights)
    assert snap.trainable and all("lora_" in n or n.startswith(FULL_TRAIN) for n in snap.trainable)
    assert any(".lora_A." in n and n.startswith("expert.layers.") for n in snap.trainable)
    assert any(".lora_B." in n and n.startswith("backbone.") for n in snap.trainable)
    end = snap.adapted.state_dict()
    changed = {n for n, p in end.items() if not torch.equal(p, snap.start[n])}
    assert all("lora_" in n or n.startswith(FULL_TRAIN) for n in changed), sorted(changed)[:5]
    assert {p for p in FULL_TRAIN if any(n.startswith(p) for n in changed)} == set(FULL_TRAIN)
    lora_b = [n for n in end if ".lora_B." in n]
    assert lora_b and all(n in changed for n in lora_b)  # every adapter left its zero init

    # export = merged plain model: no lora keys; base weight of each adapted layer = W0 + (alpha/r) B A
    exported = WallPolicy.from_pretrained(tmp_path / "run" / "policy")
    merged = exported.model.state_dict()
    assert not any("lora_" in n for n in merged)
    frozen = [n for n in merged if n not in changed and n.replace(".weight", ".base_layer.weight") not in end]
    assert frozen and all(torch.equal(merged[n], snap.start[n]) for n in frozen if n in snap.start)
    for name in lora_b:
        prefix = name.split(".lora_B.")[0]
        w0 = snap.start[f"{prefix}.base_layer.weight"]
        delta = (8 / 4) * end[name] @ end[name.replace("lora_B", "lora_A")]
        torch.testing.assert_close(merged[f"{prefix}.weight"], w0 + delta, atol=1e-6, rtol=0)

    # the exported policy acts as the adapted model did
    ds = wd.LeRobotDataset(root, action_horizon=4)
    obs = {k: v for k, v in ds[3].items() if k not in ("action", "action_is_pad")}
    adapted = WallPolicy(snap.adapted, exported.pipeline)
    adapted.generator.manual_seed(0)
    exported.generator.manual_seed(0)
    a, b = adapted.infer(obs)["actions"], exported.infer(obs)["actions"]
    assert a.shape == (4, 2)
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
    # and it differs from the untrained base model (the adapters did something)
    assert any(not torch.equal(merged[f"{n.split('.lora_B.')[0]}.weight"],
                               snap.start[f"{n.split('.lora_B.')[0]}.base_layer.weight"]) for n in lora_b)  # fmt: skip


def test_exported_lora_policy_loads_without_peft(tmp_path, toy_lerobot):
    """A merged export needs no peft: load it in a process where ``import peft`` fails."""
    root = toy_lerobot(image_size=64)
    cfg = load_config(None, [
        f"out_dir={tmp_path / 'run'}", "optim.max_steps=1", "data.batch_size=2", "model.action_horizon=4",
        "model.state_dim=8", "model.action_dim=4", "model.cameras=[observation.images.cam]",
        "tokenizer.kind=none", "objective.w_action_ce=0", "trainer.enable_progress_bar=false",
        "model.backbone_overrides={num_layers: 1}", "lora.r=2",
    ])  # fmt: skip
    cfg.data.datasets = [{"root": str(root), "kind": "lerobot", "name": "toy"}]
    policy, _ = train(cfg)
    code = (
        "import sys; sys.modules['peft'] = None\n"
        "from wall_core.policy import WallPolicy\n"
        f"p = WallPolicy.from_pretrained({str(tmp_path / 'run' / 'policy')!r})\n"
        "print(sum(v.numel() for v in p.model.state_dict().values()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) == sum(v.numel() for v in policy.model.state_dict().values())
