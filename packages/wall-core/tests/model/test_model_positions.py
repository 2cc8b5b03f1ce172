"""Flow slots sit right after the prompt: the same velocity with or without discrete action tokens in the
prefix, and the same flow positions in training and deployment, for every backbone preset."""

import pytest
import torch

from wall_core.model import flow_positions


def _velocity_and_positions(model, batch, x_t, t, dof):
    with torch.no_grad():
        cache = model.prefix_forward(batch)
        pos = flow_positions(cache.positions, cache.valid, cache.segment, x_t.shape[1])
        return model.flow_forward(x_t, t, cache, dof), pos, cache


def _check(model, train, deploy, dof):
    g = torch.Generator().manual_seed(0)
    h, a = model.config.action_horizon, model.config.action_dim
    x_t, t = torch.randn(train.batch_size, h, a, generator=g), torch.rand(train.batch_size, generator=g)
    v_train, p_train, c_train = _velocity_and_positions(model, train, x_t, t, dof)
    v_deploy, p_deploy, _ = _velocity_and_positions(model, deploy, x_t, t, dof)
    assert torch.equal(p_train, p_deploy)  # training and deployment see the same flow positions
    first = p_train[..., 0] if p_train.ndim == 2 else p_train[0, :, 0]
    naive = (
        c_train.positions.amax(dim=-1) if c_train.positions.ndim == 2 else c_train.positions.amax(dim=(0, 2))
    ) + 1
    assert (naive > first).all()  # the discrete tokens really are in the training prefix, after the prompt
    torch.testing.assert_close(v_train, v_deploy, atol=1e-6, rtol=0)
    assert v_train.abs().mean() > 1e-2


@pytest.mark.parametrize("backbone", ["small", "qwen2.5-vl-tiny"])
def test_flow_positions_ignore_discrete_tokens(make, backbone):
    model, proc, samples = make(backbone)
    model.eval()
    robots = samples[:3]
    train = proc(robots)  # prefix = prompt + FAST tokens + <|im_end|> (a different count per sample)
    deploy = proc([{k: v for k, v in s.items() if k not in ("action", "action_is_pad")} for s in robots])
    assert (train.segment == 4).sum(1).unique().numel() > 1  # rows carry different numbers of action tokens
    _check(model, train, deploy, train.dof_mask)


def test_flow_positions_wall_oss_preset(wall_oss, released):
    model = wall_oss(num_action_tokens=16)
    prompts = [b"Instruction: pick up the cube\n", b"Instruction: open\n"]
    lo = model.host_vocab_size
    train = released(prompts, [[lo + 3, lo + 5, lo + 1, 258], [lo + 7, 258]])
    deploy = released(prompts, [[], []])
    _check(model, train, deploy, train.dof_mask)
