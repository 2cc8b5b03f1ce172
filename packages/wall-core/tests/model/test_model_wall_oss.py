"""The wall-oss-0.5 preset (released architecture), the real geometries on the meta device, text
generation through the backbone expert, and the pooled / separate cross-entropy."""

import copy

import pytest
import torch
import torch.nn.functional as F

from wall_core.backbones import create_backbone
from wall_core.model import SEG, WallVLA
from wall_core.model.presets import wall_oss_05_config
from wall_core.objective import WallObjective


@pytest.mark.slow
def test_real_geometries_build_on_meta_without_download():
    with torch.device("meta"):
        model = WallVLA(wall_oss_05_config())
    assert sum(p.numel() for p in model.parameters()) == 4_154_377_216  # the released 4.154 B
    sd = model.state_dict()
    lm = "backbone.model.model.language_model."
    assert sd[lm + "embed_tokens.weight"].shape == (151936, 2048)  # full embedding, never shrunk
    assert model.backbone.model.lm_head.weight is model.backbone.decoder.embed_tokens.weight  # tied
    assert (
        sd["expert.layers.35.qkv_proj.weight"].shape == (2560, 1024) and "expert.layers.0.qkv_proj.bias" in sd
    )
    assert (
        sd["expert.layers.0.o_proj.weight"].shape == (1024, 2048) and "expert.layers.0.o_proj.bias" not in sd
    )
    assert sd["expert.layers.0.mlp.gate_up.weight"].shape == (4096, 1024)
    assert sd["expert.proj_in.w1.weight"].shape == (1024, 52) and sd["expert.proj_out.weight"].shape == (
        26,
        1024,
    )
    assert not any(k.startswith("expert.proj_") and k.endswith(".bias") for k in sd)
    assert not any(k.startswith(("state_proj", "backbone.decoder", "backbone.visual")) for k in sd)
    vis = model.backbone.visual.config
    assert (vis.depth, vis.hidden_size, vis.intermediate_size, vis.window_size) == (32, 1280, 3420, 112)
    assert list(vis.fullatt_block_indexes) == [7, 15, 23, 31]
    with torch.device("meta"):
        qwen = create_backbone("qwen2.5-vl-3b")
    assert qwen.vocab_size == 151936 and qwen.hidden_size == 2048 and len(qwen.layers) == 36


def test_author_config_checks_name_the_problem(tiny_author):
    bad = copy.deepcopy(tiny_author)
    bad["action_hidden_size"] = 48
    with pytest.raises(ValueError, match="action_hidden_size=48 differs from dim_inputs\\[1\\]=32"):
        wall_oss_05_config(bad)
    bad = copy.deepcopy(tiny_author)
    bad["use_adarms"] = True
    with pytest.raises(ValueError, match="use_adarms"):
        wall_oss_05_config(bad)


def test_preset_choices_and_release_loss(wall_oss, released):
    model = wall_oss()
    cfg = model.config
    assert (cfg.action_dim, cfg.state_dim, cfg.action_horizon, cfg.num_steps, cfg.flow_t_end) == (
        26,
        26,
        32,
        10,
        0.999,
    )
    assert model.state_proj is None and model.expert_width == 32
    batch = released([b"Instruction: pick\n", b"Instruction: open the drawer\n"], [[], []])
    batch.action_loss_mask[1, 20:] = 0  # padded steps of row 1
    g = torch.Generator().manual_seed(0)
    t, noise = torch.rand(2, generator=g), torch.randn(2, 32, 26, generator=g)
    out = model(batch, t=t, noise=noise, compute=("flow",))
    x_pred = out.x0 * (1 - t[:, None, None]) + t[:, None, None] * out.x1 + (1 - t[:, None, None]) * out.v_pred
    ref = ((x_pred - out.x1) ** 2 * batch.action_loss_mask).sum() / (2 * 32 * 26)  # masked entries count as 0
    loss = WallObjective(w_text_ce=0, w_action_ce=0)(model, batch).loss
    out2 = model(batch, t=t, noise=noise, compute=("flow",))
    torch.testing.assert_close(
        model.flow.loss(out2.v_pred, out2.x0, out2.x1, out2.t, out2.action_loss_mask), ref
    )
    assert torch.isfinite(loss)
    seen = []
    model.flow.sample(lambda x, tt: seen.append(float(tt[0])) or torch.zeros_like(x), torch.zeros(1, 32, 26))
    torch.testing.assert_close(torch.tensor(seen), torch.linspace(0, 1, 11)[:-1] * 0.999)


