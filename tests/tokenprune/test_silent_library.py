"""Nothing silent (issue 16, library part): bad input to the public API is refused with a
``TypeError`` / ``ValueError`` that names the argument, and valid but unusual input (zero sizes,
non-contiguous and expanded tensors, keys that are all masked) gives a finite result equal to a
reference.

The first tests pin the cases a fuzz of the API found. Then a table feeds every public entry
point of :data:`tokenprune.__all__` (the Triton kernels aside) each bad-input category that
applies to it, and a second table checks the valid-but-odd inputs against references
(contiguous input, float64, or a slice of a non-empty batch). A third list checks that NaN in
the data of a dense computation reaches the result instead of turning finite.
``test_every_entry_point_is_fuzzed`` keeps the tables complete when the API grows.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.oracles.fuzz import (
    CATEGORIES,
    INF,
    NAN,
    Bad,
    Odd,
    expanded,
    meta,
    strided,
)
from tests.oracles.fuzz import assert_same as _assert_same
from tests.oracles.fuzz import empty_batch_pair as _empty_batch
from tests.oracles.fuzz import float64_pair as _f64
from tests.oracles.fuzz import fn_view_pair as _same_fn
from tests.oracles.fuzz import index_rows as _idx
from tests.oracles.fuzz import normal as _x
from tests.oracles.fuzz import odd as _odd
from tests.oracles.fuzz import poisoned as _poisoned
from tests.oracles.fuzz import uniform as _u
from tests.oracles.fuzz import view_pair as _same_module
from tokenprune import (
    ConstantKeepRate,
    CosineWarmupKeepRate,
    GroupTokenPruner,
    LinearWarmupKeepRate,
    MultiHeadGroupAttention,
    TransformerBlock,
    count_flops,
    group_attention,
    group_attention_scored,
    keep_count,
    select_topk,
    token_scores,
)
from tokenprune.attention import available_backends, gathered_attention
from tokenprune.blocks import DropPath, Mlp
from tokenprune.losses import kept_attention_distillation_loss, token_feature_distillation_loss
from tokenprune.scores import cls_score, mean_score, softmax_pool_score
from tokenprune.selection import fuse_pruned_tokens, gather_tokens, pruned_token_weights
from tokenprune.temporal import (
    TokenPruningCluster,
    TokenRecoveringAttention,
    density_peaks,
    pool_frames,
)

F, T = False, True


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)








# ----------------------------------------------------------------------------------------------
# The cases of the fuzz report
# ----------------------------------------------------------------------------------------------


def test_pruner_keeps_a_real_minus_inf_token_over_padding():
    x = torch.randn(1, 3, 4)
    scores = torch.tensor([[-INF, -INF, 0.0]])
    key_mask = torch.tensor([[F, T, T]])
    result = GroupTokenPruner(0.5)(x, scores, key_mask=key_mask)
    assert result.kept_idx.tolist() == [[1, 2]]  # slot 0 is padding, slot 1 a real -inf token
    assert result.key_mask.tolist() == [[T, T]]
    assert torch.equal(result.tokens, x[:, 1:])
    # padding is kept only when a group has fewer real tokens than k, after all real ones
    result = GroupTokenPruner(0.75)(
        torch.randn(1, 4, 2),
        torch.tensor([[5.0, -INF, 7.0, 1.0]]),
        key_mask=torch.tensor([[F, T, F, F]]),
    )
    assert result.kept_idx.tolist() == [[0, 1, 2]] and result.key_mask.tolist() == [[F, T, F]]


def test_select_topk_key_mask_ranks_padding_last_and_ignores_its_scores():
    scores = torch.tensor([[NAN, -INF, -INF, 3.0], [INF, 0.0, -INF, INF]])
    key_mask = torch.tensor([[F, T, T, T], [F, T, T, F]])
    assert select_topk(scores, 2, key_mask=key_mask).tolist() == [[1, 3], [1, 2]]
    assert select_topk(scores, 4, key_mask=key_mask).tolist() == [[0, 1, 2, 3]] * 2
    with pytest.raises(ValueError, match="NaN"):  # a NaN score of a real slot still raises
        select_topk(scores, 2, key_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="key_mask must be a bool tensor"):
        select_topk(scores, 2, key_mask=key_mask.float())
    with pytest.raises(ValueError, match="same device"):
        select_topk(scores, 2, key_mask=meta(key_mask))


def _lexicographic_topk(scores: list[float], real: list[bool], k: int) -> list[int]:
    """Reference: rank by (is real, score, earlier position)."""
    order = sorted(
        range(len(scores)),
        key=lambda i: (not real[i], -scores[i] if real[i] else 0.0, i),
    )
    return sorted(order[:k])


@st.composite
def masked_score_rows(draw):
    tokens = draw(st.integers(1, 9))
    values = st.sampled_from([-INF, -1.0, 0.0, 2.0, INF])
    scores = draw(st.lists(values, min_size=tokens, max_size=tokens))
    real = draw(st.lists(st.booleans(), min_size=tokens, max_size=tokens))
    k = draw(st.integers(1, tokens))
    return scores, real, k


@given(masked_score_rows())
def test_padding_ranks_below_every_real_token(case):
    scores, real, k = case
    expected = _lexicographic_topk(scores, real, k)
    mask = torch.tensor([real])
    got = select_topk(torch.tensor([scores]), k, key_mask=mask)
    assert got.tolist() == [expected]
    # the pruner ranks the same way (its budget ceil(N * rate) is k)
    x = torch.randn(1, len(scores), 3)
    result = GroupTokenPruner((k - 0.5) / len(scores))(x, torch.tensor([scores]), key_mask=mask)
    assert result.kept_idx.tolist() == [expected]
    assert result.key_mask.tolist() == [[real[i] for i in expected]]


@pytest.mark.parametrize("bad", [NAN, INF])
def test_fusion_weights_must_be_finite(bad):
    x = torch.randn(1, 3, 2)
    weights = torch.tensor([[0.1, bad, 0.3]])
    kept = torch.tensor([[0]])
    with pytest.raises(ValueError, match="weights must be finite"):
        pruned_token_weights(weights, kept)
    with pytest.raises(ValueError, match="weights must be finite"):
        fuse_pruned_tokens(x, weights, kept)
    # the pruner's own NaN check comes first (its message names the scores)
    with pytest.raises(ValueError, match="scores contain NaN" if bad != bad else "weights must be"):
        GroupTokenPruner(0.5, fuse_pruned=True)(
            torch.randn(1, 4, 2), torch.tensor([[0.4, 0.3, bad, 0.1]])
        )
    # padding slots are ignored (as the pruner documents for their scores)
    mask = torch.tensor([[T, F, T]])
    got = fuse_pruned_tokens(x, weights, kept, key_mask=mask)
    torch.testing.assert_close(got, 0.3 * x[:, 2:3])


def test_fusion_weights_must_be_tensors():
    x = torch.randn(1, 3, 2)
    with pytest.raises(TypeError, match=r"weights must be a torch\.Tensor"):
        fuse_pruned_tokens(x, [[0.1, 0.2, 0.3]], torch.tensor([[0]]))
    with pytest.raises(TypeError, match=r"weights must be a torch\.Tensor"):
        pruned_token_weights([[0.1, 0.2, 0.3]], torch.tensor([[0]]))
    with pytest.raises(TypeError, match="weights must be a floating-point tensor"):
        fuse_pruned_tokens(x, torch.ones(1, 3, dtype=torch.int64), torch.tensor([[0]]))
    with pytest.raises(TypeError, match="normalize must be a bool"):
        fuse_pruned_tokens(x, torch.rand(1, 3), torch.tensor([[0]]), normalize="no")


def test_loose_constructor_and_schedule_arguments():
    with pytest.raises(TypeError, match="fuse_pruned must be a bool"):
        GroupTokenPruner(0.5, fuse_pruned="no")
    with pytest.raises(ValueError, match="dim must be >= 1"):
        Mlp(0, 4)
    with pytest.raises(ValueError, match="hidden_dim must be >= 1"):
        Mlp(4, 0)
    for schedule in (LinearWarmupKeepRate, CosineWarmupKeepRate):
        with pytest.raises(ValueError, match="warmup_epochs must be a non-negative finite"):
            schedule(0.5, NAN, 10)
        with pytest.raises(ValueError, match="end_epoch must be a non-negative finite"):
            schedule(0.5, 1, INF)
        with pytest.raises(TypeError, match="warmup_epochs must be a number"):
            schedule(0.5, "1", 10)
        with pytest.raises(ValueError, match="epoch must be a non-negative finite"):
            schedule(0.5, 1, 10)(NAN)
        with pytest.raises(ValueError, match="epoch must be a non-negative finite"):
            schedule(0.5, 1, 10)(10**400)  # beyond the float range: not an OverflowError
    with pytest.raises(ValueError, match="op must be one of"):
        available_backends("nope")
    with pytest.raises(ValueError, match="op must be one of"):
        available_backends("cuda")
    with pytest.raises(TypeError, match="op must be a str"):
        available_backends(None)


@pytest.mark.parametrize(
    "make, call, name",
    [
        (lambda: TokenRecoveringAttention(8, 5, 2), lambda m, x: m(x), "kept"),
        (lambda: MultiHeadGroupAttention(8, 2), lambda m, x: m(x), "x"),
        (lambda: TransformerBlock(8, 2), lambda m, x: m(x), "x"),
        (lambda: Mlp(8, 4), lambda m, x: m(x), "x"),
    ],
    ids=["TokenRecoveringAttention", "MHGA", "TransformerBlock", "Mlp"],
)
def test_modules_check_dtype_and_device_of_their_input(make, call, name):
    module = make()
    x = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=rf"{name} \(torch\.float64 on cpu\) must match"):
        call(module, x.double())
    with pytest.raises(ValueError, match=rf"{name} \(torch\.float32 on meta\) must match"):
        call(module, meta(x))
    # inside autocast, float32/bfloat16 inputs mix with float32 parameters as autocast intends
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = call(module, x.bfloat16())
    assert torch.isfinite(out.float()).all()
    # float64 module, float64 input: fine
    assert call(module.double(), x.double()).dtype == torch.float64


@pytest.mark.parametrize(
    "tokens",
    [
        torch.tensor([[[0.0], [NAN], [1.0], [2.0]]]),
        torch.tensor([[[0.0], [INF], [1.0], [2.0]]]),
        torch.zeros(1, 4, 0),
        torch.zeros(1, 4, 0, 3),
    ],
    ids=["nan", "inf", "zero-width", "no-token-per-frame"],
)
def test_token_pruning_cluster_names_tokens(tokens):
    with pytest.raises(ValueError, match=r"^tokens ") as error:
        TokenPruningCluster(2)(tokens)
    assert "scores" not in str(error.value)


def test_density_peaks_names_features_and_overflow():
    with pytest.raises(ValueError, match="features must be finite"):
        density_peaks(torch.tensor([[[0.0], [NAN], [1.0]]]))
    with pytest.raises(ValueError, match="features are too large"):
        density_peaks(torch.tensor([[[3e38], [-3e38], [1.0]]]))


def test_nan_in_a_masked_slot_does_not_reach_real_outputs():
    """A padding slot's content is never attended to, so it cannot matter (torch backend)."""
    attention = MultiHeadGroupAttention(8, 2, backend="torch")
    x = torch.randn(2, 2, 4, 8)
    key_mask = torch.ones(2, 2, 4, dtype=torch.bool)
    key_mask[0, 1, 3] = False
    poisoned = x.clone()
    poisoned[0, 1, 3] = NAN
    clean = attention(x, num_shared=1, key_mask=key_mask)
    got = attention(poisoned, num_shared=1, key_mask=key_mask)
    real = key_mask[..., None].expand_as(got)
    torch.testing.assert_close(got[real], clean[real])
    q = torch.randn(1, 2, 2, 3, 8)
    buffer = torch.randn(1, 2, 5, 8)
    buffer[..., 4, :] = NAN
    index = torch.tensor([[[0, 4, 1], [4, 2, 3]]])
    mask = index != 4
    out = gathered_attention(q, buffer, buffer, index, key_mask=mask, backend="torch")
    ref = gathered_attention(q, buffer.nan_to_num(0.0), buffer.nan_to_num(0.0), index,
                             key_mask=mask, backend="torch")  # fmt: skip
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref)


