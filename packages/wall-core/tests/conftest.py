from collections.abc import Callable
from pathlib import Path

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


def box_stats(q01, q99) -> wd.FeatureStats:
    """Toy per-feature stats [D] with quantile range [q01, q99] (also min/max), mean the midpoint, std 1."""
    q01, q99 = np.asarray(q01, float), np.asarray(q99, float)
    return wd.FeatureStats(
        mean=(q01 + q99) / 2, std=np.ones_like(q01), min=q01, max=q99, q01=q01, q99=q99, count=10
    )


@pytest.fixture(scope="session")
def stats_box():
    """:func:`box_stats`: ``stats_box(q01, q99)`` -> :class:`wall_data.FeatureStats` (usable from any scope)."""
    return box_stats


def aloha_metaworld_model(action_horizon: int) -> tuple[WallVLA, dict[str, wd.EmbodimentSpec]]:
    """A seed-0 one-layer model in the canonical 64-D state / 26-D action layout and the ``aloha`` (14 joints)
    and ``metaworld`` (4-D) embodiment specs of that layout."""
    torch.manual_seed(0)
    cfg = WallVLAConfig(
        action_horizon=action_horizon, state_dim=64, action_dim=26, backbone_overrides={"num_layers": 1}
    )
    reg = wd.canonical_registry(64, 26, robots=["aloha_bimanual", "metaworld_sawyer"])
    return WallVLA(cfg), {"aloha": reg.get("aloha_bimanual"), "metaworld": reg.get("metaworld_sawyer")}


@pytest.fixture(scope="session")
def two_robot_model():
    """:func:`aloha_metaworld_model`: ``two_robot_model(action_horizon)`` -> (model, specs)."""
    return aloha_metaworld_model


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


def _sine_action(ep: int, i: int, rng: np.random.Generator) -> np.ndarray:
    """The default toy action [2]: a sine/cosine pair that shifts phase per episode."""
    return np.array([np.sin(i / 3 + ep), np.cos(i / 3)])


def write_toy_lerobot(
    root: Path,
    *,
    image_size: int,
    state_dim: int = 5,
    episodes: int = 3,
    frames: int = 20,
    seed: int = 0,
    action: Callable[[int, int, np.random.Generator], np.ndarray] = _sine_action,
) -> Path:
    """Write a toy LeRobot dataset at ``root`` and return its finalized root.

    ``episodes`` x ``frames`` frames, task ``"move {ep}"``: ``observation.state`` [state_dim] ~ N(0, 1),
    ``action`` [2] from ``action(ep, i, rng)``, one ``observation.images.cam`` camera of
    [image_size, image_size, 3] uint8 noise. Per frame the rng is drawn state, action, image (in that order).
    """
    feats = {
        "observation.state": {"dtype": "float32", "shape": [state_dim]},
        "action": {"dtype": "float32", "shape": [2]},
        "observation.images.cam": {"dtype": "image", "shape": [image_size, image_size, 3]},
    }
    w = wd.LeRobotWriter(root, fps=10, features=feats)
    rng = np.random.default_rng(seed)
    for ep in range(episodes):
        for i in range(frames):
            state = rng.normal(size=state_dim)
            act = action(ep, i, rng)
            img = rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)
            w.add_frame({"observation.state": state, "action": act, "observation.images.cam": img})
        w.save_episode(task=f"move {ep}")
    return w.finalize()


@pytest.fixture(scope="session")
def toy_lerobot(tmp_path_factory):
    """Factory ``toy_lerobot(name, image_size=..., **kw)``: :func:`write_toy_lerobot` under a fresh temp dir."""

    def make(name: str = "toy", **kw) -> Path:
        return write_toy_lerobot(tmp_path_factory.mktemp("data") / name, **kw)

    return make
