"""A timm-layout VisionTransformer, for testing and benchmarking the timm patch without timm.

``import timm`` imports torchvision, whose PyPI wheels do not load on the CPU build of torch
this project pins, so the suite cannot rely on timm. This module rebuilds the part of timm's
``VisionTransformer`` the patch touches, with timm's module names, state_dict keys and forward
pass (``patch_embed``, ``cls_token``/``reg_token``, ``pos_embed``, ``blocks`` of ``Block``
with ``norm1``/``attn``/``ls1``/``drop_path1``/``norm2``/``mlp``/``ls2``/``drop_path2``, the
``Attention`` module with ``qkv``/``q_norm``/``k_norm``/``norm``/``proj`` on the fused
``scaled_dot_product_attention`` path, ``norm``, ``fc_norm``, ``head``), and the sizes of
ViT-Ti/S/B/16. Where timm imports, the tests run the patch on timm itself as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VIT_SIZES", "Attention", "Block", "VisionTransformer", "vit"]

#: ``(embed_dim, depth, num_heads)`` of timm's ``vit_{tiny,small,base}_patch16_224``.
VIT_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = False,
                 scale_norm: bool = False, proj_bias: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.norm = nn.LayerNorm(dim, eps=1e-6) if scale_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        x = x.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(self.norm(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.drop1 = nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0)
        self.norm, self.fc2, self.drop2 = nn.Identity(), nn.Linear(hidden, dim), nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, init_values: float | None = None,
                 **attn_options) -> None:  # fmt: skip
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, **attn_options)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = nn.Identity()

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(3, dim, patch_size, patch_size)
        self.norm = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class VisionTransformer(nn.Module):
    """timm's ``VisionTransformer`` (class token and/or register tokens, ``token`` or ``avg``
    pooling), at ``img_size`` with 16-pixel patches."""

    def __init__(self, embed_dim: int = 192, depth: int = 12, num_heads: int = 3,
                 img_size: int = 224, patch_size: int = 16, num_classes: int = 1000,
                 class_token: bool = True, reg_tokens: int = 0, global_pool: str = "token",
                 init_values: float | None = None, **attn_options) -> None:  # fmt: skip
        super().__init__()
        self.embed_dim, self.global_pool = embed_dim, global_pool
        self.num_prefix_tokens = int(class_token) + reg_tokens
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02) if class_token else None
        self.reg_token = (nn.Parameter(torch.randn(1, reg_tokens, embed_dim) * 0.02)
                          if reg_tokens else None)  # fmt: skip
        num_tokens = self.patch_embed.num_patches + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.randn(1, num_tokens, embed_dim) * 0.02)
        self.pos_drop = nn.Dropout(0.0)
        self.patch_drop, self.norm_pre = nn.Identity(), nn.Identity()
        self.blocks = nn.Sequential(*(Block(embed_dim, num_heads, init_values, **attn_options)
                                      for _ in range(depth)))  # fmt: skip
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc_norm = nn.Identity()
        self.head_drop = nn.Dropout(0.0)
        self.head = nn.Linear(embed_dim, num_classes)

    def _pos_embed(self, x: Tensor) -> Tensor:
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token)
                  if t is not None]  # fmt: skip
        return self.pos_drop(torch.cat([*prefix, x], dim=1) + self.pos_embed)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        return self.norm(self.blocks(x))

    def forward_head(self, x: Tensor) -> Tensor:
        x = x[:, self.num_prefix_tokens :].mean(dim=1) if self.global_pool == "avg" else x[:, 0]
        return self.head(self.head_drop(self.fc_norm(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def vit(size: str = "tiny", **overrides) -> VisionTransformer:
    """ViT-Ti/S/B/16 at 224 (``size``: ``"tiny"``, ``"small"`` or ``"base"``), timm's layout."""
    embed_dim, depth, num_heads = VIT_SIZES[size]
    options = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, **overrides}
    return VisionTransformer(**options)