# ----------------------------------------------------------------------------------------------
# The table: every public entry point, every bad-input category that applies
# ----------------------------------------------------------------------------------------------













def _attention(score_queries=2, groups=2, tokens=5, num_shared=1, key_mask=None):
    module = MultiHeadGroupAttention(8, 2, backend="torch")
    _, logits = module.forward_scored(_x(1, groups, tokens, 8), score_queries,
                                      num_shared=num_shared, key_mask=key_mask)  # fmt: skip
    return logits


def _pruned(fuse=False):
    scores = _u(2, 6)
    return GroupTokenPruner(0.5, fuse_pruned=fuse)(_x(2, 8, 4), scores, num_shared=2)


def _apply_pair(side, view, fuse=False):
    """``(apply(view(side)), apply(contiguous copy))`` of one pruning result."""
    result = _pruned(fuse)
    return (lambda: result.apply(view(side)),
            lambda: result.apply(view(side).contiguous()))  # fmt: skip


def _feature_loss_with_an_empty_layer():
    student, teacher = _x(2, 3, 4), _x(2, 3, 4)
    return (
        lambda: token_feature_distillation_loss([_x(0, 3, 4), student], [_x(0, 3, 4), teacher]),
        lambda: (student - teacher).pow(2).sum(-1).mean() / 2,
    )


