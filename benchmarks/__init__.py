"""Measurements of the library and the zoo, run from a checkout: ``python -m benchmarks.<name>``.

The zoo installs as ``tokenprune_models`` (the folder ``models/``; ``make install`` or ``pip
install -e .``). In a checkout where it is not installed (e.g. a bare machine lent for a GPU
check), the folder is made importable under that name here, so the benchmarks run all the same.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_ZOO = Path(__file__).resolve().parent.parent / "models"

if importlib.util.find_spec("tokenprune_models") is None and (_ZOO / "__init__.py").is_file():
    _spec = importlib.util.spec_from_file_location(
        "tokenprune_models", _ZOO / "__init__.py", submodule_search_locations=[str(_ZOO)]
    )
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["tokenprune_models"] = _module
    _spec.loader.exec_module(_module)
