"""tokenprune.patch.timm: group attention and token pruning in a timm VisionTransformer.

Tested on tests/oracles/timm_vit.py (timm's layout and forward pass; timm itself does not import
on this project's CPU torch build) and on timm where it imports.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenprune.patch
from tests.oracles.timm_vit import vit
from tokenprune import MultiHeadGroupAttention

VARIANTS = {
    "vit_tiny": {},
    "qk_norm, no proj bias": {"qk_norm": True, "proj_bias": False},
    "scale_norm, no qkv bias": {"scale_norm": True, "qkv_bias": False},
    "registers, avg pool, layer scale": {"reg_tokens": 4, "global_pool": "avg",
                                         "init_values": 0.1},
}  # fmt: skip


def _small(**overrides):
    """ViT-Ti/16 at 64x64 (16 patches), 6 blocks: the layout of the real thing, quick."""
    torch.manual_seed(0)
    options = {"img_size": 64, "depth": 6, "num_classes": 10, **overrides}
    return vit("tiny", **options).eval()


def _tokens_per_block(model, images) -> list[int]:
    """Tokens entering each block's MLP (after its attention and any pruning)."""
    counts = []
    hooks = [block.mlp.register_forward_pre_hook(lambda m, a: counts.append(a[0].shape[1]))
             for block in model.blocks]  # fmt: skip
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return counts


@pytest.mark.parametrize("options", list(VARIANTS.values()), ids=list(VARIANTS))
def test_keep_rate_one_is_bit_identical_and_loads_strictly(options):
    model = _small(**options)
    images = torch.randn(2, 3, 64, 64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model(images)
    patched = tokenprune.patch.timm(model, keep_rate=1.0, layers=(1, 3), fuse=False,
                                    rule="mean")  # fmt: skip
    assert patched is model
    assert all(isinstance(block.attn, MultiHeadGroupAttention) for block in model.blocks)
    after = model.state_dict()
    assert list(after) == list(state)
    assert all(torch.equal(after[k], state[k]) for k in state)
    with torch.no_grad():
        assert torch.equal(model(images), expected)


@settings(deadline=None, max_examples=15)
@given(keep_rate=st.floats(0.05, 1.0), layers=st.sets(st.integers(0, 5), max_size=4),
       fuse=st.booleans())  # fmt: skip
def test_kept_token_counts_follow_evits_rule(keep_rate, layers, fuse):
    model = tokenprune.patch.timm(_small(), keep_rate=keep_rate, layers=layers, fuse=fuse)
    expected, patches = [], 16
    for index in range(6):
        kept = math.ceil(keep_rate * patches)  # EViT: ceil; a fused token when any is pruned
        if index in layers and kept < patches:
            patches = kept + int(fuse)
        expected.append(1 + patches)
    assert _tokens_per_block(model, torch.randn(1, 3, 64, 64)) == expected


def _evit_reference(model, images, keep_rate: float, layers) -> torch.Tensor:
    """EViT written out on the unpatched weights: explicit attention, the class token's
    head-averaged attention as scores, top-k, and the fused inattentive token."""
    x = model._pos_embed(model.patch_embed(images))
    for index, block in enumerate(model.blocks):
        attn = block.attn
        b, n, c = x.shape
        qkv = attn.qkv(block.norm1(x)).reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        probs = (qkv[0] @ qkv[1].transpose(-2, -1) * attn.scale).softmax(-1)
        out = (probs @ qkv[2]).transpose(1, 2).reshape(b, n, c)
        x = x + attn.proj(out)
        if index in layers:
            cls_attn = probs[:, :, 0, 1:].mean(1)  # [B, n - 1]
            k = math.ceil(keep_rate * (n - 1))
            top = cls_attn.topk(k, dim=1).indices
            pruned = torch.ones_like(cls_attn, dtype=torch.bool).scatter(1, top, False)
            weights = (cls_attn * pruned)[..., None]
            fused = (x[:, 1:] * weights).sum(1, keepdim=True)
            kept = x[:, 1:].gather(1, top[..., None].expand(-1, -1, c))
            x = torch.cat([x[:, :1], kept, fused], dim=1)
        x = x + block.mlp(block.norm2(x))
    return model.forward_head(model.norm(x))


def test_pruned_model_equals_evit_written_out():
    model = _small()
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = _evit_reference(model, images, 0.5, (1, 3))
        patched = tokenprune.patch.timm(model, keep_rate=0.5, layers=(1, 3))
        torch.testing.assert_close(patched(images), expected, atol=1e-5, rtol=1e-5)


def test_settings_can_change_afterwards():
    model = tokenprune.patch.timm(_small(), keep_rate=0.5, layers=(1,))
    images = torch.randn(1, 3, 64, 64)
    assert _tokens_per_block(model, images) == [17, 1 + 8 + 1, 10, 10, 10, 10]
    model.keep_rate, model.prune_layers = 0.25, [0, 2]
    assert model.prune_layers == (0, 2)
    assert _tokens_per_block(model, images) == [1 + 4 + 1, 6, 1 + 2 + 1, 4, 4, 4]
    model.keep_rate = 1.0
    assert _tokens_per_block(model, images) == [17] * 6
    with pytest.raises(ValueError, match="keep_rate must be in"):
        model.keep_rate = 0.0
    with pytest.raises(ValueError, match=r"layers\[\] must be <= 5"):
        model.prune_layers = (6,)


@pytest.mark.parametrize("rule", ["mean", "softmax_pool"])
def test_other_rules_score_by_the_prefix_tokens(rule):
    model = tokenprune.patch.timm(_small(reg_tokens=2), keep_rate=0.5, layers=(0,), rule=rule,
                                  fuse=False)  # fmt: skip
    assert _tokens_per_block(model, torch.randn(2, 3, 64, 64))[0] == 3 + 8
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 3, 64, 64))).all()