B = Bad  # short aliases for the table
BAD_CASES: list[Bad] = [
    # GroupTokenPruner / keep_count / PrunedTokens
    B("GroupTokenPruner", "flag", lambda: GroupTokenPruner(0.5, fuse_pruned="no"), TypeError,
      "fuse_pruned must be a bool"),
    B("GroupTokenPruner", "nonfinite", lambda: GroupTokenPruner(NAN), ValueError,
      "keep_rate must be in"),
    B("GroupTokenPruner", "range", lambda: GroupTokenPruner(0.5, budget="original",
      num_original=0), ValueError, "num_original must be >= 1"),
    B("GroupTokenPruner", "type", lambda: GroupTokenPruner(0.5, num_original=2.5), TypeError,
      "num_original must be an int"),
    B("GroupTokenPruner", "type", lambda: GroupTokenPruner(0.5)(_x(1, 4, 2).long(),
      _x(1, 4)), TypeError, "x must be a floating-point"),
    B("GroupTokenPruner", "rank", lambda: GroupTokenPruner(0.5)(_x(4, 2), _x(4)), ValueError,
      "x must have 3 or 4 dimensions"),
    B("GroupTokenPruner", "dims", lambda: GroupTokenPruner(0.5)(_x(1, 4, 2), _x(1, 3)),
      ValueError, r"scores must have shape \(1, 4\)"),
    B("GroupTokenPruner", "range", lambda: GroupTokenPruner(0.5)(_x(1, 4, 2), _x(1, 4),
      num_shared=5), ValueError, "num_shared must be <= 4"),
    B("GroupTokenPruner", "range", lambda: GroupTokenPruner(0.25)(_x(1, 4, 2), _x(1, 4),
      num_protected=2), ValueError, r"num_protected \(2\) exceeds"),
    B("GroupTokenPruner", "nonfinite", lambda: GroupTokenPruner(0.5)(_x(1, 4, 2),
      torch.tensor([[0.0, NAN, 1.0, 2.0]])), ValueError, "scores contain NaN"),
    B("GroupTokenPruner", "nonfinite", lambda: GroupTokenPruner(0.5, fuse_pruned=True)(
      _x(1, 4, 2), torch.tensor([[0.5, 0.4, INF, 0.1]])), ValueError, "weights must be finite"),
    B("GroupTokenPruner", "device", lambda: GroupTokenPruner(0.5)(_x(1, 4, 2), meta(_x(1, 4))),
      ValueError, "same device"),
    B("GroupTokenPruner", "type", lambda: GroupTokenPruner(0.5)(_x(1, 4, 2), _x(1, 4),
      key_mask=torch.ones(1, 4)), TypeError, "key_mask must be a bool tensor"),
    B("keep_count", "nonfinite", lambda: keep_count(INF, 4), ValueError, "keep_rate must be in"),
    B("keep_count", "range", lambda: keep_count(0.5, -1), ValueError, "num_current must be >= 0"),
    B("keep_count", "type", lambda: keep_count(0.5, True), TypeError, "num_current must be an int"),
    B("keep_count", "flag", lambda: keep_count(0.5, 4, budget="all"), ValueError,
      "budget must be"),
    B("PrunedTokens", "type", lambda: _pruned().apply([[0.0]]), TypeError,
      r"side must be a torch\.Tensor"),
    B("PrunedTokens", "dims", lambda: _pruned().apply(_x(2, 7, 1)), ValueError,
      r"side must have 8 \(all\) or 6 \(private\)"),
    B("PrunedTokens", "device", lambda: _pruned().apply(meta(_x(2, 8, 1))), ValueError,
      "same device"),
    # selection
    B("select_topk", "type", lambda: select_topk(torch.arange(4), 2), TypeError,
      "scores must be a floating-point"),
    B("select_topk", "rank", lambda: select_topk(torch.tensor(1.0), 1), ValueError,
      "scores must have at least one dimension"),
    B("select_topk", "range", lambda: select_topk(_x(2, 4), 5), ValueError, "k must be <= 4"),
    B("select_topk", "zero", lambda: select_topk(_x(2, 0), 1), ValueError, "k must be <= 0"),
    B("select_topk", "type", lambda: select_topk(_x(2, 4), 2.0), TypeError, "k must be an int"),
    B("select_topk", "nonfinite", lambda: select_topk(torch.tensor([0.0, NAN]), 1), ValueError,
      "scores contain NaN"),
    B("select_topk", "dims", lambda: select_topk(_x(2, 4), 2, key_mask=torch.ones(2, 3,
      dtype=torch.bool)), ValueError, r"key_mask must have shape \(2, 4\)"),
    B("select_topk", "device", lambda: select_topk(_x(2, 4), 2, key_mask=meta(torch.ones(2, 4,
      dtype=torch.bool))), ValueError, "same device"),
    B("gather_tokens", "type", lambda: gather_tokens(_x(2, 4, 3), _idx([0.0], [1.0])), TypeError,
      "idx must be an int64 or int32"),
    B("gather_tokens", "rank", lambda: gather_tokens(_x(4), _idx([[0]])), ValueError,
      r"x must be \[\.\.\., N, D\] or \[\.\.\., N\]"),
    B("gather_tokens", "range", lambda: gather_tokens(_x(2, 4, 3), _idx([4], [0])), ValueError,
      r"idx must lie in \[0, 4\)"),
    B("gather_tokens", "dims", lambda: gather_tokens(_x(2, 4, 3), _idx([0], [1], [2])),
      ValueError, "do not broadcast"),
    B("gather_tokens", "device", lambda: gather_tokens(meta(_x(2, 4, 3)), _idx([0], [1])),
      ValueError, "same device"),
    B("pruned_token_weights", "type", lambda: pruned_token_weights([[0.1, 0.2]], _idx([0])),
      TypeError, r"weights must be a torch\.Tensor"),
    B("pruned_token_weights", "nonfinite", lambda: pruned_token_weights(
      torch.tensor([[NAN, 0.2]]), _idx([0])), ValueError, "weights must be finite"),
    B("pruned_token_weights", "range", lambda: pruned_token_weights(_u(1, 2),
      _idx([2])), ValueError, r"kept_idx must lie in \[0, 2\)"),
    B("pruned_token_weights", "rank", lambda: pruned_token_weights(_u(2),
      torch.tensor(0)), ValueError, "kept_idx must have leading shape"),
    B("pruned_token_weights", "dims", lambda: pruned_token_weights(_u(1, 3),
      _idx([0]), key_mask=torch.ones(1, 2, dtype=torch.bool)), ValueError,
      r"key_mask must have shape \(1, 3\)"),
    B("pruned_token_weights", "device", lambda: pruned_token_weights(_u(1, 3),
      meta(_idx([0]))), ValueError, "same device"),
    B("fuse_pruned_tokens", "type", lambda: fuse_pruned_tokens(_x(1, 3, 2), [[0.1, 0.2, 0.3]],
      _idx([0])), TypeError, r"weights must be a torch\.Tensor"),
    B("fuse_pruned_tokens", "flag", lambda: fuse_pruned_tokens(_x(1, 3, 2), _u(1, 3),
      _idx([0]), normalize="no"), TypeError, "normalize must be a bool"),
    B("fuse_pruned_tokens", "nonfinite", lambda: fuse_pruned_tokens(_x(1, 3, 2),
      torch.tensor([[0.1, 0.2, INF]]), _idx([0])), ValueError, "weights must be finite"),
    B("fuse_pruned_tokens", "nonfinite", lambda: fuse_pruned_tokens(_x(1, 3, 2),
      torch.tensor([[0.1, -0.2, 0.3]]), _idx([0])), ValueError, "weights must be non-negative"),
    B("fuse_pruned_tokens", "rank", lambda: fuse_pruned_tokens(_x(3), _u(3), _idx(0)),
      ValueError, r"weights must have shape x\.shape\[:-1\]"),
    B("fuse_pruned_tokens", "dims", lambda: fuse_pruned_tokens(_x(1, 3, 2), _u(1, 4),
      _idx([0])), ValueError, r"weights must have shape x\.shape\[:-1\] = \(1, 3\)"),
    B("fuse_pruned_tokens", "range", lambda: fuse_pruned_tokens(_x(1, 3, 2), _u(1, 3),
      _idx([-1])), ValueError, r"kept_idx must lie in \[0, 3\)"),
    B("fuse_pruned_tokens", "device", lambda: fuse_pruned_tokens(_x(1, 3, 2),
      meta(_u(1, 3)), _idx([0])), ValueError, "same device"),
    # scores
    B("softmax_pool_score", "type", lambda: softmax_pool_score(torch.ones(2, 2, 3,
      dtype=torch.int64)), TypeError, "logits must be a floating-point"),
    B("softmax_pool_score", "rank", lambda: softmax_pool_score(_x(2, 3)), ValueError,
      r"logits must have shape \[\.\.\., H, J, N\]"),
    B("softmax_pool_score", "dims", lambda: softmax_pool_score(_x(2, 3, 4),
      torch.ones(2, dtype=torch.bool)), ValueError, "query_mask must have last dimension 3"),
    B("softmax_pool_score", "device", lambda: softmax_pool_score(_x(2, 3, 4),
      meta(torch.ones(3, dtype=torch.bool))), ValueError, "same device"),
    B("mean_score", "rank", lambda: mean_score(_u(3, 4)), ValueError,
      r"probs must have shape \[\.\.\., H, J, N\]"),
    B("mean_score", "zero", lambda: mean_score(_u(0, 3, 4)), ValueError,
      "probs must have at least one head"),
    B("mean_score", "type", lambda: mean_score(_u(2, 3, 4), torch.ones(3)), TypeError,
      "query_mask must be a bool tensor"),
    B("mean_score", "device", lambda: mean_score(_u(2, 3, 4),
      meta(torch.ones(3, dtype=torch.bool))), ValueError, "same device"),
    B("cls_score", "dims", lambda: cls_score(_u(2, 3, 4)), ValueError,
      r"probs must have shape \[\.\.\., H, 1, N\]"),
    B("cls_score", "zero", lambda: cls_score(_u(0, 1, 4)), ValueError,
      "probs must have at least one head"),
    B("cls_score", "type", lambda: cls_score([[[0.5]]]), TypeError,
      r"probs must be a torch\.Tensor"),
    B("token_scores", "type", lambda: token_scores(_x(1, 2, 2, 5), "mean"), TypeError,
      "attention must be AttentionLogits"),
    B("token_scores", "flag", lambda: token_scores(_attention(), "max"), ValueError,
      "rule must be one of"),
    B("token_scores", "dims", lambda: token_scores(_attention(), "cls"), ValueError,
      "exactly one query"),
    B("token_scores", "device", lambda: token_scores(_attention(), "softmax_pool",
      meta(torch.ones(2, dtype=torch.bool))), ValueError, "same device"),
    # attention
    B("MultiHeadGroupAttention", "flag", lambda: MultiHeadGroupAttention(8, 2, qkv_bias="no"),
      TypeError, "qkv_bias must be a bool"),
    B("MultiHeadGroupAttention", "range", lambda: MultiHeadGroupAttention(8, 0), ValueError,
      "num_heads must be >= 1"),
    B("MultiHeadGroupAttention", "nonfinite", lambda: MultiHeadGroupAttention(8, 2, scale=NAN),
      ValueError, "scale must be a positive finite"),
    B("MultiHeadGroupAttention", "rank", lambda: MultiHeadGroupAttention(8, 2)(_x(3, 8)),
      ValueError, "x must have 3 or 4 dimensions"),
    B("MultiHeadGroupAttention", "dims", lambda: MultiHeadGroupAttention(8, 2)(_x(1, 3, 6)),
      ValueError, "x must have last dimension 8"),
    B("MultiHeadGroupAttention", "type", lambda: MultiHeadGroupAttention(8, 2)(_x(1, 3, 8,
      dtype=torch.float64)), ValueError, r"x \(torch\.float64 on cpu\) must match"),
    B("MultiHeadGroupAttention", "device", lambda: MultiHeadGroupAttention(8, 2)(meta(_x(1, 3, 8))),
      ValueError, r"x \(torch\.float32 on meta\) must match"),
    B("MultiHeadGroupAttention", "zero", lambda: MultiHeadGroupAttention(8, 2).forward_scored(
      _x(1, 0, 8), score_queries=1), ValueError, "score_queries must be <= 0"),
    B("group_attention", "type", lambda: group_attention(*[_x(1, 1, 1, 2, 4).long()] * 3),
      TypeError, "q must be a floating-point"),
    B("group_attention", "rank", lambda: group_attention(*[_x(1, 1, 2, 4)] * 3), ValueError,
      "q must have 5 dimensions"),
    B("group_attention", "dims", lambda: group_attention(_x(1, 1, 1, 2, 4), _x(1, 1, 1, 3, 4),
      _x(1, 1, 1, 2, 4)), ValueError, "q, k and v must have the same shape"),
    B("group_attention", "range", lambda: group_attention(*[_x(1, 1, 1, 2, 4)] * 3,
      num_shared=3), ValueError, "num_shared must be <= 2"),
    B("group_attention", "nonfinite", lambda: group_attention(*[_x(1, 1, 1, 2, 4)] * 3,
      scale=INF), ValueError, "scale must be a positive finite"),
    B("group_attention", "device", lambda: group_attention(*[_x(1, 1, 1, 2, 4)] * 3,
      key_mask=meta(torch.ones(1, 1, 2, dtype=torch.bool))), ValueError, "same device"),
    B("group_attention", "flag", lambda: group_attention(*[_x(1, 1, 1, 2, 4)] * 3,
      backend="cuda"), ValueError, "backend must be one of"),
    B("group_attention_scored", "type", lambda: group_attention_scored(
      *[_x(1, 1, 1, 2, 4).long()] * 3, score_queries=1), TypeError, "q must be a floating-point"),
    B("group_attention_scored", "rank", lambda: group_attention_scored(*[_x(1, 1, 2, 4)] * 3,
      score_queries=1), ValueError, "q must have 5 dimensions"),
    B("group_attention_scored", "dims", lambda: group_attention_scored(_x(1, 1, 1, 2, 4),
      _x(1, 1, 1, 3, 4), _x(1, 1, 1, 2, 4), score_queries=1), ValueError,
      "q, k and v must have the same shape"),
    B("group_attention_scored", "range", lambda: group_attention_scored(
      *[_x(1, 1, 1, 2, 4)] * 3, score_queries=3), ValueError, "score_queries must be <= 2"),
    B("group_attention_scored", "nonfinite", lambda: group_attention_scored(
      *[_x(1, 1, 1, 2, 4)] * 3, score_queries=1, scale=INF), ValueError,
      "scale must be a positive finite"),
    B("group_attention_scored", "device", lambda: group_attention_scored(
      *[_x(1, 1, 1, 2, 4)] * 3, score_queries=1,
      key_mask=meta(torch.ones(1, 1, 2, dtype=torch.bool))), ValueError, "same device"),
    B("group_attention_scored", "flag", lambda: group_attention_scored(
      *[_x(1, 1, 1, 2, 4)] * 3, score_queries=1, backend="cuda"), ValueError,
      "backend must be one of"),
    B("gathered_attention", "type", lambda: gathered_attention(_x(1, 1, 1, 2, 4), _x(1, 1, 3, 4),
      _x(1, 1, 3, 4), _idx([[0.0]])), TypeError, "index must be an int64 or int32"),
    B("gathered_attention", "rank", lambda: gathered_attention(_x(1, 1, 1, 2, 4), _x(1, 3, 4),
      _x(1, 3, 4), _idx([[0]])), ValueError, "k must have 4 dimensions"),
    B("gathered_attention", "range", lambda: gathered_attention(_x(1, 1, 1, 2, 4),
      _x(1, 1, 3, 4), _x(1, 1, 3, 4), _idx([[3]])), ValueError, r"index must lie in \[0, 3\)"),
    B("gathered_attention", "dims", lambda: gathered_attention(_x(1, 1, 1, 2, 4),
      _x(1, 1, 3, 4), _x(1, 1, 3, 4), _idx([0])), ValueError, "index must have shape"),
    B("gathered_attention", "device", lambda: gathered_attention(_x(1, 1, 1, 2, 4),
      _x(1, 1, 3, 4), _x(1, 1, 3, 4), meta(_idx([[0]]))), ValueError, "same device"),
    B("available_backends", "flag", lambda: available_backends("nope"), ValueError,
      "op must be one of"),
    B("available_backends", "type", lambda: available_backends(0), TypeError, "op must be a str"),
    # blocks
    B("Mlp", "range", lambda: Mlp(0, 4), ValueError, "dim must be >= 1"),
    B("Mlp", "range", lambda: Mlp(4, 0), ValueError, "hidden_dim must be >= 1"),
    B("Mlp", "type", lambda: Mlp(4.0, 4), TypeError, "dim must be an int"),
    B("Mlp", "nonfinite", lambda: Mlp(4, 4, drop=NAN), ValueError, r"drop must be in \[0, 1\]"),
    B("Mlp", "dims", lambda: Mlp(4, 8)(_x(2, 3)), ValueError, "x must have last dimension 4"),
    B("Mlp", "rank", lambda: Mlp(4, 8)(torch.tensor(1.0)), ValueError,
      "x must have last dimension 4"),
    B("Mlp", "device", lambda: Mlp(4, 8)(meta(_x(2, 4))), ValueError,
      r"x \(torch\.float32 on meta\) must match"),
    B("DropPath", "type", lambda: DropPath("0.1"), TypeError, "drop_prob must be a float"),
    B("DropPath", "range", lambda: DropPath(1.0), ValueError, r"drop_prob must be in \[0, 1\)"),
    B("DropPath", "nonfinite", lambda: DropPath(NAN), ValueError, "drop_prob must be in"),
    B("DropPath", "rank", lambda: DropPath(0.5)(torch.tensor(1.0)), ValueError,
      "x must have a batch dimension"),
    B("DropPath", "dims", lambda: DropPath(0.5)([1.0]), TypeError, r"x must be a torch\.Tensor"),
    B("TransformerBlock", "range", lambda: TransformerBlock(8, 2, mlp_ratio=0.1), ValueError,
      "mlp_ratio must give an MLP at least 1 wide"),
    B("TransformerBlock", "nonfinite", lambda: TransformerBlock(8, 2, norm_eps=NAN), ValueError,
      "norm_eps must be finite"),
    B("TransformerBlock", "nonfinite", lambda: TransformerBlock(8, 2, mlp_ratio=INF), ValueError,
      "mlp_ratio must be finite"),
    B("TransformerBlock", "flag", lambda: TransformerBlock(8, 2, qkv_bias="no"), TypeError,
      "qkv_bias must be a bool"),
    B("TransformerBlock", "range", lambda: TransformerBlock(8, 2, drop_path=1.0), ValueError,
      r"drop_path must be in \[0, 1\)"),
    B("TransformerBlock", "dims", lambda: TransformerBlock(8, 2)(_x(1, 3, 6)), ValueError,
      "x must have last dimension 8"),
    B("TransformerBlock", "rank", lambda: TransformerBlock(8, 2)(_x(3, 8)), ValueError,
      "x must have 3 or 4 dimensions"),
    B("TransformerBlock", "type", lambda: TransformerBlock(8, 2).feed_forward(_x(1, 3, 8,
      dtype=torch.float64)), ValueError, r"x \(torch\.float64 on cpu\) must match"),
    B("TransformerBlock", "device", lambda: TransformerBlock(8, 2)(meta(_x(1, 3, 8))),
      ValueError, r"x \(torch\.float32 on meta\) must match"),
    # HoT
    B("TokenRecoveringAttention", "flag", lambda: TokenRecoveringAttention(8, 4, 2,
      qkv_bias="no"), TypeError, "qkv_bias must be a bool"),
    B("TokenRecoveringAttention", "range", lambda: TokenRecoveringAttention(8, 0, 2), ValueError,
      "num_tokens must be >= 1"),
    B("TokenRecoveringAttention", "rank", lambda: TokenRecoveringAttention(8, 4, 2)(_x(3, 8)),
      ValueError, r"kept must be \[B, n >= 1, \.\.\., D=8\]"),
    B("TokenRecoveringAttention", "zero", lambda: TokenRecoveringAttention(8, 4, 2)(_x(2, 0, 8)),
      ValueError, r"kept must be \[B, n >= 1"),
    B("TokenRecoveringAttention", "type", lambda: TokenRecoveringAttention(8, 4, 2)(_x(2, 3, 8,
      dtype=torch.float64)), ValueError, r"kept \(torch\.float64 on cpu\) must match"),
    B("TokenRecoveringAttention", "device", lambda: TokenRecoveringAttention(8, 4, 2)(
      meta(_x(2, 3, 8))), ValueError, r"kept \(torch\.float32 on meta\) must match"),
    B("TokenPruningCluster", "flag", lambda: TokenPruningCluster(2, keep_centre="yes"), TypeError,
      "keep_centre must be a bool"),
    B("TokenPruningCluster", "range", lambda: TokenPruningCluster(5)(_x(1, 4, 3)), ValueError,
      "num_kept=5 frames cannot be kept"),
    B("TokenPruningCluster", "nonfinite", lambda: TokenPruningCluster(2)(
      torch.tensor([[[INF], [0.0], [1.0]]])), ValueError, "tokens must be finite"),
    B("TokenPruningCluster", "zero", lambda: TokenPruningCluster(2)(_x(1, 4, 0)), ValueError,
      "tokens must have at least one channel"),
    B("TokenPruningCluster", "rank", lambda: TokenPruningCluster(2)(_x(4, 3)), ValueError,
      r"tokens must be \[B, T, \.\.\., D\]"),
    B("TokenPruningCluster", "type", lambda: TokenPruningCluster(2)(_x(1, 4, 3), _idx([0.0, 1.0])),
      TypeError, "kept_idx must be an int64 or int32"),
    B("TokenPruningCluster", "device", lambda: TokenPruningCluster(2)(_x(1, 4, 3),
      meta(_idx([0, 1]))), ValueError, "same device"),
    B("density_peaks", "nonfinite", lambda: density_peaks(torch.tensor([[[NAN], [0.0]]])),
      ValueError, "features must be finite"),
    B("density_peaks", "zero", lambda: density_peaks(_x(1, 3, 0)), ValueError,
      "features must have at least one channel"),
    B("density_peaks", "range", lambda: density_peaks(_x(1, 3, 2), k=4), ValueError,
      "k must be <= 3"),
    B("density_peaks", "rank", lambda: density_peaks(_x(3, 2)), ValueError,
      "features must have 3 dimensions"),
    B("density_peaks", "type", lambda: density_peaks(torch.ones(1, 3, 2, dtype=torch.int64)),
      TypeError, "features must be a floating-point"),
    B("density_peaks", "flag", lambda: density_peaks(_x(1, 3, 2), tie_break="random"),
      ValueError, "tie_break must be one of"),
    B("pool_frames", "zero", lambda: pool_frames(_x(1, 3, 0, 2)), ValueError,
      "tokens must have at least one token per frame"),
    B("pool_frames", "rank", lambda: pool_frames(_x(3, 2)), ValueError,
      r"tokens must be \[B, T, \.\.\., D\]"),
    B("pool_frames", "type", lambda: pool_frames(torch.ones(1, 3, 2, dtype=torch.int64)),
      TypeError, "tokens must be a floating-point"),
    # losses
    B("kept_attention_distillation_loss", "rank", lambda: kept_attention_distillation_loss(
      _x(1, 2, 3), _x(1, 1, 2, 5), _idx([0, 1, 2])), ValueError,
      "student_logits must have 4 dimensions"),
    B("kept_attention_distillation_loss", "type", lambda: kept_attention_distillation_loss(
      _x(1, 1, 2, 3), _x(1, 1, 2, 5), _idx([0.0, 1.0, 2.0])), TypeError,
      "kept must be an int64 or int32"),
    B("kept_attention_distillation_loss", "range", lambda: kept_attention_distillation_loss(
      _x(1, 1, 2, 3), _x(1, 1, 2, 5), _idx([0, 1, 5])), ValueError, r"kept must index \[0, 5\)"),
    B("kept_attention_distillation_loss", "range", lambda: kept_attention_distillation_loss(
      _x(1, 1, 2, 3), _x(1, 1, 2, 5), _idx([0, 2, 0])), ValueError,
      "kept must hold distinct indices"),
    B("kept_attention_distillation_loss", "dims", lambda: kept_attention_distillation_loss(
      _x(1, 1, 2, 3), _x(1, 1, 2, 5), _idx([0, 1])), ValueError, r"kept must have shape \(1, 3\)"),
    B("kept_attention_distillation_loss", "device", lambda: kept_attention_distillation_loss(
      _x(1, 1, 2, 3), meta(_x(1, 1, 2, 5)), _idx([0, 1, 2])), ValueError, "same device"),
    B("token_feature_distillation_loss", "type", lambda: token_feature_distillation_loss(None,
      None), TypeError, "student_tokens must be a list or tuple"),
    B("token_feature_distillation_loss", "type", lambda: token_feature_distillation_loss(
      _x(2, 1, 3, 4), [_x(1, 3, 4)] * 2), TypeError, "student_tokens must be a list or tuple"),
    B("token_feature_distillation_loss", "rank", lambda: token_feature_distillation_loss(
      [_x(3, 4)], [_x(3, 4)]), ValueError, r"student_tokens\[0\] must have 3 dimensions"),
    B("token_feature_distillation_loss", "dims", lambda: token_feature_distillation_loss(
      [_x(1, 3, 4)], [_x(1, 3, 5)]), ValueError, "layer 0: student tokens"),
    B("token_feature_distillation_loss", "zero", lambda: token_feature_distillation_loss([], []),
      ValueError, "need one .B, J, D. tensor per layer"),
    B("token_feature_distillation_loss", "device", lambda: token_feature_distillation_loss(
      [_x(1, 3, 4)], [meta(_x(1, 3, 4))]), ValueError, "same device"),
    # schedules
    B("ConstantKeepRate", "nonfinite", lambda: ConstantKeepRate(NAN), ValueError,
      "target must be in"),
    B("ConstantKeepRate", "type", lambda: ConstantKeepRate("0.5"), TypeError,
      "target must be a float"),
    B("ConstantKeepRate", "zero", lambda: ConstantKeepRate([]), ValueError, "non-empty"),
    B("ConstantKeepRate", "range", lambda: ConstantKeepRate(0.5)(0, iteration=3,
      iters_per_epoch=3), ValueError, "iteration must be <= 2"),
    B("ConstantKeepRate", "type", lambda: ConstantKeepRate(0.5)("3"), TypeError,
      "epoch must be a number"),
    B("LinearWarmupKeepRate", "nonfinite", lambda: LinearWarmupKeepRate(0.5, NAN, 10), ValueError,
      "warmup_epochs must be a non-negative finite"),
    B("LinearWarmupKeepRate", "nonfinite", lambda: LinearWarmupKeepRate(0.5, 1, 10)(INF),
      ValueError, "epoch must be a non-negative finite"),
    B("LinearWarmupKeepRate", "type", lambda: LinearWarmupKeepRate(0.5, 1, None), TypeError,
      "end_epoch must be a number"),
    B("LinearWarmupKeepRate", "range", lambda: LinearWarmupKeepRate(0.5, 10, 10), ValueError,
      "end_epoch .10. must be greater"),
    B("CosineWarmupKeepRate", "nonfinite", lambda: CosineWarmupKeepRate(0.5, 1, INF), ValueError,
      "end_epoch must be a non-negative finite"),
    B("CosineWarmupKeepRate", "nonfinite", lambda: CosineWarmupKeepRate(0.5, 1, 10)(10**400),
      ValueError, "epoch must be a non-negative finite"),
    B("CosineWarmupKeepRate", "range", lambda: CosineWarmupKeepRate(0.5, -1, 10), ValueError,
      "warmup_epochs must be a non-negative"),
    B("CosineWarmupKeepRate", "type", lambda: CosineWarmupKeepRate(0.5, 1, 10)(True), TypeError,
      "epoch must be a number"),
    # FLOP counting
    B("count_flops", "type", lambda: count_flops(lambda x: x, _x(1, 4)), TypeError,
      "model must be an nn.Module"),
    B("count_flops", "type", lambda: count_flops(Mlp(4, 4), 3), TypeError,
      r"inputs\[0\] must be a torch\.Tensor"),
    B("count_flops", "dims", lambda: count_flops(Mlp(4, 4), _x(1, 5)), ValueError,
      "x must have last dimension 4"),
    B("count_flops", "device", lambda: count_flops(Mlp(4, 4), meta(_x(1, 4))), ValueError,
      r"x \(torch\.float32 on meta\) must match"),
]
del B


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=f"{c.entry}-{c.category}-{i}") for i, c in enumerate(BAD_CASES)]
)
def test_bad_input_is_refused_naming_the_argument(case: Bad):
    with pytest.raises(case.error, match=case.match):
        case.call()


