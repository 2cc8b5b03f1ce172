"""The Wall VLA: a VLM backbone + a narrower action expert in a Mixture-of-Transformers layout.

Each layer: prefix tokens (images, instruction, state, discrete action tokens) use the backbone's norms,
QKV/O and FFN; flow slots use the expert's own (narrower) norms, QKV/O and FFN (wall-flow's
:class:`~wall_flow.ActionExpert`, driven through its documented MoT interface); both meet in one attention
over the shared head space. Because prefix rows never attend to flow slots, the prefix pass is computed once
and its per-layer keys/values serve every flow step: training and cached inference share the same code.
The gradient bridge acts on exactly those prefix keys/values as seen by the flow slots. Flow matching
(times, noise, x_t, loss, sampler) is the model's :class:`~wall_flow.FlowMatching` object ``self.flow``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from wall_flow import ActionExpert, BetaTimeSampler, FlowMatching, Generators, joint_attention, prefix_times

from ..backbones import BackboneAdapter, create_backbone
from .batch import WallBatch
from .config import WallVLAConfig
from .decoding import DecodingMixin
from .masks import SEG, flow_attention_mask, flow_positions, prefix_attention_mask, prefix_positions

__all__ = ["PrefixCache", "WallOutput", "WallVLA", "bridge_kv"]
logger = logging.getLogger(__name__)
BRIDGES = ("full", "scaled", "insulated")
COMPUTE = ("text_ce", "action_ce", "flow")


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
    """The prefix pass: ``hidden`` [B, L, W] after the final norm; ``kv`` per layer (k, v) [B, Hkv, L, d]
    with RoPE applied; ``positions`` [B, L] or [3, B, L]; ``valid`` [B, L] bool; ``segment`` [B, L] long."""

    hidden: Tensor
    kv: list[tuple[Tensor, Tensor]]
    positions: Tensor
    valid: Tensor
    segment: Tensor


@dataclass
class WallOutput:
    """What the objective needs. Any model producing these fields can use :class:`WallObjective`.

    ``text_logits`` [N_text, V] / ``text_targets`` [N_text] at positions whose next token is a supervised
    answer token; ``action_logits`` / ``action_targets`` the same for discrete action tokens; ``v_pred``
    [B, H, A] velocity at ``x_t`` = path(``x0``, ``x1``, ``t``) ([B, H, A], [B, H, A], [B]);
    ``action_loss_mask`` [B, H, A].
    """

    text_logits: Tensor | None = None
    text_targets: Tensor | None = None
    action_logits: Tensor | None = None
    action_targets: Tensor | None = None
    v_pred: Tensor | None = None
    x0: Tensor | None = None
    x1: Tensor | None = None
    t: Tensor | None = None
    action_loss_mask: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class WallVLA(DecodingMixin, nn.Module):
    """Backbone (``backbone``) + action expert (``expert``, wall-flow's stack) + flow recipe (``flow``).

    Entry points: :meth:`prefix_forward` (batch -> :class:`PrefixCache`), :meth:`flow_forward` (x_t, t,
    cache -> velocity), :meth:`forward` (training outputs), :meth:`predict_actions` (flow chunk),
    :meth:`generate_text` / :meth:`generate_action_tokens` (KV-cached decoding through the LM head).
    """

    def __init__(self, config: WallVLAConfig, backbone: BackboneAdapter | None = None) -> None:
        super().__init__()
        self.config = cfg = config
        self.backbone = backbone or create_backbone(config.backbone, **config.backbone_overrides)
        bb = self.backbone
        self.host_vocab_size = bb.vocab_size
        if cfg.num_action_tokens:
            bb.resize_token_embeddings(self.host_vocab_size + cfg.num_action_tokens)
        we = cfg.expert_width or max(bb.hidden_size // 2, bb.head_dim)
        self.expert_width = we
        self.expert = ActionExpert(
            cfg.action_dim, we, len(bb.layers), bb.num_heads, bb.num_kv_heads, bb.head_dim,
            cfg.expert_mlp_width or 3 * we, time_cond="adarms" if cfg.expert_time_cond else "concat",
            proj_bias=cfg.action_proj_bias, mask_input="raw" if cfg.action_mask_input == "raw" else "masked",
            time_embedding=cfg.time_embedding,
        )  # fmt: skip
        self.state_proj = nn.Linear(2 * cfg.state_dim, bb.hidden_size) if cfg.state_input == "token" else None
        self.activation_checkpointing = False  # set_activation_checkpointing
        self.flow = FlowMatching(
            time_sampler=BetaTimeSampler(cfg.time_alpha, cfg.time_beta, cfg.time_s),
            loss_space="velocity" if cfg.flow_space == "velocity" else "action",
            reduction="all" if cfg.flow_loss_reduction == "all" else "valid",
            num_steps=cfg.num_steps,
            t_end=cfg.flow_t_end,
        )
        self.ids = {t: bb.token_id(t) for t in ("<|image_pad|>", "<|im_end|>")}
        if cfg.state_input == "token":
            self.ids["<|propri|>"] = bb.token_id("<|propri|>")

    # --- prefix (backbone rows) ----------------------------------------------------------------------------
    def _image_features(self, batch: WallBatch, width: int) -> Tensor:
        """Merged image tokens [N_tokens, W] in placeholder order (pixel_values when given, else images)."""
        bb = self.backbone
        if batch.pixel_values is not None:
            if batch.image_grid_thw is None:
                raise ValueError("WallBatch.pixel_values needs image_grid_thw ([N_images, 3] long) beside it")
            return bb.encode_pixels(batch.pixel_values, batch.image_grid_thw)
        imgs = batch.images[batch.image_valid]  # [N, 3, h, w] in (sample, camera) order
        return bb.encode_images(imgs).reshape(-1, width)

    def embed_prefix(self, batch: WallBatch) -> Tensor:
        """Token embeddings [B, L, W] with image features and (state_input="token") the state token in place."""
        emb = self.backbone.embed_tokens(batch.input_ids)
        is_img = batch.input_ids == self.ids["<|image_pad|>"]
        if is_img.any():
            feats = self._image_features(batch, emb.shape[-1]).to(emb.dtype)
            if feats.shape[0] != int(is_img.sum()):
                raise ValueError(
                    f"{int(is_img.sum())} image placeholders but {feats.shape[0]} image tokens were encoded"
                )
            emb = emb.masked_scatter(is_img[..., None], feats)
        if self.state_proj is not None:
            is_state = batch.input_ids == self.ids["<|propri|>"]
            if is_state.any():
                # [state ; state_mask]: padded / absent dims are 0 in the mask, so "absent" != "zero"
                m = (
                    torch.ones_like(batch.state)
                    if batch.state_mask is None
                    else batch.state_mask.to(batch.state)
                )
                st = torch.cat([batch.state * m, m], dim=-1)
                proj = self.state_proj(st.to(self.state_proj.weight.dtype)).to(
                    emb.dtype
                )  # one state token per sample that has one
                emb = emb.masked_scatter(is_state[..., None], proj[is_state.any(dim=1)])
        return emb

    def _decoder_step(
        self, layer: Any, h: Tensor, cos: Tensor, sin: Tensor, mask: Tensor, past: Any = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One backbone layer (the unit activation checkpointing recomputes): h [B, n, W] -> (h [B, n, W],
        k, v [B, Hkv, n (+ cached), d] with RoPE); ``past``: this layer's cached (k, v) or None."""
        bb, (b, n, _) = self.backbone, h.shape
        x = layer.input_layernorm(h)
        att = layer.self_attn
        q = att.q_proj(x).view(b, n, -1, bb.head_dim).transpose(1, 2)
        k = att.k_proj(x).view(b, n, -1, bb.head_dim).transpose(1, 2)
        v = att.v_proj(x).view(b, n, -1, bb.head_dim).transpose(1, 2)
        q, k = bb.apply_rope(q, k, cos, sin)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        h = h + att.o_proj(joint_attention(q, k, v, mask))
        return h + layer.mlp(layer.post_attention_layernorm(h)), k, v

    def _backbone_layers(
        self,
        h: Tensor,
        positions: Tensor,
        mask: Tensor,
        past: list[tuple[Tensor, Tensor]] | None = None,
        collect: list[Tensor] | None = None,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Run the backbone layers on ``h`` [B, n, W] -> (final-normed hidden [B, n, W], per-layer K/V);
        with ``past`` the new rows attend to cached K/V too; ``collect`` receives each layer's output.
        Under :meth:`set_activation_checkpointing` (training, gradients on) each layer step is recomputed
        in backward (``torch.utils.checkpoint``, non-reentrant)."""
        cos, sin = self.backbone.rope(h, positions)
        kv = []
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.backbone.layers):
            args = (layer, h, cos, sin, mask, None if past is None else past[i])
            if recompute:
                h, k, v = checkpoint(self._decoder_step, *args, use_reentrant=False)
            else:
                h, k, v = self._decoder_step(*args)
            kv.append((k, v))
            if collect is not None:
                collect.append(h)
        return self.backbone.decoder.norm(h), kv

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Turn activation checkpointing on/off for every backbone decoder layer (:meth:`_decoder_step`),
        every action-expert layer (wall-flow's ``ActionExpert.activation_checkpointing``) and the vision
        tower's blocks (the backbone's library switch: transformers' / timm's). Values and gradients are
        unchanged; autograd keeps only each layer's inputs (a decoder layer also its K/V) and recomputes."""
        self.activation_checkpointing = bool(enabled)
        self.expert.activation_checkpointing = bool(enabled)
        self.backbone.set_vision_checkpointing(bool(enabled))

    def _positions(self, batch: WallBatch) -> Tensor:
        if batch.position_ids is None:
            return prefix_positions(batch.valid)
        want = (3, *batch.input_ids.shape)
        if tuple(batch.position_ids.shape) != want:
            raise ValueError(
                f"WallBatch.position_ids must be [3, B, L] = {want}, got {tuple(batch.position_ids.shape)}"
            )
        return batch.position_ids

    def prefix_forward(self, batch: WallBatch, collect: list[Tensor] | None = None) -> PrefixCache:
        """The backbone pass over the prefix tokens of ``batch`` ([B, L]) -> :class:`PrefixCache`."""
        valid = batch.valid
        positions = self._positions(batch)
        hidden, kv = self._backbone_layers(
            self.embed_prefix(batch), positions, prefix_attention_mask(valid), collect=collect
        )
        return PrefixCache(hidden, kv, positions, valid, batch.segment)

    def extend_prefix(self, cache: PrefixCache, token_ids: Tensor, segment: int = SEG.ACTION) -> PrefixCache:
        """Append one token per row [B] to a cached prefix (incremental decoding); ``hidden`` is the new row only
        [B, 1, W]. The new token's position is 1 + the largest cached position (all m-RoPE axes)."""
        b = token_ids.shape[0]
        ones = torch.ones(b, 1, dtype=torch.bool, device=token_ids.device)
        valid = torch.cat([cache.valid, ones], dim=1)
        p = cache.positions
        nxt = (p.amax(dim=(0, 2)) if p.ndim == 3 else p.amax(dim=1)) + 1  # [B]
        pos = nxt[None, :, None].expand(3, b, 1) if p.ndim == 3 else nxt[:, None]
        h = self.backbone.embed_tokens(token_ids[:, None])
        hidden, kv = self._backbone_layers(h, pos, valid[:, None, None, :], past=cache.kv)
        seg = torch.cat([cache.segment, torch.full_like(token_ids[:, None], segment)], dim=1)
        return PrefixCache(hidden, kv, torch.cat([p, pos], dim=-1), valid, seg)

    # --- flow slots (expert rows) -----------------------------------------------------------------------------
    def flow_hidden(
        self,
        x_t: Tensor,
        t: Tensor,
        prefix: PrefixCache,
        dof_mask: Tensor | None = None,
        bridge: str = "full",
        bridge_scale: float = 1.0,
        collect: list[Tensor] | None = None,
    ) -> Tensor:
        """Expert hidden states [B, H, W_e] after the final expert norm for x_t [B, H, A] at t [B] (or [B, H]).

        The H flow slots sit right after the prompt (positions from :func:`flow_positions`), attend to the
        valid non-action prefix keys and causally (or not, per config) to each other."""
        bb, horizon = self.backbone, x_t.shape[1]
        pos = flow_positions(prefix.positions, prefix.valid, prefix.segment, horizon)
        cos, sin = bb.rope(prefix.hidden, pos)
        mask = flow_attention_mask(prefix.valid, prefix.segment, horizon, self.config.causal_action_attention)
        kv = [(bridge_kv(k, bridge, bridge_scale), bridge_kv(v, bridge, bridge_scale)) for k, v in prefix.kv]

        def rope(q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
            return bb.apply_rope(q, k, cos, sin)

        return self.expert.hidden(x_t, t, dof_mask, kv, attn_mask=mask, rope=rope, collect=collect)

    def flow_forward(
        self,
        x_t: Tensor,
        t: Tensor,
        prefix: PrefixCache,
        dof_mask: Tensor | None = None,
        bridge: str = "full",
        bridge_scale: float = 1.0,
    ) -> Tensor:
        """Velocity [B, H, A] at noisy actions x_t [B, H, A], times t [B] (or per step [B, H]), over a prefix
        cache."""
        return self.expert.proj_out(self.flow_hidden(x_t, t, prefix, dof_mask, bridge, bridge_scale))

    # --- training forward ---------------------------------------------------------------------------------------
    def _logits_at(self, hidden: Tensor, labels: Tensor, select: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """LM-head logits [N, V] only where the *next* token is a supervised target in ``select``; targets [N];
        the batch row of each of them [N] (for per-dataset losses)."""
        nxt = torch.zeros_like(select)
        nxt[:, :-1] = select[:, 1:] & (labels[:, 1:] != -100)
        targets = labels[:, 1:][nxt[:, :-1]]
        return self.backbone.lm_head(hidden[nxt]), targets, nxt.nonzero()[:, 0]

    def forward(
        self,
        batch: WallBatch,
        *,
        bridge: str = "full",
        bridge_scale: float = 1.0,
        t: Tensor | None = None,
        noise: Tensor | None = None,
        generator: Generators = None,
        compute: tuple[str, ...] = COMPUTE,
        rtc_max_delay: int | None = None,
    ) -> WallOutput:
        """Training outputs for ``batch``. ``compute`` picks among "text_ce", "action_ce" and "flow"; flow
        times and noise come from ``t`` [B] / ``noise`` [B, H, A] or are drawn by ``self.flow`` (from
        ``generator`` when given: one, or a sequence of B per-row generators). ``rtc_max_delay``
        (training-time RTC, see :class:`wall_flow.FlowMatching`) gives each row a clean action prefix of d ~ U{0..max} steps, removed from ``action_loss_mask``."""
        unknown = set(compute) - set(COMPUTE)
        if unknown:
            raise ValueError(f"compute names {sorted(unknown)}; choose from {COMPUTE}")
        prefix = self.prefix_forward(batch)
        out = WallOutput(extras={"prefix_hidden": prefix.hidden})
        if "text_ce" in compute:
            out.text_logits, out.text_targets, out.extras["text_ce_rows"] = self._logits_at(
                prefix.hidden, batch.labels, batch.segment == SEG.ANSWER
            )
        if "action_ce" in compute:
            out.action_logits, out.action_targets, out.extras["action_ce_rows"] = self._logits_at(
                prefix.hidden, batch.labels, batch.segment == SEG.ACTION
            )
        if "flow" in compute:
            ps = self.flow.draw(
                batch.actions, generator=generator, t=t, noise=noise, rtc_max_delay=rtc_max_delay
            )
            t_in = (
                ps.t if ps.prefix_mask is None else prefix_times(ps.t, ps.prefix_mask)
            )  # clean prefix: t = 1
            out.v_pred = self.flow_forward(ps.x_t, t_in, prefix, batch.dof_mask, bridge, bridge_scale)
            out.x0, out.x1, out.t, out.action_loss_mask = ps.x0, ps.x1, ps.t, batch.action_loss_mask
            if ps.prefix_mask is not None and out.action_loss_mask is not None:
                keep = (~ps.prefix_mask)[:, :, None].to(out.action_loss_mask.dtype)
                out.action_loss_mask = out.action_loss_mask * keep
        return out

    # --- inference ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_actions(
        self,
        batch: WallBatch,
        num_steps: int | None = None,
        method: str | None = None,
        use_cache: bool = True,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Flow-matching action chunk [B, H, A] (normalised space) from noise [B, H, A] (drawn when None);
        ``num_steps`` / ``method`` default to the config's sampler. The prefix runs once when ``use_cache``,
        else at every step (same result: prefix rows never see the flow slots)."""
        cfg = self.config
        shape = (batch.batch_size, cfg.action_horizon, cfg.action_dim)
        x0 = noise if noise is not None else self.flow.noise(shape, generator, batch.input_ids.device)
        cache = self.prefix_forward(batch) if use_cache else None

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            prefix = cache if cache is not None else self.prefix_forward(batch)
            return self.flow_forward(x, t, prefix, batch.dof_mask)

        x = self.flow.sample(velocity, x0, num_steps=num_steps, method=method)
        assert isinstance(x, Tensor)
        dm = batch.dof_mask.to(x.dtype)
        return x * (dm if dm.ndim == 3 else dm[:, None, :])  # padded DOFs pinned at the normalised zero
