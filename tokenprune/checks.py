"""Argument checks for code built on tokenprune (the model zoo uses them too).

Every check raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind, wrong
value) with a message that names the argument and says what was expected, and returns the
checked value where that is useful::

    from tokenprune.checks import check_floating, check_keep_rate

    x = check_floating("x", x, ndim=(3, 4))          # a floating-point tensor of rank 3 or 4
    rate = check_keep_rate("keep_rate", rate)         # a float in (0, 1]

Checks that read tensor *values* (:func:`check_finite`, :func:`check_values`) are skipped while
tracing or compiling, where they would break the graph (:func:`value_checks_enabled`); on an
accelerator they are asynchronous device assertions. Shape, dtype and device checks always run.
"""

from ._validation import (
    check_bool,
    check_bool_mask,
    check_finite,
    check_float,
    check_floating,
    check_index,
    check_int,
    check_keep_rate,
    check_matches_parameters,
    check_number,
    check_same_device,
    check_same_dtype,
    check_tensor,
    check_tensor_sequence,
    check_values,
    static_shape,
    value_checks_enabled,
)

__all__ = [
    "check_bool",
    "check_bool_mask",
    "check_finite",
    "check_float",
    "check_floating",
    "check_index",
    "check_int",
    "check_keep_rate",
    "check_matches_parameters",
    "check_number",
    "check_same_device",
    "check_same_dtype",
    "check_tensor",
    "check_tensor_sequence",
    "check_values",
    "static_shape",
    "value_checks_enabled",
]