# ----------------------------------------------------------------------------------------------
# Valid but odd input: a finite result equal to a reference
# ----------------------------------------------------------------------------------------------














def _all_masked_mhga():
    """MHGA (torch backend) where every key of group 1 is masked: that group attends to nothing
    (output = proj(0) = the projection bias); the others as if group 1 were absent."""
    module = MultiHeadGroupAttention(8, 2, backend="torch").eval()
    x = _x(2, 3, 4, 8)
    key_mask = torch.ones(2, 3, 4, dtype=torch.bool)
    key_mask[:, 1] = False

    def call():
        return module(x, key_mask=key_mask)

    def ref():
        reference = copy.deepcopy(module).double()
        out = reference(x.double(), key_mask=key_mask).float()
        bias = module.proj.bias.detach().expand(2, 4, 8)
        torch.testing.assert_close(out[:, 1], bias)
        return out

    return call, ref


def _all_masked_mhga_shared():
    """All keys of every group masked, with shared slots: every output row is the bias, and the
    scoring logits are all -inf with lse -inf (documented), never NaN."""
    module = MultiHeadGroupAttention(8, 2, backend="torch").eval()
    x = _x(1, 2, 4, 8)
    key_mask = torch.zeros(1, 2, 4, dtype=torch.bool)

    def call():
        out, logits = module.forward_scored(x, num_shared=1, key_mask=key_mask, score_queries=1)
        assert not logits.logits.isnan().any() and (logits.lse == -INF).all()
        assert (token_scores(logits, "mean") == 0).all()
        return out

    return call, lambda: module.proj.bias.detach().expand(1, 2, 4, 8)



