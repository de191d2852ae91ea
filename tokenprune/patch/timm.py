"""Token pruning for timm's VisionTransformer in one call, in the manner of ToMe's patch.

:func:`timm` swaps every block's attention for :class:`~tokenprune.MultiHeadGroupAttention`
(same state_dict) and makes the listed blocks prune the patch tokens after their attention:

* the scoring queries are the prefix tokens (class and register tokens), which are always kept;
* ``rule="cls"`` scores by the class token's attention (EViT), ``"mean"`` by the prefix tokens'
  mean attention (PPT), ``"softmax_pool"`` by their softmax-pooled logits (GTPT);
* each pruning block keeps ``ceil(keep_rate * n)`` of the ``n`` patch tokens present (EViT's and
  PPT's compounding budget), and with ``fuse=True`` sums the pruned ones into one extra token,
  weighted by their scores (EViT).

``model.keep_rate`` and ``model.prune_layers`` can be changed afterwards, like ToMe's
``model.r``. At keep rate 1 nothing is pruned and the output equals the unpatched model's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import Tensor, nn

from ..attention import MultiHeadGroupAttention
from ..checks import check_bool, check_int, check_keep_rate
from ..pruner import GroupTokenPruner
from ..scores import ScoreRule, token_scores

__all__ = ["timm"]

_RULES = ("cls", "mean", "softmax_pool")
_BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")


@dataclass
class _Pruning:
    """The settings every patched block reads at each forward pass."""

    pruner: GroupTokenPruner
    prune_layers: frozenset[int]
    rule: ScoreRule
    num_prefix: int


class _PruningBlock(nn.Module):
    """timm's ``Block`` forward pass, pruning after the attention when its index is listed."""

    _pruning: _Pruning
    _index: int

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x [B, N, D] -> [B, N', D]`` (``N' < N`` where this block prunes)."""
        pruning = self._pruning
        if self._index in pruning.prune_layers and pruning.pruner.keep_rate < 1.0:
            if attn_mask is not None:
                raise ValueError("a pruning block cannot honour attn_mask (its tokens change)")
            queries = 1 if pruning.rule == "cls" else pruning.num_prefix
            out, logits = self.attn.forward_scored(self.norm1(x), queries, pruning.num_prefix)
            x = x + self.drop_path1(self.ls1(out))
            scores = token_scores(logits, pruning.rule)
            x = pruning.pruner(x, scores, num_shared=pruning.num_prefix).tokens
        else:
            x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class _PrunedVisionTransformer(nn.Module):
    """Mixed into the patched model's class: the pruning settings as attributes."""

    _pruning: _Pruning

    @property
    def keep_rate(self) -> float:
        """Fraction of the present patch tokens each pruning block keeps (1.0: none)."""
        return self._pruning.pruner.keep_rate

    @keep_rate.setter
    def keep_rate(self, value: float) -> None:
        self._pruning.pruner.keep_rate = value

    @property
    def prune_layers(self) -> tuple[int, ...]:
        """The 0-based indices of the blocks that prune after their attention."""
        return tuple(sorted(self._pruning.prune_layers))

    @prune_layers.setter
    def prune_layers(self, layers: Iterable[int]) -> None:
        self._pruning.prune_layers = _check_layers(layers, len(self.blocks))


