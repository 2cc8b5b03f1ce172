"""Issue 19 findings 1, 4, 9 in training: URL resume refused, non-finite loss stops/skips, no NaN export,
max_steps <= 0 refused, resume with changed settings refused, history.json kept by a stopped run."""

import http.server
import json
import threading

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import Callback

from wall_core.cli import main
from wall_core.training import load_config, train
from wall_core.training.guards import NonFiniteError


@pytest.fixture(scope="module")
def toy_root(toy_lerobot):
    """3 episodes x 20 frames: state [5], action [2], one 32x32 camera."""
    return toy_lerobot(image_size=32)


def _cfg(root, out, steps, extra=()):
    cfg = load_config(None, [*_overrides(out, steps), *extra])
    cfg.data.datasets = [{"root": str(root), "kind": "lerobot", "name": "toy"}]
    return cfg


def test_url_resume_refused_before_any_request(toy_root, tmp_path):
    hits = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}/x.ckpt"
    try:
        with pytest.raises(ValueError, match="URL"):
            train(_cfg(toy_root, tmp_path / "r", 2, extra=[f"resume={url}"]))
    finally:
        srv.shutdown()
    assert hits == [] and not (tmp_path / "r" / "policy").exists()


def test_max_steps_zero_is_an_error(toy_root, tmp_path):
    with pytest.raises(ValueError, match="max_steps=0"):
        train(_cfg(toy_root, tmp_path / "z", 0))
    assert not (tmp_path / "z" / "policy").exists()


def test_huge_lr_cli_fails_and_exports_nothing(toy_root, tmp_path):
    out = tmp_path / "lr"
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"data": {"datasets": [{"root": str(toy_root), "name": "toy"}]}}))
    args = [a for a in _overrides(out, 8) if not a.startswith("data.")] + [
        "optim.lr=1e6",
        "optim.grad_clip=0",
    ]
    assert main(["train", str(conf), *args]) != 0
    assert not (out / "policy").exists()


def _overrides(out, steps):
    return [
        f"out_dir={out}", f"optim.max_steps={steps}", "optim.warmup_steps=1", "data.batch_size=4",
        "model.action_horizon=4", "model.state_dim=8", "model.action_dim=4",
        "model.cameras=[observation.images.cam]", "tokenizer.options.vocab_size=128",
        "trainer.enable_progress_bar=false", "model.backbone_overrides={num_layers: 2}",
        "trainer.log_every_n_steps=1",
    ]  # fmt: skip


class NaNBatchAt(Callback):
    """Turns the state of the batch at optimiser step ``k`` into NaN."""

    def __init__(self, k):
        self.k = k

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.k:
            batch.state.fill_(float("nan"))


def test_nan_batch_stops_naming_step_and_keeps_history(toy_root, tmp_path):
    out = tmp_path / "nan"
    cfg = _cfg(toy_root, out, 5)
    with pytest.raises(NonFiniteError, match=r"non-finite loss at step 2 .*batch 2"):
        train(cfg, callbacks=[NaNBatchAt(2)])
    assert not (out / "policy").exists()
    kept = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in kept] == [0, 1] and all(np.isfinite(h["loss"]) for h in kept)


def test_nan_batch_skipped_and_counted(toy_root, tmp_path):
    cfg = _cfg(toy_root, tmp_path / "skip", 4, extra=["trainer.on_nonfinite=skip"])
    policy, module = train(cfg, callbacks=[NaNBatchAt(1)])
    assert module.guard.skipped == 1
    assert all(np.isfinite(h["loss"]) for h in module.history)
    assert all(torch.isfinite(v).all() for v in policy.model.state_dict().values() if v.is_floating_point())


def test_resume_with_changed_lr_is_refused_unless_allowed(toy_root, tmp_path):
    train(_cfg(toy_root, tmp_path / "a", 4, extra=["stop_after=2", "checkpoint_every=2"]))
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match=r"optim\.lr: 0\.\d+ -> 0\.1"):
        train(_cfg(toy_root, tmp_path / "b", 4, extra=[f"resume={ckpt}", "optim.lr=0.1"]))
    _, m = train(
        _cfg(
            toy_root,
            tmp_path / "c",
            4,
            extra=[f"resume={ckpt}", "optim.lr=0.1", "resume_allow_changes=[optim.lr]"],
        )
    )
    assert [h["step"] for h in m.history] == [2, 3]


def test_checkpoint_checksum_is_written_and_verified_on_resume(toy_root, tmp_path, caplog):
    """Issue 19 finding 6: flipped bytes in last.ckpt resumed and exported with exit 0."""
    train(_cfg(toy_root, tmp_path / "a", 4, extra=["stop_after=2", "checkpoint_every=2"]))
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    side = ckpt.with_name("last.ckpt.sha256")
    assert side.read_text().split()[0] == __import__("hashlib").sha256(ckpt.read_bytes()).hexdigest()
    data = bytearray(ckpt.read_bytes())
    for i in range(64):
        data[len(data) // 2 + i] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    out = tmp_path / "b"
    with pytest.raises(ValueError, match=r"last\.ckpt: sha256 differs"):
        train(_cfg(toy_root, out, 4, extra=[f"resume={ckpt}"]))
    side.unlink()
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"data": {"datasets": [{"root": str(toy_root), "name": "toy"}]}}))
    args = [a for a in _overrides(out, 4) if not a.startswith("data.")]
    assert main(["train", str(conf), *args, f"resume={ckpt}"]) == 2  # no traceback, nothing exported
    assert not (out / "policy").exists()
    assert "has no last.ckpt.sha256" in caplog.text