def _kept_attention_with_masked_keys():
    """A kept key masked in both networks (-inf logits) contributes nothing: same loss as
    without that column."""
    student = _x(1, 2, 3, 3)
    teacher = _x(1, 2, 3, 6)
    kept = _idx([0, 4, 5])
    student[..., 1] = -INF
    teacher[..., 4] = -INF
    teacher[:, 1, 0] = -INF  # a teacher row without any real key contributes 0

    def ref():
        s, t = student[..., [0, 2]].double(), teacher[..., [0, 5]].double()
        p_t = torch.log_softmax(t, dim=-1)
        kl = (p_t.exp() * (p_t - torch.log_softmax(s, dim=-1))).sum(-1)
        kl[:, 1, 0] = 0.0
        return kl.mean().float()

    return lambda: kept_attention_distillation_loss(student, teacher, kept), ref


def _pruner_pair(view):
    x, scores = _x(2, 3, 6, 4), _u(2, 3, 5)
    mask = _u(2, 3, 6) > 0.3
    pruner = GroupTokenPruner(0.6, fuse_pruned=True)

    def run(a, b):
        result = pruner(a, b, num_shared=1, key_mask=mask)
        return result.tokens, result.kept_idx, result.key_mask, result.fusion_weights

    return (lambda: run(view(x), view(scores)),
            lambda: run(view(x).contiguous(), view(scores).contiguous()))  # fmt: skip


