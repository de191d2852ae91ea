"""MultiHeadGroupAttention and group_attention against hand-written references."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from tests.oracles.naive import naive_group_attention, naive_mhga, split_heads
from tokenprune import (
    AttentionLogits,
    GroupTokenPruner,
    MultiHeadGroupAttention,
    group_attention,
    group_attention_scored,
    token_scores,
)
from tokenprune.layout import group_key_mask, group_keys, num_group_keys


@st.composite
def mhga_cases(draw, max_tokens: int = 9):
    """A module, an input ``[B, G, N, D]``, ``num_shared`` and an optional key mask."""
    batch = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    tokens = draw(st.integers(0, max_tokens))
    num_shared = draw(st.integers(0, tokens))
    heads = draw(st.sampled_from([1, 2, 4]))
    head_dim = draw(st.sampled_from([1, 3, 8]))
    qkv_bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    module = MultiHeadGroupAttention(heads * head_dim, heads, qkv_bias=qkv_bias).double()
    x = torch.randn(batch, groups, tokens, heads * head_dim, generator=gen, dtype=torch.float64)
    key_mask = None
    if draw(st.booleans()):
        key_mask = torch.rand(batch, groups, tokens, generator=gen) < 0.7
    return module, x, num_shared, key_mask


@given(mhga_cases())
def test_mhga_matches_per_group_reference(case):
    module, x, num_shared, key_mask = case
    out = module(x, num_shared=num_shared, key_mask=key_mask)
    expected = naive_mhga(module, x, num_shared, key_mask)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


@given(mhga_cases(), st.data())
def test_mhga_gradients_match_reference(case, data):
    module, x, num_shared, key_mask = case
    x = x.clone().requires_grad_(True)
    weight = torch.randn(x.shape, dtype=torch.float64)
    (module(x, num_shared=num_shared, key_mask=key_mask) * weight).sum().backward()
    got = [x.grad] + [p.grad for p in module.parameters()]

    x_ref = x.detach().clone().requires_grad_(True)
    module.zero_grad()
    (naive_mhga(module, x_ref, num_shared, key_mask) * weight).sum().backward()
    expected = [x_ref.grad] + [p.grad for p in module.parameters()]
    params = [x_ref, *module.parameters()]
    for g, e, p in zip(got, expected, params, strict=True):
        # a reference that never touched a tensor (no tokens at all) leaves its grad None
        g = torch.zeros_like(p) if g is None else g
        e = torch.zeros_like(p) if e is None else e
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-9)


def test_single_group_without_shared_tokens_is_standard_multihead_attention():
    torch.manual_seed(0)
    dim, heads = 24, 4
    module = MultiHeadGroupAttention(dim, heads)
    standard = nn.MultiheadAttention(dim, heads, batch_first=True)
    # nn.MultiheadAttention packs q, k, v in one [3 * dim, dim] weight ordered q, k, v then
    # heads: the same layout as our qkv projection.
    with torch.no_grad():
        standard.in_proj_weight.copy_(module.qkv.weight)
        standard.in_proj_bias.copy_(module.qkv.bias)
        standard.out_proj.weight.copy_(module.proj.weight)
        standard.out_proj.bias.copy_(module.proj.bias)
    x = torch.randn(3, 17, dim)
    expected, _ = standard(x, x, x, need_weights=False)
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(module(x.unsqueeze(1)).squeeze(1), expected, rtol=1e-5, atol=1e-6)


def test_vit_attention_state_dict_loads_unchanged():
    dim = 32
    vit_attention = {
        "qkv.weight": torch.randn(3 * dim, dim),
        "qkv.bias": torch.randn(3 * dim),
        "proj.weight": torch.randn(dim, dim),
        "proj.bias": torch.randn(dim),
    }
    module = MultiHeadGroupAttention(dim, 4)
    module.load_state_dict(vit_attention, strict=True)
    x = torch.randn(2, 5, dim)
    # The ViT Attention forward by hand: qkv split into q, k, v then heads.
    qkv = x @ vit_attention["qkv.weight"].T + vit_attention["qkv.bias"]
    q, k, v = (split_heads(t, 4) for t in qkv.chunk(3, dim=-1))
    probs = torch.softmax(q @ k.transpose(-1, -2) * (dim // 4) ** -0.5, dim=-1)
    merged = (probs @ v).transpose(1, 2).flatten(2)
    expected = merged @ vit_attention["proj.weight"].T + vit_attention["proj.bias"]
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


def test_scale_defaults_to_head_dim_and_accepts_dim_scale():
    module = MultiHeadGroupAttention(128, 8)
    assert module.scale == pytest.approx(16**-0.5)
    gtpt = MultiHeadGroupAttention(128, 8, qkv_bias=False, scale=128**-0.5).double()
    assert gtpt.qkv.bias is None
    x = torch.randn(1, 3, 10, 128, dtype=torch.float64)
    torch.testing.assert_close(gtpt(x, num_shared=2), naive_mhga(gtpt, x, 2, None))


@given(mhga_cases(), st.data())
def test_permuting_private_tokens_permutes_outputs(case, data):
    module, x, num_shared, key_mask = case
    groups, tokens = x.shape[1], x.shape[2]
    g = data.draw(st.integers(0, groups - 1))
    private_perm = data.draw(st.permutations(range(num_shared, tokens)))
    perm = torch.tensor(list(range(num_shared)) + list(private_perm), dtype=torch.long)
    x_perm = x.clone()
    x_perm[:, g] = x[:, g, perm]
    mask_perm = None
    if key_mask is not None:
        mask_perm = key_mask.clone()
        mask_perm[:, g] = key_mask[:, g, perm]
    out = module(x, num_shared=num_shared, key_mask=key_mask)
    out_perm = module(x_perm, num_shared=num_shared, key_mask=mask_perm)
    expected = out.clone()
    expected[:, g] = out[:, g, perm]
    torch.testing.assert_close(out_perm, expected, rtol=1e-10, atol=1e-10)


@given(mhga_cases(), st.data())
def test_permuting_groups_permutes_outputs(case, data):
    module, x, num_shared, key_mask = case
    perm = torch.tensor(data.draw(st.permutations(range(x.shape[1]))), dtype=torch.long)
    out = module(x, num_shared=num_shared, key_mask=key_mask)
    mask_perm = None if key_mask is None else key_mask[:, perm]
    out_perm = module(x[:, perm], num_shared=num_shared, key_mask=mask_perm)
    torch.testing.assert_close(out_perm, out[:, perm], rtol=1e-10, atol=1e-10)


@given(mhga_cases())
def test_masked_keys_do_not_change_real_outputs(case):
    module, x, num_shared, key_mask = case
    if key_mask is None:
        key_mask = torch.ones(x.shape[:3], dtype=torch.bool)
        key_mask[..., ::2] = False
    out = module(x, num_shared=num_shared, key_mask=key_mask)
    scrambled = torch.where(key_mask.unsqueeze(-1), x, 100 * torch.randn_like(x))
    out_scrambled = module(scrambled, num_shared=num_shared, key_mask=key_mask)
    torch.testing.assert_close(out_scrambled[key_mask], out[key_mask], rtol=1e-10, atol=1e-10)


def test_group_without_real_keys_outputs_zero_attention():
    module = MultiHeadGroupAttention(8, 2).double()
    x = torch.randn(1, 2, 4, 8, dtype=torch.float64)
    key_mask = torch.ones(1, 2, 4, dtype=torch.bool)
    key_mask[0, 1] = False  # group 1 has only private tokens here (num_shared=0): none real
    out = module(x, key_mask=key_mask)
    # attention output is zero, so the module returns the projection bias
    torch.testing.assert_close(out[0, 1], module.proj.bias.expand(4, 8))
    assert torch.isfinite(out).all()


def test_gradcheck_float64():
    torch.manual_seed(1)
    module = MultiHeadGroupAttention(6, 2).double()
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    key_mask = torch.tensor([[[1, 1, 0, 1]] * 3, [[1, 0, 1, 1]] * 3], dtype=torch.bool)

    def fn(x):
        out, logits = module.forward_scored(x, num_shared=1, key_mask=key_mask, score_queries=2)
        finite = torch.isfinite(logits.logits)
        return out, logits.logits.masked_fill(~finite, 0.0), logits.lse

    assert torch.autograd.gradcheck(fn, (x,))


@given(mhga_cases(), st.data())
def test_scoring_logits_and_lse_match_reference(case, data):
    module, x, num_shared, key_mask = case
    tokens = x.shape[2]
    score_queries = data.draw(st.integers(0, tokens))  # 0: empty logits
    _, logits = module.forward_scored(x, score_queries, num_shared=num_shared, key_mask=key_mask)
    assert isinstance(logits, AttentionLogits)
    heads = module.num_heads
    qkv = module.qkv(x)
    q, k, v = (split_heads(t, heads) for t in qkv.chunk(3, dim=-1))
    _, expected = naive_group_attention(q, k, v, num_shared, key_mask, module.scale)
    expected = expected[:, :, :, :score_queries]
    groups = x.shape[1]
    assert logits.logits.shape == (*x.shape[:2], heads, score_queries,
                                   num_group_keys(groups, tokens, num_shared))
    torch.testing.assert_close(logits.logits, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(logits.lse, torch.logsumexp(expected, dim=-1))
    assert logits.num_shared_keys == groups * num_shared
    # probabilities recovered from logits and lse equal a softmax over the group's real keys
    has_key = torch.isfinite(expected).any(-1, keepdim=True)
    expected_probs = torch.where(has_key, torch.softmax(expected, dim=-1), 0.0)
    torch.testing.assert_close(logits.probs(), expected_probs.nan_to_num(0.0))
    private = logits.private_logits()
    assert private.shape[-1] == tokens - num_shared


def test_ungrouped_input_returns_ungrouped_logits():
    module = MultiHeadGroupAttention(16, 4)
    x = torch.randn(2, 7, 16)
    out, logits = module.forward_scored(x, num_shared=2, score_queries=2)
    assert out.shape == (2, 7, 16)
    assert logits.logits.shape == (2, 4, 2, 7)
    assert logits.lse.shape == (2, 4, 2)
    assert logits.private_logits().shape == (2, 4, 2, 5)


def test_key_layout_helpers():
    # [B=1, G=2, H=1, N=3, D=1] with token value = 10 * group + slot
    t = torch.tensor([[[[[0.0], [1.0], [2.0]]], [[[10.0], [11.0], [12.0]]]]])
    keys = group_keys(t, num_shared=1)
    assert keys[0, 0, 0, :, 0].tolist() == [0.0, 10.0, 1.0, 2.0]
    assert keys[0, 1, 0, :, 0].tolist() == [0.0, 10.0, 11.0, 12.0]
    mask = torch.tensor([[[True, False, True], [False, True, True]]])
    assert group_key_mask(mask, 1)[0].tolist() == [[True, False, False, True],
                                                   [True, False, True, True]]


def test_functional_matches_module_core():
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 3, 2, 5, 4, dtype=torch.float64) for _ in range(3))
    out = group_attention(q, k, v, num_shared=2, scale=0.3)
    expected, _ = naive_group_attention(q, k, v, 2, None, 0.3)
    torch.testing.assert_close(out, expected)
    out2, logits = group_attention_scored(q, k, v, num_shared=2, scale=0.3, score_queries=5)
    torch.testing.assert_close(out2, out)
    assert logits.logits.shape == (2, 3, 2, 5, 3 * 2 + 3)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    module = MultiHeadGroupAttention(16, 2, attn_drop=0.5)
    x = torch.randn(2, 3, 6, 16)
    module.eval()
    torch.testing.assert_close(module(x, num_shared=1), module(x, num_shared=1))
    module.train()
    assert not torch.allclose(module(x, num_shared=1), module.eval()(x, num_shared=1))


def test_half_precision_logits_are_float32():
    module = MultiHeadGroupAttention(16, 2).to(torch.bfloat16)
    x = torch.randn(1, 3, 6, 16, dtype=torch.bfloat16)
    out, logits = module.forward_scored(x, num_shared=2, score_queries=2)
    assert out.dtype == torch.bfloat16
    assert logits.logits.dtype == torch.float32 and logits.lse.dtype == torch.float32


@pytest.mark.slow
def test_compiles_without_graph_breaks():
    module = MultiHeadGroupAttention(16, 2).eval()
    x = torch.randn(2, 3, 6, 16)
    key_mask = torch.ones(2, 3, 6, dtype=torch.bool)
    key_mask[:, :, -1] = False
    compiled = torch.compile(module.forward_scored, fullgraph=True)
    out, logits = compiled(x, num_shared=2, key_mask=key_mask, score_queries=2)
    ref_out, ref_logits = module.forward_scored(x, num_shared=2, key_mask=key_mask, score_queries=2)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits.lse, ref_logits.lse, rtol=1e-5, atol=1e-5)


def test_one_return_type_per_method():
    """forward/attend/group_attention return a tensor; the *_scored variants return the tensor
    and the logits, also for zero scoring queries (empty logits)."""
    from tokenprune import TransformerBlock

    torch.manual_seed(0)
    module = MultiHeadGroupAttention(16, 2).eval()
    block = TransformerBlock(16, 2).eval()
    x = torch.randn(2, 3, 5, 16)
    keys = num_group_keys(3, 5, 1)
    for plain, scored in (
        (lambda: module(x, num_shared=1), lambda j: module.forward_scored(x, j, num_shared=1)),
        (lambda: block.attend(x, 1), lambda j: block.attend_scored(x, j, num_shared=1)),
        (lambda: block(x, 1), lambda j: block.forward_scored(x, j, num_shared=1)),
    ):
        out = plain()
        assert isinstance(out, torch.Tensor) and out.shape == x.shape
        for j in (0, 2):
            scored_out, logits = scored(j)
            assert isinstance(logits, AttentionLogits)
            assert logits.logits.shape == (2, 3, 2, j, keys) and logits.lse.shape == (2, 3, 2, j)
            torch.testing.assert_close(scored_out, out, rtol=0, atol=0)
    q, k, v = torch.randn(3, 2, 3, 2, 5, 8).unbind(0)
    out = group_attention(q, k, v, num_shared=1)
    assert isinstance(out, torch.Tensor)
    scored_out, logits = group_attention_scored(q, k, v, num_shared=1, score_queries=0)
    assert logits.logits.shape == (2, 3, 2, 0, keys) and torch.equal(scored_out, out)
    with pytest.raises(TypeError, match="score_queries"):
        group_attention(q, k, v, num_shared=1, score_queries=2)


@pytest.mark.slow
def test_compiles_with_dynamic_shapes():
    attn = MultiHeadGroupAttention(16, 2).eval()
    pruner = GroupTokenPruner(0.5)

    def step(x):
        x, logits = attn.forward_scored(x, num_shared=2, score_queries=2)
        return pruner(x, token_scores(logits, "softmax_pool"), num_shared=2).tokens

    compiled = torch.compile(step, dynamic=True, fullgraph=True)
    for tokens in (9, 13):
        x = torch.randn(2, 3, tokens, 16)
        torch.testing.assert_close(compiled(x), step(x))


def test_module_input_must_match_parameters():
    attn = MultiHeadGroupAttention(16, 2)
    with pytest.raises(ValueError, match="must match the module's parameters"):
        attn(torch.randn(1, 5, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="must match the module's parameters"):
        attn(torch.randn(1, 5, 16, device="meta"))
    with pytest.raises(TypeError, match=r"key_mask must be a torch\.Tensor"):
        attn(torch.randn(1, 5, 16), key_mask=[[True] * 5])
    with pytest.raises(ValueError, match=r"attn_drop must be in \[0.0, 1.0\)"):
        MultiHeadGroupAttention(16, 2, attn_drop=1.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_scoring_logits_values(dtype):
    torch.manual_seed(0)
    module = MultiHeadGroupAttention(32, 4)
    x = torch.randn(2, 3, 10, 32)
    _, exact = module.double().forward_scored(x.double(), num_shared=2, score_queries=3)
    _, half = module.to(dtype).forward_scored(x.to(dtype), num_shared=2, score_queries=3)
    # the logits are computed in float32 from half-precision q and k
    torch.testing.assert_close(half.logits.double(), exact.logits, rtol=0, atol=0.05)
    torch.testing.assert_close(half.lse.double(), exact.lse, rtol=0, atol=0.05)


def test_group_without_keys_has_finite_zero_gradients():
    module = MultiHeadGroupAttention(8, 2)
    x = torch.randn(1, 2, 4, 8, requires_grad=True)
    key_mask = torch.ones(1, 2, 4, dtype=torch.bool)
    key_mask[0, 1] = False
    module(x, key_mask=key_mask).sum().backward()
    assert torch.isfinite(x.grad).all()
