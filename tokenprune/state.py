"""The token state a pruned encoder carries from layer to layer.

A pruning step must select the same slots of every tensor aligned with the tokens: their
positional embeddings, the original index of every token and the key mask. :class:`TokenState`
holds them together and :meth:`tokenprune.GroupTokenPruner.prune` prunes them together, so a
model never applies a selection by hand (as ToMe's merge functions carry their unmerge).

Layout: the first ``num_shared`` slots of every group are shared (keypoint or class tokens),
the rest are private (visual tokens). Positions and original ids describe the private slots
only; shared slots have neither.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch.nn.functional as F
from torch import Tensor

from .checks import check_bool_mask, check_floating, check_index, check_int

__all__ = ["TokenState"]


@dataclass(frozen=True)
class TokenState:
    """Tokens and the tensors aligned with them.

    Attributes:
        tokens: ``[B, G, N, D]`` grouped, or ``[B, N, D]`` (one group).
        num_shared: ``S``, the leading shared slots of every group.
        pos: ``[B|1, G|1, N - S, D]`` (``[B|1, N - S, D]``) positional embeddings of the
            private slots, added before every layer (:meth:`positioned`); None for none.
        ids: ``[B, G, N - S]`` (``[B, N - S]``) int64 original index of every private token
            (``-1`` for tokens that do not come from the input, such as a fused token); None
            when not tracked.
        key_mask: ``[B, G, N]`` (``[B, N]``) bool, False for padding slots; None for none.

    Raises:
        TypeError: ``tokens`` or ``pos`` is not a floating-point tensor, ``ids`` not an integer
            tensor, ``key_mask`` not a bool tensor, ``num_shared`` not an int.
        ValueError: ``num_shared`` is outside ``[0, N]``, or ``pos``, ``ids`` or ``key_mask``
            do not cover the slots they describe.
    """

    tokens: Tensor
    num_shared: int = 0
    pos: Tensor | None = None
    ids: Tensor | None = None
    key_mask: Tensor | None = None

    def __post_init__(self) -> None:
        tokens = check_floating("tokens", self.tokens, ndim=(3, 4))
        num_slots = tokens.shape[-2]
        check_int("num_shared", self.num_shared, low=0, high=num_slots)
        private = num_slots - self.num_shared
        lead = tuple(tokens.shape[:-2])
        if self.pos is not None:
            pos = check_floating("pos", self.pos, ndim=tokens.ndim)
            if pos.shape[-2:] != (private, tokens.shape[-1]):
                raise ValueError(
                    f"pos must cover the {private} private slots: [..., {private}, "
                    f"{tokens.shape[-1]}], got shape {tuple(pos.shape)}"
                )
        if self.ids is not None:
            ids = check_index("ids", self.ids)
            if tuple(ids.shape) != (*lead, private):
                raise ValueError(
                    f"ids must have shape {(*lead, private)} (one per private slot), got "
                    f"{tuple(ids.shape)}"
                )
        if self.key_mask is not None:
            check_bool_mask("key_mask", self.key_mask, (*lead, num_slots))

    @property
    def num_private(self) -> int:
        """``N - S``, the private slots per group."""
        return self.tokens.shape[-2] - self.num_shared

    def positioned(self) -> Tensor:
        """The tokens with the positional embeddings added to their private slots (the shared
        slots unchanged): ``[B, (G,) N, D]``."""
        if self.pos is None:
            return self.tokens
        return self.tokens + F.pad(self.pos, (0, 0, self.num_shared, 0))

    def with_tokens(self, tokens: Tensor, num_shared: int | None = None) -> TokenState:
        """The same state with new tokens of the same slots (a layer's output), or with the
        shared slots replaced (``num_shared`` given: the private slots keep their place at the
        end, so positions, ids and the private part of a mask still apply).

        Raises:
            ValueError: ``tokens`` has another number of private slots, or a key mask is set
                and the slot count changes.
        """
        shared = self.num_shared if num_shared is None else num_shared
        if tokens.shape[-2] - shared != self.num_private:
            raise ValueError(
                f"tokens must keep the {self.num_private} private slots of the state, got "
                f"shape {tuple(tokens.shape)} with num_shared={shared}"
            )
        if self.key_mask is not None and tokens.shape[-2] != self.tokens.shape[-2]:
            raise ValueError("cannot change the shared slots of a state with a key mask")
        return replace(self, tokens=tokens, num_shared=shared)