def _pruner_all_masked():
    x = _x(1, 2, 5, 3)
    mask = torch.zeros(1, 2, 5, dtype=torch.bool)
    mask[:, :, 0] = True  # only the shared slot is real
    scores = torch.full((1, 2, 4), NAN)  # scores of padding are ignored, NaN included

    def call():
        result = GroupTokenPruner(0.5)(x, scores, num_shared=1, key_mask=mask)
        return result.tokens, result.key_mask

    return call, lambda: (x[:, :, :3], mask[:, :, :3])


def _flops(view):
    model = Mlp(4, 6)
    x = view(_x(2, 4))
    return lambda: count_flops(model, x).macs, lambda: count_flops(model, x.contiguous()).macs


_TPC = TokenPruningCluster(2)
_TRA = lambda: TokenRecoveringAttention(8, 5, 2)  # noqa: E731
_BLOCK = lambda: TransformerBlock(8, 2, backend="torch")  # noqa: E731

ODD_CASES: list[Odd] = [
    _odd("GroupTokenPruner", "strided", _pruner_pair(strided)),
    _odd("GroupTokenPruner", "expanded", _pruner_pair(expanded)),
    _odd("GroupTokenPruner", "masked", _pruner_all_masked()),
    _odd("GroupTokenPruner", "zero", (
        lambda: GroupTokenPruner(0.5)(_x(0, 2, 5, 3), _x(0, 2, 4), num_shared=1).tokens,
        lambda: torch.zeros(0, 2, 3, 3))),
    _odd("GroupTokenPruner", "zero", (  # nothing private: every slot is shared
        lambda: GroupTokenPruner(0.5)(torch.ones(2, 3, 4), _x(2, 0), num_shared=3).tokens,
        lambda: torch.ones(2, 3, 4))),
    _odd("keep_count", "zero", (lambda: keep_count(0.5, 0), lambda: 0)),
    _odd("PrunedTokens", "strided", _apply_pair(torch.arange(16.0).reshape(2, 8, 1), strided,
        fuse=True)),
    _odd("PrunedTokens", "expanded", _apply_pair(torch.arange(8.0)[None, :, None],
        lambda t: t.expand(2, 8, 3))),
    _odd("select_topk", "strided", _same_fn(select_topk, _x(3, 7), 3)),
    _odd("select_topk", "expanded", _same_fn(select_topk, _x(3, 7), 3, view=expanded)),
    _odd("select_topk", "zero", (lambda: select_topk(_x(0, 7), 3),
                                 lambda: torch.zeros(0, 3, dtype=torch.int64))),
    _odd("select_topk", "masked", (lambda: select_topk(_x(2, 5), 2, key_mask=torch.zeros(2, 5,
        dtype=torch.bool)), lambda: _idx([0, 1], [0, 1]))),
    _odd("gather_tokens", "strided", _same_fn(gather_tokens, _x(2, 6, 3), _idx([5, 0], [1, 1]))),
    _odd("gather_tokens", "expanded", _same_fn(gather_tokens, _x(2, 6, 3), _idx([5, 0], [1, 2]),
        view=expanded)),
    _odd("gather_tokens", "zero", (lambda: gather_tokens(_x(2, 6, 3), _idx([], [])),
                                   lambda: torch.zeros(2, 0, 3))),
    _odd("pruned_token_weights", "strided", _same_fn(pruned_token_weights, _u(2, 5),
        _idx([0, 3], [4, 1]))),
    _odd("pruned_token_weights", "masked", (lambda: pruned_token_weights(torch.tensor([[NAN, 1.0]]),
        _idx([1]), key_mask=torch.tensor([[F, T]])), lambda: torch.zeros(1, 2))),
    _odd("fuse_pruned_tokens", "strided", _same_fn(fuse_pruned_tokens, _x(2, 5, 3),
        _u(2, 5), _idx([0, 3], [4, 1]), normalize=True)),
    _odd("fuse_pruned_tokens", "expanded", _same_fn(fuse_pruned_tokens, _x(2, 5, 3),
        _u(2, 5), _idx([0, 3], [4, 1]), view=expanded)),
    _odd("fuse_pruned_tokens", "zero", (lambda: fuse_pruned_tokens(_x(2, 0, 3), _x(2, 0),
        _idx([], []), normalize=True), lambda: torch.zeros(2, 1, 3))),
    _odd("fuse_pruned_tokens", "masked", (lambda: fuse_pruned_tokens(_x(2, 4, 3),
        _u(2, 4), _idx([0], [1]), key_mask=torch.zeros(2, 4, dtype=torch.bool),
        normalize=True), lambda: torch.zeros(2, 1, 3))),
    _odd("softmax_pool_score", "strided", _same_fn(softmax_pool_score, _x(2, 3, 2, 5))),
    _odd("softmax_pool_score", "masked", (lambda: softmax_pool_score(torch.full((2, 2, 3), -INF)),
        lambda: torch.full((3,), -INF))),  # documented: -inf for a column without a real key
    _odd("mean_score", "strided", _same_fn(mean_score, _u(2, 3, 2, 5))),
    _odd("mean_score", "expanded", _same_fn(mean_score, _u(2, 3, 2, 5), view=expanded)),
    _odd("cls_score", "strided", _same_fn(cls_score, _u(2, 3, 1, 5))),
    _odd("token_scores", "masked", (lambda: token_scores(_attention(key_mask=torch.zeros(1, 2, 5,
        dtype=torch.bool)), "mean"), lambda: torch.zeros(1, 2, 4))),
    _odd("MultiHeadGroupAttention", "masked", _all_masked_mhga()),
    _odd("MultiHeadGroupAttention", "masked", _all_masked_mhga_shared()),
    _odd("MultiHeadGroupAttention", "strided", _same_module(lambda m, x: m(x, num_shared=1),
        lambda: MultiHeadGroupAttention(8, 2), (2, 3, 4, 8))),
    _odd("MultiHeadGroupAttention", "expanded", _same_module(lambda m, x: m(x, num_shared=1),
        lambda: MultiHeadGroupAttention(8, 2), (2, 3, 4, 8), view=expanded)),
    _odd("MultiHeadGroupAttention", "zero", _empty_batch(lambda m, x: m(x),
        lambda: MultiHeadGroupAttention(8, 2), (2, 3, 4, 8))),
    _odd("group_attention", "masked", (lambda: group_attention(*[_x(1, 2, 2, 3, 4)] * 3,
        num_shared=1, key_mask=torch.zeros(1, 2, 3, dtype=torch.bool), backend="torch"),
        lambda: torch.zeros(1, 2, 2, 3, 4))),
    _odd("group_attention_scored", "masked", (lambda: group_attention_scored(
        *[_x(1, 2, 2, 3, 4)] * 3, score_queries=1, num_shared=1,
        key_mask=torch.zeros(1, 2, 3, dtype=torch.bool), backend="torch")[0],
        lambda: torch.zeros(1, 2, 2, 3, 4))),
    _odd("gathered_attention", "masked", (lambda: gathered_attention(_x(1, 2, 2, 3, 4),
        _x(1, 2, 5, 4), _x(1, 2, 5, 4), _idx([[0, 1], [2, 4]]), key_mask=torch.zeros(1, 2, 2,
        dtype=torch.bool), backend="torch"), lambda: torch.zeros(1, 2, 2, 3, 4))),
    _odd("TransformerBlock", "masked", _f64(lambda m, x, key_mask: m(x, key_mask=key_mask),
        _BLOCK, (2, 2, 4, 8), key_mask=torch.tensor([[[T] * 4, [F] * 4]] * 2))),
    _odd("TransformerBlock", "strided", _same_module(lambda m, x: m(x), _BLOCK, (2, 3, 4, 8))),
    _odd("TransformerBlock", "zero", _empty_batch(lambda m, x: m(x), _BLOCK, (2, 3, 8))),
    _odd("Mlp", "strided", _same_module(lambda m, x: m(x), lambda: Mlp(8, 6), (2, 3, 8))),
    _odd("Mlp", "expanded", _same_module(lambda m, x: m(x), lambda: Mlp(8, 6), (2, 3, 8),
        view=expanded)),
    _odd("Mlp", "zero", _empty_batch(lambda m, x: m(x), lambda: Mlp(8, 6), (2, 3, 8))),
    _odd("DropPath", "strided", _same_module(lambda m, x: m(x), lambda: DropPath(0.5), (2, 3))),
    _odd("DropPath", "zero", _empty_batch(lambda m, x: m(x), lambda: DropPath(0.5), (2, 3))),
    _odd("TokenRecoveringAttention", "strided", _same_module(lambda m, x: m(x), _TRA,
        (2, 3, 4, 8))),
    _odd("TokenRecoveringAttention", "expanded", _same_module(lambda m, x: m(x), _TRA, (2, 3, 8),
        view=expanded)),
    _odd("TokenRecoveringAttention", "zero", _empty_batch(lambda m, x: m(x), _TRA, (2, 3, 8))),
    _odd("TokenRecoveringAttention", "zero", (lambda: _TRA()(_x(2, 3, 0, 8)),
                                              lambda: torch.zeros(2, 5, 0, 8))),
    _odd("TokenPruningCluster", "strided", _same_fn(lambda t: _TPC(t).kept_idx, _x(2, 6, 3, 4))),
    _odd("TokenPruningCluster", "expanded", _same_fn(lambda t: _TPC(t).tokens, _x(2, 6, 4),
        view=expanded)),
    _odd("TokenPruningCluster", "zero", (lambda: _TPC(_x(0, 6, 4)).tokens,
                                         lambda: torch.zeros(0, 2, 4))),
    _odd("density_peaks", "strided", _same_fn(density_peaks, _x(2, 6, 3))),
    _odd("density_peaks", "zero", (lambda: density_peaks(_x(2, 0, 3)).score,
                                   lambda: torch.zeros(2, 0))),
    _odd("pool_frames", "strided", _same_fn(pool_frames, _x(2, 6, 3, 4))),
    _odd("pool_frames", "zero", (lambda: pool_frames(_x(0, 6, 3, 4)),
                                 lambda: torch.zeros(0, 6, 4))),
    _odd("kept_attention_distillation_loss", "masked", _kept_attention_with_masked_keys()),
    _odd("kept_attention_distillation_loss", "zero", (lambda: kept_attention_distillation_loss(
        _x(1, 2, 3, 0), _x(1, 2, 3, 6), _idx([])), lambda: torch.tensor(0.0))),
    _odd("kept_attention_distillation_loss", "strided", _same_fn(
        kept_attention_distillation_loss, _x(1, 2, 3, 3), _x(1, 2, 3, 6), _idx([1, 4, 5]))),
    _odd("token_feature_distillation_loss", "zero", _feature_loss_with_an_empty_layer()),
    _odd("token_feature_distillation_loss", "strided", (lambda: token_feature_distillation_loss(
        [strided(torch.ones(2, 3, 4))], [strided(torch.zeros(2, 3, 4))]),
        lambda: torch.tensor(4.0))),
    _odd("count_flops", "strided", _flops(strided)),
]




