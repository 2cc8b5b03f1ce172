"""The Wall VLA: a VLM backbone + a narrower action expert in a Mixture-of-Transformers layout.

Each layer: prefix tokens (images, instruction, state, discrete action tokens) use the backbone's norms,
QKV/O and FFN; flow slots use the expert's own (narrower) norms, QKV/O and FFN; both meet in one attention
over the shared head space. Because prefix rows never attend to flow slots, the prefix pass is computed once
and its per-layer keys/values serve every flow step: training and cached inference share the same code.
The gradient bridge acts on exactly those prefix keys/values as seen by the flow slots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from wall_flow import (
    ActionExpertLayer,
    ActionInputProjector,
    BetaTimeSampler,
    RMSNorm,
    joint_attention,
    sample,
)

from ..backbones import BackboneAdapter, create_backbone
from .batch import WallBatch
from .config import WallVLAConfig
from .masks import SEG, flow_mask, prefix_mask

__all__ = ["PrefixCache", "WallOutput", "WallVLA", "bridge_kv"]
logger = logging.getLogger(__name__)
BRIDGES = ("full", "scaled", "insulated")


def bridge_kv(x: Tensor, bridge: str, scale: float) -> Tensor:
    """Same values forward; backward gradient into the backbone x1 (full), x scale (scaled) or x0 (insulated)."""
    if bridge == "full":
        return x
    if bridge == "insulated":
        return x.detach()
    if bridge == "scaled":
        return x * scale + x.detach() * (1.0 - scale)
    raise ValueError(f"bridge must be one of {BRIDGES}, got {bridge!r}")


@dataclass
class PrefixCache:
    hidden: Tensor  # [B, L, W] after the final norm
    kv: list[tuple[Tensor, Tensor]]  # per layer, keys after RoPE: [B, Hkv, L, d]
    positions: Tensor  # [B, L]
    valid: Tensor
    segment: Tensor


@dataclass
class WallOutput:
    """What the objective needs. Any model producing these fields can use :class:`WallObjective`."""

    text_logits: Tensor | None = (
        None  # [N_text, V] at positions whose next token is a supervised answer token
    )
    text_targets: Tensor | None = None
    action_logits: Tensor | None = None  # [N_act, V] for discrete action tokens
    action_targets: Tensor | None = None
    v_pred: Tensor | None = None  # [B, H, A]
    x0: Tensor | None = None
    x1: Tensor | None = None
    t: Tensor | None = None
    flow_mask: Tensor | None = None  # [B, H, A]
    extras: dict[str, Any] = field(default_factory=dict)


class WallVLA(nn.Module):
    def __init__(self, config: WallVLAConfig, backbone: BackboneAdapter | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone or create_backbone(config.backbone, **config.backbone_overrides)
        bb = self.backbone
        self.host_vocab_size = bb.vocab_size
        if config.num_action_tokens:
            bb.resize_token_embeddings(self.host_vocab_size + config.num_action_tokens)
        we = config.expert_width or max(bb.hidden_size // 2, bb.head_dim)
        self.expert_width = we
        self.expert = nn.ModuleList(
            ActionExpertLayer(
                we,
                bb.num_heads,
                bb.num_kv_heads,
                bb.head_dim,
                config.expert_mlp_width or 3 * we,
                time_cond=config.expert_time_cond,
                cond_dim=we,
            )  # fmt: skip
            for _ in range(len(bb.layers))
        )
        self.action_in = ActionInputProjector(config.action_dim, we)
        self.time_cond = nn.Sequential(nn.Linear(we, we), nn.SiLU()) if config.expert_time_cond else None
        self.expert_norm = RMSNorm(we)
        self.action_out = nn.Linear(we, config.action_dim)
        self.state_proj = nn.Linear(2 * config.state_dim, bb.hidden_size)
        self.time_sampler = BetaTimeSampler(config.time_alpha, config.time_beta, config.time_s)
        self.ids = {t: bb.token_id(t) for t in ("<|image_pad|>", "<|propri|>", "<|im_end|>", "<|pad|>")}

    # --- prefix (backbone rows) ----------------------------------------------------------------------------
    def embed_prefix(self, batch: WallBatch) -> Tensor:
        bb = self.backbone
        emb = bb.embed_tokens(batch.input_ids)
        is_img = batch.input_ids == self.ids["<|image_pad|>"]
        if is_img.any():
            imgs = batch.images[batch.image_valid]  # [N, 3, h, w] in (sample, camera) order
            feats = bb.encode_images(imgs).to(emb.dtype).reshape(-1, emb.shape[-1])
            if feats.shape[0] != int(is_img.sum()):
                raise ValueError(
                    f"{int(is_img.sum())} image placeholders but {feats.shape[0]} image tokens were encoded"
                )
            emb = emb.masked_scatter(is_img[..., None], feats)
        is_state = batch.input_ids == self.ids["<|propri|>"]
        if is_state.any():
            st = torch.cat([batch.state, torch.ones_like(batch.state)], dim=-1)
            proj = self.state_proj(st).to(emb.dtype)  # one state token per sample that has one
            rows = is_state.any(dim=1)
            emb = emb.masked_scatter(is_state[..., None], proj[rows])
        return emb

    def _backbone_layers(
        self, h: Tensor, positions: Tensor, mask: Tensor, past: list[tuple[Tensor, Tensor]] | None = None
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Run the backbone layers on ``h`` [B, n, W]; with ``past`` the new rows attend to cached K/V too."""
        bb = self.backbone
        cos, sin = bb.rope(h, positions)
        kv = []
        b, n, _ = h.shape
        for i, layer in enumerate(bb.layers):
            x = layer.input_layernorm(h)
            att = layer.self_attn
            q = att.q_proj(x).view(b, n, -1, bb.head_dim).transpose(1, 2)
            k = att.k_proj(x).view(b, n, -1, bb.head_dim).transpose(1, 2)
            v = att.v_proj(x).view(b, n, -1, bb.head_dim).transpose(1, 2)
            q, k = bb.apply_rope(q, k, cos, sin)
            if past is not None:
                k, v = torch.cat([past[i][0], k], dim=2), torch.cat([past[i][1], v], dim=2)
            kv.append((k, v))
            h = h + att.o_proj(joint_attention(q, k, v, mask))
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return bb.decoder.norm(h), kv

    def prefix_forward(self, batch: WallBatch) -> PrefixCache:
        valid = batch.valid
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        hidden, kv = self._backbone_layers(self.embed_prefix(batch), positions, prefix_mask(valid))
        return PrefixCache(hidden, kv, positions, valid, batch.segment)

    def extend_prefix(self, cache: PrefixCache, token_ids: Tensor, segment: int = SEG.ACTION) -> PrefixCache:
        """Append one token per row [B] to a cached prefix (incremental decoding); ``hidden`` is the new row only."""
        b = token_ids.shape[0]
        ones = torch.ones(b, 1, dtype=torch.bool, device=token_ids.device)
        valid = torch.cat([cache.valid, ones], dim=1)
        pos = cache.positions.max(dim=1, keepdim=True).values + 1
        h = self.backbone.embed_tokens(token_ids[:, None])
        hidden, kv = self._backbone_layers(h, pos, valid[:, None, None, :], past=cache.kv)
        seg = torch.cat([cache.segment, torch.full_like(token_ids[:, None], segment)], dim=1)
        return PrefixCache(hidden, kv, torch.cat([cache.positions, pos], dim=1), valid, seg)

    # --- flow slots (expert rows) -----------------------------------------------------------------------------
    def flow_forward(
        self,
        x_t: Tensor,
        t: Tensor,
        prefix: PrefixCache,
        dof_mask: Tensor | None = None,
        bridge: str = "full",
        bridge_scale: float = 1.0,
    ) -> Tensor:
        bb, cfg = self.backbone, self.config
        b, horizon, _ = x_t.shape
        hf = self.action_in(x_t, t, dof_mask)
        cond = self.time_cond(self.action_in.time(t).to(hf.dtype)) if self.time_cond is not None else None
        pos = (
            prefix.positions.max(dim=1, keepdim=True).values
            + 1
            + torch.arange(horizon, device=x_t.device)[None]
        )
        cos, sin = bb.rope(hf, pos)
        mask = flow_mask(prefix.valid, prefix.segment, horizon, cfg.causal_action_attention)
        for layer, (kp, vp) in zip(self.expert, prefix.kv):
            q, k, v = layer.qkv(hf, cond)
            q, k = bb.apply_rope(q, k, cos, sin)
            kp, vp = bridge_kv(kp, bridge, bridge_scale), bridge_kv(vp, bridge, bridge_scale)
            attn = joint_attention(q, torch.cat([kp, k], dim=2), torch.cat([vp, v], dim=2), mask)
            hf = layer.finish(hf, attn, cond)
        return self.action_out(self.expert_norm(hf))

    # --- training forward ---------------------------------------------------------------------------------------
    def _logits_at(self, hidden: Tensor, labels: Tensor, select: Tensor) -> tuple[Tensor, Tensor]:
        """LM-head logits only where the *next* token is a supervised target in ``select``."""
        nxt = torch.zeros_like(select)
        nxt[:, :-1] = select[:, 1:] & (labels[:, 1:] != -100)
        targets = labels[:, 1:][nxt[:, :-1]]
        return self.backbone.lm_head(hidden[nxt]), targets

    def forward(
        self,
        batch: WallBatch,
        *,
        bridge: str = "full",
        bridge_scale: float = 1.0,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        compute: tuple[str, ...] = ("text", "action", "flow"),
    ) -> WallOutput:
        prefix = self.prefix_forward(batch)
        out = WallOutput(extras={"prefix_hidden": prefix.hidden})
        if "text" in compute:
            out.text_logits, out.text_targets = self._logits_at(
                prefix.hidden, batch.labels, batch.segment == SEG.ANSWER
            )
        if "action" in compute:
            out.action_logits, out.action_targets = self._logits_at(
                prefix.hidden, batch.labels, batch.segment == SEG.ACTION
            )
        if "flow" in compute:
            x1 = batch.actions
            b = x1.shape[0]
            t = self.time_sampler.sample(b, device=x1.device) if t is None else t
            x0 = torch.randn_like(x1) if noise is None else noise
            tt = t.view(b, 1, 1).to(x1.dtype)
            x_t = (1 - tt) * x0 + tt * x1
            out.v_pred = self.flow_forward(x_t, t, prefix, batch.dof_mask, bridge, bridge_scale)
            out.x0, out.x1, out.t, out.flow_mask = x0, x1, t, batch.action_loss_mask
        return out

    # --- inference ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_actions(
        self,
        batch: WallBatch,
        num_steps: int = 10,
        method: str = "euler",
        use_cache: bool = True,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Flow-matching action chunk [B, H, A] (normalised space); the prefix runs once when ``use_cache``."""
        cfg = self.config
        b = batch.batch_size
        shape = (b, cfg.action_horizon, cfg.action_dim)
        x0 = (
            noise if noise is not None else torch.randn(shape, generator=generator, device=batch.state.device)
        )
        cache = self.prefix_forward(batch) if use_cache else None

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            prefix = cache if cache is not None else self.prefix_forward(batch)
            return self.flow_forward(x, t, prefix, batch.dof_mask)

        x = sample(velocity, x0, steps=num_steps, method=method)
        return x * batch.dof_mask[:, None, :]  # padded DOFs pinned at the normalised zero

    @torch.no_grad()
    def generate_action_tokens(self, batch: WallBatch, max_new_tokens: int = 64) -> list[list[int]]:
        """Greedy decoding of discrete action tokens (host ids mapped back to action ids), until <|im_end|>,
        with an incremental KV cache."""
        if not self.config.num_action_tokens:
            raise RuntimeError("this model has no discrete action vocabulary (num_action_tokens=0)")
        eos = self.ids["<|im_end|>"]
        lo, hi = self.host_vocab_size, self.host_vocab_size + self.config.num_action_tokens
        b = batch.batch_size
        done = torch.zeros(b, dtype=torch.bool, device=batch.input_ids.device)
        out: list[list[int]] = [[] for _ in range(b)]
        cache = self.prefix_forward(batch)
        hidden = cache.hidden[:, -1]
        for _ in range(max_new_tokens):
            logits = self.backbone.lm_head(hidden)
            allowed = torch.full_like(logits, float("-inf"))
            allowed[:, lo:hi] = 0
            allowed[:, eos] = 0
            nxt = (logits + allowed).argmax(-1)
            for i in range(b):
                if not done[i] and nxt[i] != eos:
                    out[i].append(int(nxt[i]) - lo)
            done |= nxt == eos
            if done.all():
                break
            cache = self.extend_prefix(cache, nxt)  # KV cache: one new row per step, no re-run of the prefix
            hidden = cache.hidden[:, -1]
        return out