def timm(
    model: nn.Module,
    keep_rate: float = 0.7,
    layers: Iterable[int] = (3, 6, 9),
    rule: ScoreRule = "cls",
    fuse: bool = True,
    backend: str = "auto",
) -> nn.Module:
    """Patch a timm ``VisionTransformer`` in place to prune tokens; returns it.

    Args:
        model: a timm ``VisionTransformer`` (``blocks`` of timm ``Block`` modules with timm's
            ``Attention``, and ``num_prefix_tokens``).
        keep_rate: fraction of the present patch tokens each pruning block keeps, in ``(0, 1]``.
        layers: 0-based indices of the blocks that prune after their attention (EViT: 3, 6, 9
            of 12).
        rule: ``"cls"`` (EViT; needs a class token), ``"mean"`` (PPT) or ``"softmax_pool"``
            (GTPT); see :mod:`tokenprune.scores`.
        fuse: append a token that sums the pruned tokens weighted by their scores (EViT's
            inattentive-token fusion; ``"cls"`` and ``"mean"`` only).
        backend: group-attention backend of the new attention modules.

    Returns:
        ``model``, its class now a subclass with settable ``keep_rate`` and ``prune_layers``.

    Raises:
        TypeError: ``model`` is not a timm-layout ``VisionTransformer``, or an argument has the
            wrong type.
        ValueError: a keep rate outside ``(0, 1]``, a layer index outside the model, an unknown
            rule, ``"cls"`` without a class token, fusion with ``"softmax_pool"``, an attention
            module whose layout MHGA cannot take (a head width other than ``dim / heads``), or
            a model that is already patched.
    """
    blocks = _check_model(model)
    if isinstance(model, _PrunedVisionTransformer):
        raise ValueError("model is already patched; set model.keep_rate / model.prune_layers")
    if rule not in _RULES:
        raise ValueError(f"rule must be one of {_RULES}, got {rule!r}")
    check_bool("fuse", fuse)
    num_prefix = check_int("model.num_prefix_tokens", model.num_prefix_tokens, low=0)
    if rule == "cls" and (num_prefix == 0 or getattr(model, "cls_token", None) is None):
        raise ValueError("rule 'cls' scores by the class token; this model has none")
    if rule != "cls" and num_prefix == 0:
        raise ValueError(f"rule {rule!r} scores by the prefix tokens; this model has none")
    if fuse and rule == "softmax_pool":
        raise ValueError("fuse=True weights tokens by probabilities: use rule 'cls' or 'mean'")
    pruning = _Pruning(
        GroupTokenPruner(check_keep_rate("keep_rate", keep_rate), fuse_pruned=fuse),
        _check_layers(layers, len(blocks)),
        rule,
        num_prefix,
    )
    attentions = [_group_attention_from(block.attn, backend) for block in blocks]  # may raise
    for index, (block, attn) in enumerate(zip(blocks, attentions, strict=True)):
        block.attn = attn
        block.__class__ = _subclass(type(block), _PruningBlock)
        block._pruning, block._index = pruning, index
    model.__class__ = _subclass(type(model), _PrunedVisionTransformer)
    model._pruning = pruning
    return model


def _check_model(model: object) -> list[nn.Module]:
    """The blocks of a timm-layout ``VisionTransformer``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a timm VisionTransformer, got {type(model).__name__}")
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential | nn.ModuleList) or not hasattr(
        model, "num_prefix_tokens"
    ):
        raise TypeError(
            f"model must be a timm VisionTransformer (blocks and num_prefix_tokens), got "
            f"{type(model).__name__}"
        )
    for index, block in enumerate(blocks):
        missing = [part for part in _BLOCK_PARTS if not hasattr(block, part)]
        if missing:
            raise TypeError(
                f"model.blocks[{index}] ({type(block).__name__}) is not a timm Block: it lacks "
                f"{missing}"
            )
    return list(blocks)


def _check_layers(layers: Iterable[int], depth: int) -> frozenset[int]:
    if isinstance(layers, str) or not isinstance(layers, Iterable):
        raise TypeError(f"layers must be an iterable of block indices, got {type(layers).__name__}")
    return frozenset(check_int("layers[]", i, low=0, high=depth - 1) for i in layers)


def _group_attention_from(attn: nn.Module, backend: str) -> MultiHeadGroupAttention:
    """A :class:`MultiHeadGroupAttention` with ``attn``'s weights (strictly loaded) and norms."""
    if isinstance(attn, MultiHeadGroupAttention):
        return attn
    qkv, proj = getattr(attn, "qkv", None), getattr(attn, "proj", None)
    if not isinstance(qkv, nn.Linear) or not isinstance(proj, nn.Linear):
        raise TypeError(f"{type(attn).__name__} is not timm's Attention (fused qkv and proj)")
    dim, heads = qkv.in_features, attn.num_heads
    if qkv.out_features != 3 * dim or proj.in_features != dim or dim % heads:
        raise ValueError(
            f"MultiHeadGroupAttention needs qkv {dim} -> {3 * dim} and {heads} heads of width "
            f"{dim} / {heads}; got qkv {dim} -> {qkv.out_features}, proj {proj.in_features}"
        )
    group = MultiHeadGroupAttention(
        dim, heads, qkv_bias=qkv.bias is not None, scale=float(attn.scale),
        attn_drop=float(getattr(attn.attn_drop, "p", 0.0)), backend=backend,
        proj_bias=proj.bias is not None,
    )  # fmt: skip
    # timm's own norm modules (whatever their type and epsilon) and dropout
    for name in ("q_norm", "k_norm", "norm", "proj_drop"):
        if hasattr(attn, name):
            setattr(group, name, getattr(attn, name))
    group.load_state_dict(attn.state_dict(), strict=True)
    return group.to(qkv.weight.device, qkv.weight.dtype).train(attn.training)


def _subclass(base: type, mixin: type) -> type:
    """``class Pruned<base>(mixin, base)``, made once per base class."""
    if issubclass(base, mixin):
        return base
    key = (base, mixin)
    if key not in _SUBCLASSES:
        _SUBCLASSES[key] = type(f"Pruned{base.__name__}", (mixin, base), {})
    return _SUBCLASSES[key]


_SUBCLASSES: dict[tuple[type, type], type] = {}
