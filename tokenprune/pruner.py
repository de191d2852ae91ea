"""Score-based pruning of the private tokens of each group."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import (
    check_bool,
    check_bool_mask,
    check_floating,
    check_int,
    check_keep_rate,
    check_same_device,
    check_tensor,
    check_values,
    static_shape,
)
from .selection import NAN_SCORES, _select_topk, gather_tokens, pruned_token_weights
from .state import TokenState

__all__ = ["Budget", "GroupTokenPruner", "PrunedTokens", "keep_count"]

#: How a keep rate becomes a token count.
#:
#: * ``"original"``: ``int(num_original * keep_rate)`` (floor), a fraction of the token count
#:   before any pruning, as GTPT does. Rates are absolute, so successive steps do not compound.
#: * ``"current"``: ``ceil(num_current * keep_rate)``, a ratio of the tokens present now, as PPT
#:   and EViT do. Successive steps compound (256 -> 180 -> 126 -> 89 at 0.7).
Budget = Literal["original", "current"]


def _count(keep_rate: float, num_current: int, budget: Budget, num_original: int | None) -> int:
    """``keep_count`` without argument checks (used per forward on validated settings)."""
    if budget == "current":
        return math.ceil(num_current * keep_rate)
    return min(int(num_original * keep_rate), num_current)


def keep_count(
    keep_rate: float,
    num_current: int,
    *,
    budget: Budget = "current",
    num_original: int | None = None,
) -> int:
    """Number of private tokens a pruning step keeps.

    Args:
        keep_rate: rate in ``(0, 1]``.
        num_current: private tokens present before this step.
        budget: ``"current"`` (``ceil(num_current * keep_rate)``) or ``"original"``
            (``int(num_original * keep_rate)``, never more than ``num_current``).
        num_original: token count before any pruning; required for ``"original"``.

    Returns:
        The count, in ``[0, num_current]``.
    """
    keep_rate = check_keep_rate("keep_rate", keep_rate)
    num_current = check_int("num_current", num_current, low=0)
    if budget not in ("original", "current"):
        raise ValueError(f"budget must be 'original' or 'current', got {budget!r}")
    if budget == "original":
        if num_original is None:
            raise ValueError("num_original is required when budget='original'")
        num_original = check_int("num_original", num_original, low=0)
    return _count(keep_rate, num_current, budget, num_original)


class PrunedTokens(NamedTuple):
    """Result of a :class:`GroupTokenPruner` step.

    Attributes:
        tokens: ``[B, G, S + k (+1), D]``: the shared tokens, then the kept private tokens in
            their original order, then the fused token if fusion is on. ``[B, ...]`` without
            the group axis for ungrouped input.
        kept_idx: ``[B, G, k]`` int64 positions of the kept tokens among the private slots
            (``0`` is the first slot after the shared ones), ascending.
        key_mask: ``[B, G, S + k (+1)]`` bool validity of the output slots, or None when the
            input had no mask and no fused token was added.
        num_shared: ``S``.
        num_tokens: ``N``, the slots per group before pruning.
        fusion_weights: ``[B, G, N - S]`` weights that built the fused token (zero on kept and
            padding slots), or None without fusion.
    """

    tokens: Tensor
    kept_idx: Tensor
    key_mask: Tensor | None
    num_shared: int
    num_tokens: int
    fusion_weights: Tensor | None

    def apply(self, side: Tensor) -> Tensor:
        """Prune a tensor aligned with the pruner's input the same way as the tokens.

        Use it for positional embeddings, original-index maps and other per-token side data.
        The side tensor may cover all ``N`` slots, or only the ``N - S`` private slots (a
        positional table of the visual tokens, say); the result covers the same slots.

        Args:
            side: ``[B|1, G|1, N or N - S, ...]`` (``[B|1, N or N - S, ...]`` for ungrouped
                input); leading size-1 axes broadcast.

        Returns:
            ``[B, G, S + k (+1), ...]`` for all slots, ``[B, G, k (+1), ...]`` for private
            slots (without the group axis for ungrouped input).

        Raises:
            TypeError: ``side`` is not a tensor.
            ValueError: ``side`` has the wrong slots or leading axes, lives on another device
                than the pruned tokens, or is not floating-point while a fused token is built.
        """
        side = check_tensor("side", side)
        check_same_device(side=side, kept_idx=self.kept_idx)
        grouped = self.kept_idx.ndim == 3
        slot_axis = 2 if grouped else 1
        num_private = self.num_tokens - self.num_shared
        slots = side.shape[slot_axis] if side.ndim > slot_axis else None
        if slots not in (self.num_tokens, num_private):
            raise ValueError(
                f"side must have {self.num_tokens} (all) or {num_private} (private) token slots "
                f"at dimension {slot_axis}, got shape {tuple(side.shape)}"
            )
        lead = tuple(self.kept_idx.shape[:slot_axis])
        try:
            broadcast = torch.broadcast_shapes(tuple(side.shape[:slot_axis]), lead)
        except RuntimeError:
            broadcast = None
        if broadcast is None or tuple(broadcast) != lead:
            axes = "[B|1, G|1, slots, ...]" if grouped else "[B|1, slots, ...]"
            raise ValueError(
                f"side must be {axes} with leading axes broadcastable to {lead}, got shape "
                f"{tuple(side.shape)}"
            )
        num_shared = self.num_shared if slots == self.num_tokens else 0
        kept_idx = self.kept_idx if grouped else self.kept_idx.unsqueeze(1)
        weights = self.fusion_weights
        if weights is not None and not grouped:
            weights = weights.unsqueeze(1)
        side4 = side if grouped else side.unsqueeze(1)
        out = _prune_slots(side4, num_shared, kept_idx, weights)
        return out if grouped else out.squeeze(1)


def _prune_slots(
    x: Tensor, num_shared: int, kept_idx: Tensor, fusion_weights: Tensor | None
) -> Tensor:
    """Keep the shared slots and the kept private slots of ``x [B|1, G|1, N, ...]``."""
    lead = torch.broadcast_shapes(x.shape[:2], kept_idx.shape[:2])
    x = x.expand(*lead, *x.shape[2:])
    private = x[:, :, num_shared:]
    # gather_tokens wants [..., N, D] or [..., N]; flatten any trailing feature axes.
    features = private.shape[3:]
    flat = private.flatten(3) if len(features) > 1 else private
    kept = gather_tokens(flat, kept_idx)
    if len(features) > 1:
        kept = kept.unflatten(3, features)
    parts = [x[:, :, :num_shared], kept]
    if fusion_weights is not None:
        if not x.is_floating_point():
            raise ValueError(f"cannot fuse a non-floating side tensor (dtype {x.dtype})")
        fused = torch.einsum("bgn,bgn...->bg...", fusion_weights.to(x.dtype), private)
        parts.append(fused.unsqueeze(2))
    return torch.cat(parts, dim=2)


class GroupTokenPruner(nn.Module):
    """Keep the highest-scoring private tokens of every group.

    The input holds ``G`` groups of ``N`` token slots; the first ``num_shared`` slots of each
    group are shared (keypoint or class tokens) and always kept. Of the remaining private slots,
    the first ``num_protected`` are protected as well (e.g. GTPT's dense keypoint tokens): they
    are always kept and count toward the budget. The rest are candidates, ranked by ``scores``.

    Each group keeps exactly ``k = keep_count(keep_rate, N - S, ...)`` private tokens, so the
    output stays rectangular. Kept tokens stay in their original order and pass through
    unchanged. Padding slots (``key_mask`` False) are only kept when a group has fewer real
    tokens than ``k``; they stay marked in the returned mask.

    Args:
        keep_rate: in ``(0, 1]``; may be changed between steps (keep-rate schedules).
        budget: ``"current"`` (PPT/EViT, ``ceil((N - S) * rate)``) or ``"original"`` (GTPT,
            ``int(num_original * rate)``); see :data:`Budget`.
        num_original: private-token count before any pruning, for ``budget="original"``.
        fuse_pruned: append one token that sums the pruned tokens weighted by their scores, as
            EViT's released code does; scores must then be non-negative probabilities (the
            ``mean`` or ``cls`` rules).

    Raises:
        TypeError: ``fuse_pruned`` is not a bool, ``keep_rate`` not a number,
            ``num_original`` not an int.
        ValueError: ``keep_rate`` is outside ``(0, 1]``, ``budget`` is unknown, or
            ``num_original`` is missing (for ``budget="original"``) or below 1.
    """

    def __init__(
        self,
        keep_rate: float,
        *,
        budget: Budget = "current",
        num_original: int | None = None,
        fuse_pruned: bool = False,
    ) -> None:
        super().__init__()
        self.keep_rate = keep_rate
        if budget not in ("original", "current"):
            raise ValueError(f"budget must be 'original' or 'current', got {budget!r}")
        if budget == "original" and num_original is None:
            raise ValueError("num_original is required when budget='original'")
        if num_original is not None:
            num_original = check_int("num_original", num_original, low=1)
        self.budget: Budget = budget
        self.num_original = num_original
        self.fuse_pruned = check_bool("fuse_pruned", fuse_pruned)

    @property
    def keep_rate(self) -> float:
        return self._keep_rate

    @keep_rate.setter
    def keep_rate(self, value: float) -> None:
        self._keep_rate = check_keep_rate("keep_rate", value)

    def num_kept(self, num_private: int, keep_rate: float | None = None) -> int:
        """Private tokens kept per group when ``num_private`` are present."""
        rate = self.keep_rate if keep_rate is None else keep_rate
        return _count(rate, num_private, self.budget, self.num_original)

    def forward(
        self,
        x: Tensor,
        scores: Tensor,
        *,
        num_shared: int = 0,
        num_protected: int | Sequence[int] = 0,
        key_mask: Tensor | None = None,
        keep_rate: float | None = None,
    ) -> PrunedTokens:
        """Prune the private tokens of each group.

        Args:
            x: ``[B, G, N, D]`` tokens (``[B, N, D]`` is treated as one group).
            scores: ``[B, G, N - S]`` (``[B, N - S]``) scores of the private slots, e.g. from
                :func:`tokenprune.token_scores`; entries of protected and padding slots are
                ignored.
            num_shared: ``S``, leading shared slots per group.
            num_protected: leading private slots that are always kept: one count for every
                group, or one per group.
            key_mask: optional bool ``[B, G, N]`` (``[B, N]``), False for padding.
            keep_rate: overrides the module's keep rate for this call (two passes with
                different rates, such as GTPT's pruned and entire training passes).

        Returns:
            :class:`PrunedTokens`.

        Raises:
            TypeError: ``x`` or ``scores`` is not a floating-point tensor, ``key_mask`` not a
                bool tensor, a count not an int.
            ValueError: shapes or devices disagree, a count is out of range, a real score is
                NaN, or (with fusion) a pruned real score is not a finite non-negative weight.
        """
        x = check_floating("x", x, ndim=(3, 4))
        scores = check_floating("scores", scores, ndim=x.ndim - 1)
        check_same_device(x=x, scores=scores, key_mask=key_mask)
        grouped = x.ndim == 4
        if not grouped:
            x = x.unsqueeze(1)
            scores = scores.unsqueeze(1)
        batch, groups, num_tokens, _ = static_shape(x)
        num_shared = check_int("num_shared", num_shared, low=0, high=num_tokens)
        num_private = num_tokens - num_shared
        if isinstance(num_protected, Sequence):
            if len(num_protected) != groups:
                raise ValueError(
                    f"num_protected must have one count per group ({groups}), got "
                    f"{len(num_protected)}"
                )
            protected_counts = [
                check_int(f"num_protected[{g}]", n, low=0, high=num_private)
                for g, n in enumerate(num_protected)
            ]
        else:
            protected_counts = [check_int("num_protected", num_protected, low=0,
                                          high=num_private)] * groups  # fmt: skip
        if keep_rate is not None:
            keep_rate = check_keep_rate("keep_rate", keep_rate)
        expected = (batch, groups, num_private)
        if tuple(scores.shape) != expected:
            shown = expected if grouped else (batch, num_private)
            raise ValueError(
                f"scores must have shape {shown} (one score per private token), got "
                f"{tuple(scores.shape if grouped else scores.squeeze(1).shape)}"
            )
        if key_mask is not None:
            mask_shape = (batch, groups, num_tokens) if grouped else (batch, num_tokens)
            check_bool_mask("key_mask", key_mask, mask_shape)
            if not grouped:
                key_mask = key_mask.unsqueeze(1)

        k = self.num_kept(num_private, keep_rate)
        if max(protected_counts, default=0) > k:
            raise ValueError(
                f"num_protected ({max(protected_counts)}) exceeds the number of private tokens "
                f"kept ({k} of {num_private} at keep_rate="
                f"{self.keep_rate if keep_rate is None else keep_rate}, budget={self.budget!r})"
            )
        priority = scores
        if any(protected_counts):
            counts = torch.tensor(protected_counts, device=x.device)
            protected = torch.arange(num_private, device=x.device) < counts[:, None]  # [G, Np]
            priority = priority.masked_fill(protected, float("inf"))
        private_mask = None if key_mask is None else key_mask[:, :, num_shared:]
        # scores of padding slots are ignored (they may be NaN)
        real_priority = priority if private_mask is None else priority.masked_fill(
            ~private_mask, 0.0
        )
        check_values(~torch.isnan(real_priority).any(), NAN_SCORES)
        if k == 0:
            kept_idx = torch.empty(batch, groups, 0, dtype=torch.int64, device=x.device)
        elif k == num_private:
            kept_idx = torch.arange(num_private, device=x.device).expand(batch, groups, k)
        else:
            # padding ranks below every real token, whatever its score (-inf included)
            kept_idx = _select_topk(priority, k, private_mask)

        fusion_weights = None
        if self.fuse_pruned and k < num_private:
            fusion_weights = pruned_token_weights(scores, kept_idx, private_mask)

        tokens = _prune_slots(x, num_shared, kept_idx, fusion_weights)
        out_mask = None
        if key_mask is not None:
            out_mask = _prune_slots(key_mask, num_shared, kept_idx, None)
        if fusion_weights is not None:
            # The fused token is real only where some pruned token carried weight.
            if out_mask is None:
                out_mask = torch.ones(
                    batch, groups, num_shared + k, dtype=torch.bool, device=x.device
                )
            has_weight = (fusion_weights > 0).any(dim=-1, keepdim=True)
            out_mask = torch.cat([out_mask, has_weight], dim=2)

        if not grouped:
            tokens = tokens.squeeze(1)
            kept_idx = kept_idx.squeeze(1)
            out_mask = None if out_mask is None else out_mask.squeeze(1)
            fusion_weights = None if fusion_weights is None else fusion_weights.squeeze(1)
        return PrunedTokens(tokens, kept_idx, out_mask, num_shared, num_tokens, fusion_weights)

    def prune(
        self,
        state: TokenState,
        scores: Tensor,
        *,
        num_protected: int | Sequence[int] = 0,
        keep_rate: float | None = None,
    ) -> TokenState:
        """Prune a :class:`~tokenprune.TokenState`: its tokens, positions, original ids and key
        mask follow one selection.

        Args:
            state: tokens ``[B, (G,) N, D]`` with ``S = state.num_shared`` shared slots, and
                the tensors aligned with them.
            scores: ``[B, (G,) N - S]`` scores of the private slots (:meth:`forward`).
            num_protected, keep_rate: as in :meth:`forward`.

        Returns:
            The state of the kept slots: ``S + k (+1)`` slots per group; with a fused token its
            position is the fused positions and its id is ``-1``.

        Raises:
            TypeError, ValueError: as :meth:`forward`, and for positions or ids that do not
                cover the private slots of ``state.tokens``.
        """
        if not isinstance(state, TokenState):
            raise TypeError(f"state must be a TokenState, got {type(state).__name__}")
        step = self(
            state.tokens, scores, num_shared=state.num_shared, num_protected=num_protected,
            key_mask=state.key_mask, keep_rate=keep_rate,
        )  # fmt: skip
        pos = None if state.pos is None else step.apply(state.pos)
        ids = None
        if state.ids is not None:  # gathered like the tokens; a fused token comes from no input
            ids = step._replace(fusion_weights=None).apply(state.ids)
            if step.fusion_weights is not None:
                ids = F.pad(ids, (0, 1), value=-1)
        return TokenState(step.tokens, state.num_shared, pos, ids, step.key_mask)

    def extra_repr(self) -> str:
        parts = [f"keep_rate={self.keep_rate}", f"budget={self.budget!r}"]
        if self.num_original is not None:
            parts.append(f"num_original={self.num_original}")
        if self.fuse_pruned:
            parts.append("fuse_pruned=True")
        return ", ".join(parts)