def test_trains_and_compiles():
    model = tokenprune.patch.timm(_small(), keep_rate=0.5, layers=(1, 3)).train()
    images = torch.randn(2, 3, 64, 64)
    F.cross_entropy(model(images), torch.tensor([1, 2])).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(images), model(images), atol=1e-5, rtol=1e-5)


def test_bad_input_is_refused_naming_the_argument():
    with pytest.raises(TypeError, match="model must be a timm VisionTransformer"):
        tokenprune.patch.timm(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="model must be a timm VisionTransformer"):
        tokenprune.patch.timm("vit")
    with pytest.raises(ValueError, match="rule 'cls' scores by the class token"):
        tokenprune.patch.timm(_small(class_token=False, global_pool="avg"), layers=(1,))
    with pytest.raises(ValueError, match="rule must be one of"):
        tokenprune.patch.timm(_small(), layers=(1,), rule="max")
    with pytest.raises(ValueError, match="fuse=True weights tokens by probabilities"):
        tokenprune.patch.timm(_small(), layers=(1,), rule="softmax_pool")
    with pytest.raises(ValueError, match="keep_rate must be in"):
        tokenprune.patch.timm(_small(), keep_rate=1.5, layers=(1,))
    with pytest.raises(TypeError, match="layers must be an iterable"):
        tokenprune.patch.timm(_small(), layers=3)
    with pytest.raises(ValueError, match=r"layers\[\] must be <= 5"):
        tokenprune.patch.timm(_small())  # the default (3, 6, 9) is for 12 blocks
    with pytest.raises(TypeError, match="fuse must be a bool"):
        tokenprune.patch.timm(_small(), layers=(1,), fuse="yes")
    model = tokenprune.patch.timm(_small(), layers=(1,))
    with pytest.raises(ValueError, match="already patched"):
        tokenprune.patch.timm(model)


def test_group_attention_refuses_masks_it_cannot_honour():
    attn = MultiHeadGroupAttention(8, 2)
    x = torch.randn(1, 4, 8)
    assert torch.equal(attn(x, attn_mask=None, is_causal=False), attn(x))
    with pytest.raises(ValueError, match="supports neither attn_mask nor is_causal"):
        attn(x, attn_mask=torch.zeros(4, 4))
    with pytest.raises(ValueError, match="supports neither attn_mask nor is_causal"):
        attn(x, is_causal=True)


def test_on_timm_itself():
    timm = pytest.importorskip(
        "timm", reason="timm does not import here (it imports torchvision, whose PyPI wheels do "
        "not load on the CPU torch build); the timm-layout oracle stands in"
    )  # fmt: skip
    for name in ("vit_tiny_patch16_224", "vit_small_patch16_224"):
        model = timm.create_model(name, pretrained=False, img_size=64, num_classes=10).eval()
        images = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            expected = model(images)
            tokenprune.patch.timm(model, keep_rate=1.0)
            assert torch.equal(model(images), expected)
