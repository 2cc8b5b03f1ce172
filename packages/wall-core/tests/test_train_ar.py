"""Training builds the AR normaliser (``tokenizer.ar_quantiles``), fits the tokenizer on its output and puts it
in the pipeline, so the discrete targets of a training batch are the codes of the AR-normalised chunks."""

import numpy as np
import pytest
import torch

import wall_data as wd
from wall_core.model.masks import SEG
from wall_core.processing import AR_KEY, DefaultPrompt, Normalize, NormalizeAR
from wall_core.training import build, load_config


def _noisy_action(ep, i, rng):
    return np.array([np.sin(i / 3 + ep), 3 * np.cos(i / 4)]) + rng.normal(0, 0.05, 2)


@pytest.fixture(scope="module")
def toy_root(toy_lerobot):
    """2 episodes x 16 frames: state [3], noisy action [2], one 32x32 camera."""
    return toy_lerobot(
        "toy_ar", image_size=32, state_dim=3, episodes=2, frames=16, seed=1, action=_noisy_action
    )


def _build(root, out, *extra):
    cfg = load_config(None, [
        f"out_dir={out}", "optim.max_steps=1", "data.batch_size=4", "model.action_horizon=4", "model.state_dim=4",
        "model.action_dim=4", "model.cameras=[observation.images.cam]", "model.image_size=32",
        "tokenizer.options.vocab_size=128", "model.backbone_overrides={num_layers: 1}", *extra,
    ])  # fmt: skip
    cfg.data.datasets = [{"root": str(root), "kind": "lerobot", "name": "toy"}]
    return build(cfg)


def test_training_fits_the_tokenizer_on_the_ar_quantiles(toy_root, tmp_path):
    model, pipe, _ = _build(toy_root, tmp_path / "q", "tokenizer.ar_quantiles=[0.1,0.9]")
    ar = pipe.find(NormalizeAR)
    acts = wd.LeRobotDataset(toy_root, cameras=[]).arrays["action"]
    assert ar.quantiles == (0.1, 0.9)
    np.testing.assert_array_equal(
        ar.ranges["toy"][0].numpy(), np.quantile(acts.astype(np.float64), 0.1, axis=0)
    )
    flow = pipe.find(Normalize).stats["toy"]["action"]
    assert not np.allclose(ar.ranges["toy"][1].numpy(), flow.q99)  # not the flow q99
    ds = wd.LeRobotDataset(toy_root, action_horizon=4)
    samples = [{**ds[i], "dataset": "toy"} for i in (0, 5, 20)]
    batch = pipe(samples)
    tok = pipe.find(DefaultPrompt).action_tokenizer
    for row, s in enumerate(samples):
        ar_chunk = pipe.process_sample(s)[AR_KEY]
        assert torch.equal(ar_chunk, ar.normalize(torch.as_tensor(s["action"]), "toy"))
        ids = batch.labels[row][batch.segment[row] == SEG.ACTION][:-1] - model.host_vocab_size
        assert ids.tolist() == tok.encode(ar_chunk.double().numpy()[None])[0].tolist()
    # the default (no quantiles) is the flow q01/q99
    _, default, _ = _build(toy_root, tmp_path / "d")
    lo, hi = default.find(NormalizeAR).ranges["toy"]
    assert np.array_equal(lo.numpy(), flow.q01) and np.array_equal(hi.numpy(), flow.q99)
