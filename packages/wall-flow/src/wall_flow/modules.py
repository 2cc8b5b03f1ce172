"""Action-expert building blocks: time embeddings, (adaptive) RMSNorm, the wall-x action projector, a
transformer expert whose layers share attention with a host model, and a small MLP velocity head.

Shapes: hidden states [B, L, W]; attention tensors [B, heads, L, head_dim]; actions [B, H, D]; times [B].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ActionExpert",
    "ActionExpertLayer",
    "ActionInputProjector",
    "AdaRMSNorm",
    "FlowMLPHead",
    "RMSNorm",
    "SinusoidalTimeEmbedding",
    "SwiGLU",
    "joint_attention",
]


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoidal embedding of raw t in [0, 1] (periods from ``min_period`` to ``max_period``)."""

    def __init__(self, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim must be even, got {dim}")
        frac = torch.linspace(0, 1, dim // 2)
        period = min_period * (max_period / min_period) ** frac
        self.register_buffer("freq", 2 * math.pi / period, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        ang = t.float()[:, None] * self.freq[None]
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


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
        scale, shift, gate = self.proj(cond)[:, None, :].chunk(3, dim=-1)
        y = F.rms_norm(x, (x.shape[-1],), None, self.eps)
        return y * (1 + scale) + shift, gate


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        g, u = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(g) * u)


def joint_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention with grouped KV heads; q [B,Hq,Lq,d], k/v [B,Hkv,Lk,d] -> [B,Lq,Hq*d].

    ``mask`` is boolean, True = may attend, broadcastable to [B, Hq, Lq, Lk].
    """
    if q.shape[1] != k.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


class ActionInputProjector(nn.Module):
    """wall-x style: W1 on [x_t ; dof_mask] (2D -> d), sinusoidal time at width d, W2 on the concatenation
    (2d -> d), SiLU, W3 (d -> d). This is the "concatenated time embedding" conditioning."""

    def __init__(self, action_dim: int, width: int) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.w1 = nn.Linear(2 * action_dim, width)
        self.time = SinusoidalTimeEmbedding(width)
        self.w2 = nn.Linear(2 * width, width)
        self.w3 = nn.Linear(width, width)

    def forward(self, x_t: Tensor, t: Tensor, dof_mask: Tensor | None = None) -> Tensor:
        if x_t.shape[-1] != self.action_dim:
            raise ValueError(f"actions have {x_t.shape[-1]} dims, projector expects {self.action_dim}")
        m = (
            torch.ones_like(x_t)
            if dof_mask is None
            else dof_mask.to(x_t.dtype).reshape(x_t.shape[0], -1, x_t.shape[-1]).expand_as(x_t)
        )
        a = self.w1(torch.cat([x_t * m, m], dim=-1))
        te = self.time(t).to(a.dtype)[:, None, :].expand_as(a)
        return self.w3(F.silu(self.w2(torch.cat([a, te], dim=-1))))


class ActionExpertLayer(nn.Module):
    """One Mixture-of-Transformers expert layer: own norms, QKV/O and SwiGLU at its own (narrow) width,
    projecting into a head space shared with a host model so all tokens can meet in one attention.

    A host drives the shared attention through the two halves ``qkv`` (pre-RoPE) and ``finish``; ``forward``
    is the self-contained version that attends to external prefix keys/values placed before its own.
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

    def qkv(self, h: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        x, self._gate_attn = self._norm(self.norm_in, h, cond)
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
        return q.view(shape).transpose(1, 2), k.view(shape).transpose(1, 2), v.view(shape).transpose(1, 2)

    def finish(self, h: Tensor, attn_out: Tensor, cond: Tensor | None = None) -> Tensor:
        a = self.o_proj(attn_out)
        h = h + (a if self._gate_attn is None else self._gate_attn * a)
        x, gate = self._norm(self.norm_post, h, cond)
        m = self.mlp(x)
        return h + (m if gate is None else gate * m)

    def forward(
        self,
        h: Tensor,
        kv_prefix: tuple[Tensor, Tensor] | None = None,
        attn_mask: Tensor | None = None,
        cond: Tensor | None = None,
    ) -> Tensor:
        q, k, v = self.qkv(h, cond)
        if kv_prefix is not None:
            k, v = torch.cat([kv_prefix[0], k], dim=2), torch.cat([kv_prefix[1], v], dim=2)
        return self.finish(h, joint_attention(q, k, v, attn_mask), cond)


class ActionExpert(nn.Module):
    """A stack of expert layers mapping noisy actions + time (+ optional per-layer prefix K/V) to velocity."""

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
    ) -> None:
        super().__init__()
        if time_cond not in ("concat", "adarms"):
            raise ValueError(f"time_cond must be 'concat' or 'adarms', got {time_cond!r}")
        self.time_cond = time_cond
        self.proj_in = ActionInputProjector(action_dim, width)
        self.time_mlp = nn.Sequential(SinusoidalTimeEmbedding(width), nn.Linear(width, width), nn.SiLU())
        self.layers = nn.ModuleList(
            ActionExpertLayer(
                width,
                num_heads,
                num_kv_heads,
                head_dim,
                mlp_width or 4 * width,
                time_cond="adarms" if time_cond == "adarms" else None,
                cond_dim=width,
            )
            for _ in range(num_layers)
        )
        self.norm = RMSNorm(width)
        self.proj_out = nn.Linear(width, action_dim)

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        dof_mask: Tensor | None = None,
        prefix_kv: list[tuple[Tensor, Tensor]] | None = None,
        prefix_mask: Tensor | None = None,
    ) -> Tensor:
        """``prefix_kv``: one (k, v) pair [B, Hkv, P, head_dim] per layer from any host model."""
        if prefix_kv is not None and len(prefix_kv) != len(self.layers):
            raise ValueError(f"prefix_kv has {len(prefix_kv)} layers, the expert has {len(self.layers)}")
        h = self.proj_in(x_t, t, dof_mask)
        cond = self.time_mlp(t).to(h.dtype) if self.time_cond == "adarms" else None
        mask = None
        if prefix_mask is not None:  # [B, P] bool: which prefix positions are real
            own = torch.ones(h.shape[0], h.shape[1], dtype=torch.bool, device=h.device)
            mask = torch.cat([prefix_mask.bool(), own], dim=1)[:, None, None, :]
        for i, layer in enumerate(self.layers):
            h = layer(h, None if prefix_kv is None else prefix_kv[i], mask, cond)
        return self.proj_out(self.norm(h))


class FlowMLPHead(nn.Module):
    """Velocity MLP for small models: [flattened x_t ; time embedding ; conditioning] -> velocity [B, H, D]."""

    def __init__(
        self, action_dim: int, horizon: int, cond_dim: int = 0, hidden: int = 256, depth: int = 3
    ) -> None:
        super().__init__()
        self.horizon, self.action_dim, self.cond_dim = horizon, action_dim, cond_dim
        self.time = SinusoidalTimeEmbedding(64)
        dims = [horizon * action_dim + 64 + cond_dim] + [hidden] * depth
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, horizon * action_dim))

    def forward(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        parts = [x_t.flatten(1), self.time(t).to(x_t.dtype)]
        if self.cond_dim:
            if cond is None or cond.shape[-1] != self.cond_dim:
                raise ValueError(f"this head expects a conditioning vector of size {self.cond_dim}")
            parts.append(cond)
        return self.net(torch.cat(parts, dim=-1)).view(-1, self.horizon, self.action_dim)
