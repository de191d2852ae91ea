"""Without Triton, tokenprune.kernels imports and says how to install it when used."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_kernels_import_without_triton_and_name_the_extra_on_use():
    script = textwrap.dedent("""
        import sys
        sys.modules["triton"] = None  # as if Triton were not installed
        import tokenprune
        import tokenprune.kernels as kernels
        try:
            kernels.group_attention_triton
        except ModuleNotFoundError as error:
            assert "pip install 'tokenprune[kernels]'" in str(error), error
            assert error.name == "triton"
        else:
            raise AssertionError("no error without Triton")
        try:
            kernels.no_such_name
        except AttributeError as error:
            assert "no_such_name" in str(error)
        else:
            raise AssertionError("no AttributeError")
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
