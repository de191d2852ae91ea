"""Triton kernels for group attention and gathered attention (forward and backward).

Importing this package imports Triton and registers the ``tokenprune::*`` custom ops. Callers
normally reach the kernels through ``backend="triton"`` (or ``"auto"`` on CUDA tensors) of
:class:`tokenprune.MultiHeadGroupAttention`, :func:`tokenprune.group_attention` and
:func:`tokenprune.attention.gathered_attention`, which import this package lazily.

Without a GPU the kernels run in Triton's interpreter, which must be enabled with
``TRITON_INTERPRET=1`` before this package is first imported.

Without Triton the package still imports (so does everything that names it), and using any of
its names raises ``ModuleNotFoundError`` saying how to install it (``tokenprune[kernels]``).
"""

__all__ = ["INTERPRETED", "gathered_attention_triton", "group_attention_triton", "persistent_grid"]

try:
    import triton  # noqa: F401  (the kernels below need it)
except ModuleNotFoundError as error:
    _missing = error

    def __getattr__(name: str):
        if name in __all__:
            raise ModuleNotFoundError(
                f"tokenprune.kernels.{name} needs Triton, which is not installed ({_missing}); "
                "install it with `pip install 'tokenprune[kernels]'`",
                name="triton",
            ) from _missing
        raise AttributeError(f"module 'tokenprune.kernels' has no attribute {name!r}")

else:
    from .common import INTERPRETED, persistent_grid
    from .gathered_attention_op import gathered_attention_triton
    from .group_attention_op import group_attention_triton
