"""Deliberately naive reference computations, written for clarity rather than speed.

They loop over batch and group and spell out every concatenation and softmax, so they share no
code path with the library.
"""

from __future__ import annotations

import torch
from torch import Tensor


def naive_group_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_shared: int,
    key_mask: Tensor | None,
    scale: float,
) -> tuple[Tensor, Tensor]:
    """Group attention by explicit loops, in float64.

    Args:
        q, k, v: ``[B, G, H, N, D]``.
        key_mask: ``[B, G, N]`` bool or None.

    Returns:
        ``(out [B, G, H, N, D], logits [B, G, H, N, G*S + N - S])``, the logits of *every*
        query row with masked keys at ``-inf``; a group with no real key outputs zeros.
    """
    q, k, v = q.double(), k.double(), v.double()
    batch, groups, heads, tokens, dim = q.shape
    s = num_shared
    if key_mask is None:
        key_mask = torch.ones(batch, groups, tokens, dtype=torch.bool)
    outs = torch.zeros(batch, groups, heads, tokens, dim, dtype=torch.float64)
    all_logits = []
    for b in range(batch):
        per_group = []
        for g in range(groups):
            # keys: shared slots of every group in group order, then this group's private slots
            keys = torch.cat([k[b, h_, :, :s] for h_ in range(groups)] + [k[b, g, :, s:]], dim=1)
            values = torch.cat([v[b, h_, :, :s] for h_ in range(groups)] + [v[b, g, :, s:]], dim=1)
            valid = torch.cat([key_mask[b, h_, :s] for h_ in range(groups)] + [key_mask[b, g, s:]])
            logits = (q[b, g] @ keys.transpose(-1, -2)) * scale  # [H, N, Nk]
            logits = logits.masked_fill(~valid, float("-inf"))
            per_group.append(logits)
            if valid.any():
                probs = torch.softmax(logits, dim=-1)
                outs[b, g] = probs @ values
        all_logits.append(torch.stack(per_group))
    return outs, torch.stack(all_logits)


def split_heads(x: Tensor, heads: int) -> Tensor:
    """``[..., N, H*D] -> [..., H, N, D]``."""
    *lead, n, width = x.shape
    return x.reshape(*lead, n, heads, width // heads).movedim(-2, -3)


def naive_mhga(module, x: Tensor, num_shared: int, key_mask: Tensor | None) -> Tensor:
    """MultiHeadGroupAttention's forward by hand from the module's weights, in float64.

    ``x``: ``[B, G, N, D]``. Returns ``[B, G, N, D]`` float64.
    """
    x = x.double()
    w_qkv = module.qkv.weight.double()
    b_qkv = None if module.qkv.bias is None else module.qkv.bias.double()
    qkv = torch.nn.functional.linear(x, w_qkv, b_qkv)
    q, k, v = qkv.chunk(3, dim=-1)
    heads = module.num_heads
    out, _ = naive_group_attention(
        split_heads(q, heads), split_heads(k, heads), split_heads(v, heads),
        num_shared, key_mask, module.scale,
    )
    merged = out.movedim(-3, -2).flatten(-2)  # [B, G, N, H*D]
    proj = module.proj
    return torch.nn.functional.linear(merged, proj.weight.double(), proj.bias.double())


def naive_density_peaks(
    features: Tensor, k: int, tie_break: str = "index"
) -> tuple[Tensor, Tensor, Tensor]:
    """DPC-kNN by loops over frames, in float64, distances computed pair by pair. With
    ``tie_break="index"`` an earlier frame of equal density counts as denser.

    ``features``: ``[B, T, C]``. Returns ``(density, parent_distance, score)``, each ``[B, T]``.
    """
    x = features.double()
    batch, frames, width = x.shape
    density = torch.zeros(batch, frames, dtype=torch.float64)
    parent = torch.zeros(batch, frames, dtype=torch.float64)
    for b in range(batch):
        dist = [[float(((x[b, i] - x[b, j]) ** 2).sum().sqrt()) / width**0.5
                 for j in range(frames)] for i in range(frames)]  # fmt: skip
        for i in range(frames):
            nearest = sorted(dist[i])[:k]
            mean_square = sum(d * d for d in nearest) / k
            density[b, i] = torch.tensor(-mean_square, dtype=torch.float64).exp()
        farthest = max(max(row) for row in dist)
        rho = density[b].tolist()
        for i in range(frames):
            denser = [
                dist[i][j]
                for j in range(frames)
                if rho[j] > rho[i] or (rho[j] == rho[i] and tie_break == "index" and j < i)
            ]
            parent[b, i] = min(denser) if denser else farthest
    return density, parent, density * parent