def _full_rerun_argmax(model, batch, tokens):
    from wall_core.model.decoding import append_tokens

    for tok in tokens:
        batch = append_tokens(batch, tok, SEG.ANSWER)
    with torch.no_grad():
        return model.backbone.lm_head(model.prefix_forward(batch).hidden[:, -1]).argmax(-1)


@pytest.mark.parametrize("preset", ["small", "wall-oss-0.5"])
def test_generate_text_greedy_is_argmax_and_cache_is_exact(make, wall_oss, released, preset):
    if preset == "small":
        model, proc, samples = make("small")
        vqa = {k: v for k, v in samples[4].items() if k != "answer"}
        batch = proc([vqa, {k: v for k, v in samples[0].items() if k not in ("action", "action_is_pad")}])
    else:
        model = wall_oss()
        batch = released([b"Question: what colour is the cube?\n", b"Subtask:\n"], [[], []])
    model.eval()
    eos = -1  # never emitted: every row decodes exactly max_new_tokens tokens
    greedy = model.generate_text(batch, max_new_tokens=6, eos_token_id=eos)
    assert greedy == model.generate_text(batch, max_new_tokens=6, eos_token_id=eos, use_cache=False)
    ids = torch.tensor(greedy)  # [B, 6]
    for k in range(6):  # token k = argmax of a full re-run over the prompt + the first k generated tokens
        assert torch.equal(_full_rerun_argmax(model, batch, [ids[:, j] for j in range(k)]), ids[:, k])
    kw = dict(max_new_tokens=6, temperature=0.8, top_p=0.9, eos_token_id=eos)
    a = model.generate_text(batch, generator=torch.Generator().manual_seed(1), **kw)
    b = model.generate_text(batch, generator=torch.Generator().manual_seed(1), use_cache=False, **kw)
    assert a == b and all(i < model.host_vocab_size for row in a for i in row)
    c = model.generate_text(batch, generator=torch.Generator().manual_seed(2), **kw)
    assert a != c  # sampling really samples


def test_pooled_and_separate_cross_entropy(setup):
    model, proc, samples = setup
    batch = proc(samples)
    torch.manual_seed(0)
    out = model(batch, compute=("text_ce", "action_ce"))
    st = F.cross_entropy(out.text_logits, out.text_targets, reduction="sum")
    sa = F.cross_entropy(out.action_logits, out.action_targets, reduction="sum")
    nt, na = out.text_targets.numel(), out.action_targets.numel()
    pooled = WallObjective(w_text_ce=0.1, w_action_ce=0.1, w_flow=0.0)(model, batch)
    torch.testing.assert_close(pooled.loss, 0.1 * (st + sa) / (nt + na))
    separate = WallObjective(w_text_ce=0.1, w_action_ce=0.3, w_flow=0.0, ce="separate")(model, batch)
    torch.testing.assert_close(separate.loss, 0.1 * st / nt + 0.3 * sa / na)
    torch.testing.assert_close(pooled.terms["text_ce"], st.detach() / nt)  # logged terms: per-kind means
    for ce in ("pooled", "separate"):
        shares = WallObjective(ce=ce).gradient_shares(model, batch)
        assert abs(shares["text_ce"] + shares["action_ce"] + shares["flow"] - 1) < 1e-6
        assert all(shares[f"norm/{k}"] > 0 for k in ("text_ce", "action_ce", "flow"))
    with pytest.raises(ValueError, match="ce must be"):
        WallObjective(ce="mean")