@pytest.mark.parametrize(
    "case", [pytest.param(c, id=f"{c.entry}-{c.category}-{i}") for i, c in enumerate(ODD_CASES)]
)
def test_valid_odd_input_gives_the_reference_result(case: Odd):
    got = case.call()
    if case.reference is None:  # the result only needs to be finite
        assert torch.isfinite(got).all()
        return
    expected = case.reference()
    _assert_same(got, expected)
    if isinstance(got, torch.Tensor) and got.is_floating_point() and case.category != "masked":
        assert torch.isfinite(got).all()


# ----------------------------------------------------------------------------------------------
# NaN in the data of a dense computation propagates (as in any torch op) and is never turned
# into a finite number; NaN that a decision would absorb (selection, clustering, fusion
# weights, loss targets and weights) is refused by the tables above.
# ----------------------------------------------------------------------------------------------




PROPAGATES: list[tuple[str, Callable[[], torch.Tensor]]] = [
    ("MultiHeadGroupAttention", lambda: MultiHeadGroupAttention(8, 2)(_poisoned(1, 2, 3, 8))),
    ("MultiHeadGroupAttention", lambda: MultiHeadGroupAttention(8, 2)(_poisoned(1, 1, 8))),
    ("MultiHeadGroupAttention", lambda: MultiHeadGroupAttention(8, 2)(
        _poisoned(1, 3, 8, index=(0, 1)))[0, 1]),
    # PyTorch's CPU flash kernel returns 0 for a row whose logits are all NaN: a NaN query row,
    # or keys that are all NaN; the torch backend keeps them NaN
    ("group_attention", lambda: group_attention(_poisoned(1, 1, 2, 3, 4, index=(0, 0, 0, 1)),
        _x(1, 1, 2, 3, 4), _x(1, 1, 2, 3, 4), backend="torch")[0, 0, 0, 1]),
    ("group_attention", lambda: group_attention(_x(1, 1, 2, 3, 4), _poisoned(1, 1, 2, 3, 4),
        _x(1, 1, 2, 3, 4), backend="torch")),
    ("TransformerBlock", lambda: TransformerBlock(8, 2)(_poisoned(1, 3, 8))),
    ("Mlp", lambda: Mlp(8, 4)(_poisoned(2, 8))),
    ("DropPath", lambda: DropPath(0.5)(_poisoned(2, 3))),
    ("TokenRecoveringAttention", lambda: TokenRecoveringAttention(8, 4, 2)(_poisoned(1, 3, 8))),
    ("group_attention", lambda: group_attention(*[_poisoned(1, 1, 1, 3, 4)] * 3)),
    ("gathered_attention", lambda: gathered_attention(_x(1, 1, 1, 2, 4), _poisoned(1, 1, 3, 4),
        _x(1, 1, 3, 4), _idx([[0, 1]]))),
    ("softmax_pool_score", lambda: softmax_pool_score(_poisoned(2, 3, 4))),
    ("mean_score", lambda: mean_score(_poisoned(2, 3, 4))),
    ("cls_score", lambda: cls_score(_poisoned(2, 1, 4))),
    ("token_scores", lambda: token_scores(_attention()._replace(
        logits=_poisoned(1, 2, 2, 2, 6)), "softmax_pool")),
    ("gather_tokens", lambda: gather_tokens(_poisoned(1, 4, 2), _idx([0, 3]))),
    ("pool_frames", lambda: pool_frames(_poisoned(1, 3, 2, 2))),
    ("PrunedTokens", lambda: _pruned().apply(_poisoned(2, 8, 1))),
    ("kept_attention_distillation_loss", lambda: kept_attention_distillation_loss(
        _poisoned(1, 1, 2, 2), _x(1, 1, 2, 4), _idx([0, 3]))),
    ("token_feature_distillation_loss", lambda: token_feature_distillation_loss(
        [_poisoned(1, 2, 3)], [_x(1, 2, 3)])),
]


