"""Action-expert building blocks: time embeddings, (adaptive) RMSNorm, the wall-x action projector, a
transformer expert whose layers share attention with a host model, and a small MLP velocity head.

Shapes: hidden states [B, L, W]; attention tensors [B, heads, L, head_dim]; actions [B, H, D]; times [B].

Mixture-of-Transformers interface (how a host VLM drives :class:`ActionExpert`): per layer i the host hands
the keys/values of its prefix tokens ``prefix_kv[i] = (k, v)``, each [B, Hkv, P, head_dim] with RoPE already
applied, a boolean attention mask [B, 1, H, P + H] (True = may attend; columns = prefix then the H action
slots) and a ``rope(q, k) -> (q, k)`` callable that rotates the expert's own queries/keys [B, heads, H, d] at
the action slots' positions. The expert then runs, per layer: ``q, k, v, gate = layer.qkv(h)`` ->
``rope`` -> one joint attention over [prefix ; own] -> ``layer.finish(h, attn, gate)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import joint_attention

__all__ = [
    "ActionExpert",
    "ActionExpertLayer",
    "ActionInputProjector",
    "AdaRMSNorm",
    "FlowMLPHead",
    "RMSNorm",
    "RopeFn",
    "SinusoidalTimeEmbedding",
    "SwiGLU",
    "joint_attention",
]

RopeFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
TIME_EMBEDDINGS = ("period", "log_freq")


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoidal embedding of raw t [B] -> [B, dim] = [sin(t·f) ; cos(t·f)] (sin first), f of size dim/2.

    ``kind="period"`` (openpi-style, our presets): f = 2π / period, periods geometric from ``min_period`` to
    ``max_period``. ``kind="log_freq"`` (Wall-OSS-0.5): f_i = exp(-i·ln(1e4) / (dim/2 - 1)), i = 0..dim/2-1.
    """

    def __init__(
        self, dim: int, min_period: float = 4e-3, max_period: float = 4.0, kind: str = "period"
    ) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim must be even, got {dim}")
        if kind not in TIME_EMBEDDINGS:
            raise ValueError(f"time embedding kind must be one of {TIME_EMBEDDINGS}, got {kind!r}")
        half = dim // 2
        if kind == "period":
            frac = torch.linspace(0, 1, half)
            freq = 2 * math.pi / (min_period * (max_period / min_period) ** frac)
        else:
            freq = torch.exp(-torch.arange(half, dtype=torch.float32) * math.log(10000.0) / max(half - 1, 1))
        self.kind = kind
        self.freq: Tensor
        self.register_buffer("freq", freq, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """t [B] (raw, in [0, 1]) -> [B, dim] float32."""
        ang = t.float()[:, None] * self.freq[None]
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32: ``weight · x / sqrt(mean(x²) + eps)``, cast back to the input dtype. [..., dim]."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """x [..., dim] -> [..., dim]."""
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * y.to(x.dtype)


class AdaRMSNorm(nn.Module):
    """RMSNorm whose scale, shift and residual gate come from a conditioning vector.

    The projection is zero-initialised, so at init scale = shift = gate = 0: the normalised output equals a
    plain RMSNorm and the gated residual branch contributes nothing (the block starts as the identity).
    """

    def __init__(self, dim: int, cond_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.proj = nn.Linear(cond_dim, 3 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, L, dim], cond [B, cond_dim] -> (normalised x [B, L, dim], residual gate [B, 1, dim])."""
        scale, shift, gate = self.proj(cond)[:, None, :].chunk(3, dim=-1)
        y = F.rms_norm(x, (x.shape[-1],), None, self.eps)
        return y * (1 + scale) + shift, gate


class SwiGLU(nn.Module):
    """``down(silu(gate) · up)`` with one fused ``gate_up`` Linear (rows [gate | up]), no biases. [..., dim]."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """x [..., dim] -> [..., dim]."""
        g, u = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(g) * u)


class ActionInputProjector(nn.Module):
    """wall-x style: ``h = w3(silu(w2([w1([x_in ; m]) ; temb(t)])))`` with widths 2D -> d, 2d -> d, d -> d.

    ``mask_input="masked"`` feeds ``x_in = x_t · m`` (padded DOFs hidden; our presets), ``"raw"`` feeds
    ``x_in = x_t`` (Wall-OSS-0.5). ``bias=False`` drops every bias (Wall-OSS-0.5). ``time_embedding`` is the
    :class:`SinusoidalTimeEmbedding` kind. x_t [B, H, D], t [B], dof_mask [B, D] or [B, H, D] -> [B, H, d].
    """

    def __init__(
        self,
        action_dim: int,
        width: int,
        bias: bool = True,
        mask_input: Literal["masked", "raw"] = "masked",
        time_embedding: str = "period",
    ) -> None:
        super().__init__()
        if mask_input not in ("masked", "raw"):
            raise ValueError(f"mask_input must be 'masked' or 'raw', got {mask_input!r}")
        self.action_dim, self.mask_input = action_dim, mask_input
        self.w1 = nn.Linear(2 * action_dim, width, bias=bias)
        self.time = SinusoidalTimeEmbedding(width, kind=time_embedding)
        self.w2 = nn.Linear(2 * width, width, bias=bias)
        self.w3 = nn.Linear(width, width, bias=bias)

    def forward(self, x_t: Tensor, t: Tensor, dof_mask: Tensor | None = None) -> Tensor:
        """x_t [B, H, D], t [B] (or per-step times [B, H]: training-time RTC gives the clean prefix steps t = 1),
        dof_mask [B, D] / [B, H, D] (None = all real) -> [B, H, width]."""
        if x_t.shape[-1] != self.action_dim:
            raise ValueError(f"actions have {x_t.shape[-1]} dims, projector expects {self.action_dim}")
        x_t = x_t.to(self.w1.weight.dtype)  # bf16-true: float32 inputs meet bf16 weights
        m = (
            torch.ones_like(x_t)
            if dof_mask is None
            else dof_mask.to(x_t.dtype).reshape(x_t.shape[0], -1, x_t.shape[-1]).expand_as(x_t)
        )
        x_in = x_t * m if self.mask_input == "masked" else x_t
        a = self.w1(torch.cat([x_in, m], dim=-1))
        if t.dim() == 2 and t.shape != x_t.shape[:2]:
            raise ValueError(f"per-step times must be [B, H] = {tuple(x_t.shape[:2])}, got {tuple(t.shape)}")
        te = self.time(t.reshape(-1)).to(a.dtype).reshape(*t.shape, -1)
        te = te[:, None, :].expand_as(a) if t.dim() == 1 else te
        return self.w3(F.silu(self.w2(torch.cat([a, te], dim=-1))))


class ActionExpertLayer(nn.Module):
    """One Mixture-of-Transformers expert layer: own norms, fused QKV/O and SwiGLU at its own (narrow) width,
    projecting into a head space shared with a host model so all tokens can meet in one attention.

    A host drives the shared attention through the two halves ``qkv`` (pre-RoPE) and ``finish``; ``qkv``
    returns everything ``finish`` needs (no state is kept between them). ``forward`` is the self-contained
    version that attends to external prefix keys/values placed before its own.
    Weights: ``qkv_proj`` [(Hq + 2·Hkv)·d, width] (+bias), rows [q | k | v]; ``o_proj`` [width, Hq·d], no bias.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        mlp_width: int,
        time_cond: str | None = None,
        cond_dim: int | None = None,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads={num_heads} must be a multiple of num_kv_heads={num_kv_heads}")
        if time_cond not in (None, "adarms"):
            raise ValueError(f"time_cond must be None or 'adarms', got {time_cond!r}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.time_cond = time_cond
        self.qkv_proj = nn.Linear(width, (num_heads + 2 * num_kv_heads) * head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(num_heads * head_dim, width, bias=False)
        self.mlp = SwiGLU(width, mlp_width)
        if time_cond == "adarms":
            self.norm_in: nn.Module = AdaRMSNorm(width, cond_dim or width)
            self.norm_post: nn.Module = AdaRMSNorm(width, cond_dim or width)
        else:
            self.norm_in, self.norm_post = RMSNorm(width), RMSNorm(width)

    def _norm(self, norm: nn.Module, h: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if self.time_cond == "adarms":
            if cond is None:
                raise ValueError("this layer uses adaRMS time conditioning: pass cond (the time embedding)")
            return norm(h, cond)
        return norm(h), None

    def qkv(self, h: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """h [B, n, width] -> (q [B, Hq, n, d], k [B, Hkv, n, d], v [B, Hkv, n, d], attention gate or None);
        q and k are pre-RoPE. Pass the gate on to :meth:`finish`."""
        x, gate_attn = self._norm(self.norm_in, h, cond)
        b, n, _ = x.shape
        q, k, v = self.qkv_proj(x).split(
            [
                self.num_heads * self.head_dim,
                self.num_kv_heads * self.head_dim,
                self.num_kv_heads * self.head_dim,
            ],
            dim=-1,
        )
        shape = (b, n, -1, self.head_dim)
        q, k, v = (y.view(shape).transpose(1, 2) for y in (q, k, v))
        return q, k, v, gate_attn

    def finish(
        self, h: Tensor, attn_out: Tensor, gate_attn: Tensor | None = None, cond: Tensor | None = None
    ) -> Tensor:
        """Residual updates after the joint attention: h [B, n, width], attn_out [B, n, Hq·d] and the gate
        returned by :meth:`qkv` -> h [B, n, width]."""
        a = self.o_proj(attn_out)
        h = h + (a if gate_attn is None else gate_attn * a)
        x, gate = self._norm(self.norm_post, h, cond)
        m = self.mlp(x)
        return h + (m if gate is None else gate * m)

    def forward(
        self,
        h: Tensor,
        kv_prefix: tuple[Tensor, Tensor] | None = None,
        attn_mask: Tensor | None = None,
        cond: Tensor | None = None,
        rope: RopeFn | None = None,
    ) -> Tensor:
        """h [B, n, width]; ``kv_prefix`` (k, v) [B, Hkv, P, d] post-RoPE; ``attn_mask`` [B, 1, n, P + n]
        bool; ``rope`` rotates the layer's own (q, k) -> h [B, n, width]."""
        q, k, v, gate = self.qkv(h, cond)
        if rope is not None:
            q, k = rope(q, k)
        if kv_prefix is not None:
            k, v = torch.cat([kv_prefix[0], k], dim=2), torch.cat([kv_prefix[1], v], dim=2)
        return self.finish(h, joint_attention(q, k, v, attn_mask), gate, cond)


class ActionExpert(nn.Module):
    """The action expert: ``proj_in`` (:class:`ActionInputProjector`) -> ``layers`` (:class:`ActionExpertLayer`,
    each attending to a host's per-layer prefix K/V) -> final ``norm`` -> ``proj_out`` (velocity).

    Standalone (``prefix_kv=None``) it is a plain transformer over the action slots. Inside a VLA the host
    follows the MoT interface of the module docstring. ``time_cond="concat"`` feeds time only through
    ``proj_in``; ``"adarms"`` also conditions every norm (adaRMS, zero-initialised gates).
    """

    def __init__(
        self,
        action_dim: int,
        width: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        num_kv_heads: int = 1,
        head_dim: int = 64,
        mlp_width: int | None = None,
        time_cond: str = "concat",
        proj_bias: bool = True,
        mask_input: Literal["masked", "raw"] = "masked",
        time_embedding: str = "period",
    ) -> None:
        super().__init__()
        if time_cond not in ("concat", "adarms"):
            raise ValueError(f"time_cond must be 'concat' or 'adarms', got {time_cond!r}")
        self.time_cond = time_cond
        self.activation_checkpointing = False
        # construction order fixes the parameter-init RNG sequence: layers, proj_in, time_mlp, norm, proj_out
        self.layers = nn.ModuleList(
            ActionExpertLayer(
                width,
                num_heads,
                num_kv_heads,
                head_dim,
                mlp_width or 4 * width,
                time_cond="adarms" if time_cond == "adarms" else None,
                cond_dim=width,
            )  # fmt: skip
            for _ in range(num_layers)
        )
        self.proj_in = ActionInputProjector(action_dim, width, proj_bias, mask_input, time_embedding)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU()) if time_cond == "adarms" else None
        self.norm = RMSNorm(width)
        self.proj_out = nn.Linear(width, action_dim, bias=proj_bias)

    @staticmethod
    def own_block_mask(prefix_mask: Tensor | None, batch: int, n: int, device: torch.device) -> Tensor | None:
        """[B, 1, 1, P + n] mask from a prefix validity mask [B, P] (None -> None); own slots all visible."""
        if prefix_mask is None:
            return None
        own = torch.ones(batch, n, dtype=torch.bool, device=device)
        return torch.cat([prefix_mask.bool(), own], dim=1)[:, None, None, :]

    def hidden(
        self,
        x_t: Tensor,
        t: Tensor,
        dof_mask: Tensor | None = None,
        prefix_kv: list[tuple[Tensor, Tensor]] | None = None,
        attn_mask: Tensor | None = None,
        rope: RopeFn | None = None,
        collect: list[Tensor] | None = None,
    ) -> Tensor:
        """Expert hidden states after the final norm [B, H, width]; ``collect`` receives each layer's output."""
        if prefix_kv is not None and len(prefix_kv) != len(self.layers):
            raise ValueError(f"prefix_kv has {len(prefix_kv)} layers, the expert has {len(self.layers)}")
        if t.dim() == 2 and self.time_mlp is not None:
            raise ValueError(
                "per-step times [B, H] (training-time RTC) need time_cond='concat'; adaRMS is per row"
            )
        h = self.proj_in(x_t, t, dof_mask)
        cond = self.time_mlp(self.proj_in.time(t).to(h.dtype)) if self.time_mlp is not None else None
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            kv = None if prefix_kv is None else prefix_kv[i]
            if recompute:
                # the call (hooks included: FSDP2 unshards in forward and skips its hooks in the recompute)
                h = checkpoint(layer, h, kv, attn_mask, cond, rope, use_reentrant=False)
            else:
                h = layer(h, kv, attn_mask, cond, rope)
            if collect is not None:
                collect.append(h)
        return self.norm(h)

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        dof_mask: Tensor | None = None,
        prefix_kv: list[tuple[Tensor, Tensor]] | None = None,
        prefix_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        rope: RopeFn | None = None,
    ) -> Tensor:
        """Velocity [B, H, D] for noisy actions x_t [B, H, D] at times t [B].

        ``prefix_kv``: one (k, v) pair [B, Hkv, P, head_dim] per layer from any host model (post-RoPE);
        ``prefix_mask`` [B, P] bool (which prefix positions are real; own slots see each other), or a full
        ``attn_mask`` [B, 1, H, P + H] bool; ``rope`` rotates the expert's own (q, k) at its positions.
        """
        if attn_mask is None:
            attn_mask = self.own_block_mask(prefix_mask, x_t.shape[0], x_t.shape[1], x_t.device)
        return self.proj_out(self.hidden(x_t, t, dof_mask, prefix_kv, attn_mask, rope))


class FlowMLPHead(nn.Module):
    """Velocity MLP for small models: [flattened x_t ; time embedding ; conditioning] -> velocity [B, H, D]."""

    def __init__(
        self, action_dim: int, action_horizon: int, cond_dim: int = 0, hidden: int = 256, depth: int = 3
    ) -> None:
        super().__init__()
        self.action_horizon, self.action_dim, self.cond_dim = action_horizon, action_dim, cond_dim
        self.time = SinusoidalTimeEmbedding(64)
        dims = [action_horizon * action_dim + 64 + cond_dim] + [hidden] * depth
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, action_horizon * action_dim))

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """x_t [B, H, D], t [B], cond [B, cond_dim] (when cond_dim > 0) -> velocity [B, H, D]."""
        parts = [x_t.flatten(1), self.time(t).to(x_t.dtype)]
        if self.cond_dim:
            if cond is None or cond.shape[-1] != self.cond_dim:
                raise ValueError(f"this head expects a conditioning vector of size {self.cond_dim}")
            parts.append(cond)
        return self.net(torch.cat(parts, dim=-1)).view(-1, self.action_horizon, self.action_dim)
