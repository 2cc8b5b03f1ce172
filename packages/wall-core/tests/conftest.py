import numpy as np
import pytest
import torch

import wall_data as wd
import wall_tokenizer as wt
from wall_core.model import WallVLA, WallVLAConfig
from wall_core.processing import build_pipeline, normalize_tensor

H = 8


def make_setup(backbone="small", seed=0, **overrides):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    acts = rng.normal(size=(200, H, 4)).cumsum(1) * 0.1
    stats = wd.compute_stats({"observation.state": rng.normal(size=(500, 39)), "action": acts.reshape(-1, 4)})
    nacts = normalize_tensor(torch.from_numpy(acts), stats["action"]).numpy().astype(np.float64)
    tok = wt.FASTTokenizer(scale=10, vocab_size=256).fit(nacts)
    size = 56 if backbone.startswith("qwen") else 64
    cfg = WallVLAConfig(
        backbone=backbone, action_horizon=H, num_action_tokens=tok.vocab_size, image_size=size, **overrides
    )
    model = WallVLA(cfg)
    proc = build_pipeline(model, stats={"sim": stats}, action_tokenizer=tok)
    samples = [
        {
            "observation.state": rng.normal(size=39),
            "action": acts[i],
            "action_is_pad": np.arange(H) >= H - i,
            "task": ["reach the goal", "press the button"][i % 2],
            "observation.images.corner": rng.integers(0, 255, (3, size, size), dtype=np.uint8),
        }
        for i in range(4)
    ]
    samples.append(
        {
            "observation.images.main": rng.integers(0, 255, (3, 32, 32), dtype=np.uint8),
            "question": "which task?",
            "answer": "reach",
        }
    )
    return model, proc, samples


@pytest.fixture
def setup():
    return make_setup()


@pytest.fixture
def make():
    return make_setup


@pytest.fixture(scope="module")
def make_once():
    """:func:`make_setup` for module-scoped fixtures."""
    return make_setup