@pytest.mark.parametrize("call", [pytest.param(c, id=e) for e, c in PROPAGATES])
def test_nan_data_propagates_to_the_result(call):
    assert torch.isnan(call()).any()


#: The modules whose ``__all__`` are the library's entry points (the top level and its named
#: submodules). ``tokenprune.layout`` and
#: ``tokenprune.checks`` hold the argument checks themselves: they run inside every entry point.
PUBLIC_MODULES = (
    "tokenprune",
    "tokenprune.attention",
    "tokenprune.blocks",
    "tokenprune.losses",
    "tokenprune.patch",
    "tokenprune.scores",
    "tokenprune.selection",
    "tokenprune.temporal",
)


def public_names() -> set[str]:
    names: set[str] = set()
    for module in PUBLIC_MODULES:
        names |= set(importlib.import_module(module).__all__)
    return names


#: Public names that are result containers or an abstract base: nothing to feed them.
EXEMPT = {
    "AttentionLogits": "result container of MultiHeadGroupAttention (fed to token_scores)",
    "DensityPeaks": "result container of density_peaks",
    "FlopReport": "result container of count_flops",
    "KeepRateSchedule": "abstract base; its __call__ runs through the three schedules",
    "PrunedFrames": "result container of TokenPruningCluster",
    "ScoreRule": "type alias of the rule names (token_scores is fuzzed with bad rules)",
    "TokenState": "container; GroupTokenPruner.prune checks it (tests/tokenprune/test_state.py)",
    "timm": "a patch of whole models; its errors: tests/tokenprune/test_patch_timm.py",
    "register_backend": "registry hook, tested in tests/tokenprune/attention/test_backends.py",
}

#: The categories each entry point is fuzzed with (bad input, odd input or NaN propagation).
APPLICABLE = {
    "ConstantKeepRate": "type zero range nonfinite",
    "CosineWarmupKeepRate": "type range nonfinite",
    "LinearWarmupKeepRate": "type range nonfinite",
    "DropPath": "type rank dims zero range nonfinite strided",
    "GroupTokenPruner": "type rank dims zero range nonfinite device flag strided expanded masked",
    "Mlp": "type rank dims zero range nonfinite device strided expanded",
    "MultiHeadGroupAttention":
        "type rank dims zero range nonfinite device flag strided expanded masked",
    "PrunedTokens": "type dims nonfinite device strided expanded",
    "TokenPruningCluster": "type rank zero range nonfinite device flag strided expanded",
    "TokenRecoveringAttention": "type rank zero range nonfinite device flag strided expanded",
    "TransformerBlock": "type rank dims zero range nonfinite device flag strided masked",
    "available_backends": "type flag",
    "cls_score": "type dims zero nonfinite strided",
    "count_flops": "type dims device strided",
    "density_peaks": "type rank zero range nonfinite flag strided",
    "fuse_pruned_tokens": "type rank dims zero range nonfinite device flag strided expanded masked",
    "gather_tokens": "type rank dims zero range nonfinite device strided expanded",
    "gathered_attention": "type rank dims range nonfinite device masked",
    "group_attention": "type rank dims range nonfinite device flag masked",
    "group_attention_scored": "type rank dims range nonfinite device flag masked",
    "keep_count": "type zero range nonfinite flag",
    "kept_attention_distillation_loss": "type rank dims zero range nonfinite device strided masked",
    "mean_score": "type rank zero nonfinite device strided expanded",
    "pool_frames": "type rank zero nonfinite strided",
    "pruned_token_weights": "type rank dims range nonfinite device strided masked",
    "select_topk": "type rank dims zero range nonfinite device strided expanded masked",
    "softmax_pool_score": "type rank dims nonfinite device strided masked",
    "token_feature_distillation_loss": "type rank dims zero nonfinite device strided",
    "token_scores": "type dims nonfinite device flag masked",
}


def test_every_entry_point_is_fuzzed():
    covered: dict[str, set[str]] = {}
    for case in (*BAD_CASES, *ODD_CASES):
        covered.setdefault(case.entry, set()).add(case.category)
    for entry, _ in PROPAGATES:
        covered.setdefault(entry, set()).add("nonfinite")
    public = public_names()
    assert set(EXEMPT) <= public
    assert set(APPLICABLE) == public - set(EXEMPT), "every public name needs fuzz categories"
    assert set(covered) <= public
    for entry, categories in APPLICABLE.items():
        required = set(categories.split())
        assert required <= set(CATEGORIES)
        missing = required - covered.get(entry, set())
        assert not missing, f"{entry}: no case for {sorted(missing)}"
