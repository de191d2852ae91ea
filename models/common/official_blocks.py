"""Names of transformer-layer weights in the official TokenPose-family code bases.

TokenPose and GTPT wrap attention as ``Residual(PreNorm(Attention))``; PPT adds the attention
residual by hand and keeps only ``PreNorm(Attention)``. The FFN is ``Residual(PreNorm(FFN))`` in
all three. Both layouts map onto :class:`tokenprune.TransformerBlock`.
"""

from __future__ import annotations

import re

# (pattern of the name inside one official layer, our name inside TransformerBlock)
_RULES = [
    (r"0\.fn\.norm\.(weight|bias)$", r"norm1.\1"),  # TokenPose, GTPT
    (r"0\.fn\.fn\.to_qkv\.(weight|bias)$", r"attn.qkv.\1"),
    (r"0\.fn\.fn\.to_out\.0\.(weight|bias)$", r"attn.proj.\1"),
    (r"0\.norm\.(weight|bias)$", r"norm1.\1"),  # PPT
    (r"0\.fn\.to_qkv\.(weight|bias)$", r"attn.qkv.\1"),
    (r"0\.fn\.to_out\.0\.(weight|bias)$", r"attn.proj.\1"),
    (r"1\.fn\.norm\.(weight|bias)$", r"norm2.\1"),
    (r"1\.fn\.fn\.net\.0\.(weight|bias)$", r"mlp.fc1.\1"),
    (r"1\.fn\.fn\.net\.3\.(weight|bias)$", r"mlp.fc2.\1"),
]


def rename_layer_entry(rest: str) -> str:
    """Our ``TransformerBlock`` name for an entry of one official layer, e.g.
    ``"0.fn.fn.to_qkv.weight" -> "attn.qkv.weight"``.

    Raises:
        KeyError: ``rest`` is not a layer entry of either layout.
    """
    for pattern, replacement in _RULES:
        if re.match(pattern, rest):
            return re.sub(pattern, replacement, rest)
    raise KeyError(rest)
