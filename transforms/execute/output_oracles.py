"""Whether a candidate's output on an EvalPlus input matches the benchmark's own solution's, as EvalPlus decides it.

Pure, run in the trusted process on plain data that came back from the sandbox. EvalPlus
(``evalplus/eval/__init__.py``, ``unsafe_execute``) compares with ``==``; when that fails and a tolerance applies
(the problem's ``atol``, or 1e-6 whenever the expected output is a float or a non-empty list or tuple of floats), the
output must have the expected type and length and be ``np.allclose`` to it (``rtol=1e-7``). A few tasks have a
special oracle instead (``evalplus/eval/_special_oracle.py``): HumanEval/32 ``find_zero`` is right when the
polynomial is ~0 at the returned root (any root, not the reference's); some MBPP+ tasks compare as sets, or only
whether the output is None, or accept what the reference's statement leaves open.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

FLOAT_ATOL = 1e-6  # EvalPlus: "enforce atol for float comparison" when the problem gives none
RTOL = 1e-7  # np.testing.assert_allclose's default, which EvalPlus sets explicitly

# EvalPlus's MBPP+ tasks by entry point, with the task each stands for.
MBPP_SET_EQUAL = frozenset({
    "similar_elements",  # Mbpp/2
    "find_char_long",  # Mbpp/7
    "common_in_nested_lists",  # Mbpp/111
    "extract_singly",  # Mbpp/140
    "larg_nnum",  # Mbpp/232
    "intersection_array",  # Mbpp/249
    "find_dissimilar",  # Mbpp/579
    "Diff",  # Mbpp/769
})
MBPP_NOT_NONE = frozenset({"check_str", "text_match_three", "text_starta_endb"})  # outputs are match objects


def _poly(xs: Sequence[float], x: float) -> float:
    """HumanEval/32's polynomial, as its prompt and EvalPlus's oracle define it."""
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def _surface_area(base_edge: float, height: float) -> int:
    """Mbpp/581 with the height read as the pyramid's (EvalPlus's second accepted reading)."""
    slant_height = math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 4 * (base_edge * slant_height) / 2)


def _digit_distance(num1: int, num2: int) -> int:
    """Mbpp/558 with the shorter number padded with zeros (EvalPlus's second accepted reading)."""
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width)))


def is_floats(value: Any) -> bool:
    """A float, or a non-empty list or tuple of floats only (EvalPlus's ``is_floats``)."""
    if isinstance(value, float):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, float) for v in value)


def allclose(actual: Any, expected: Any, atol: float) -> bool:
    """``np.allclose(actual, expected, rtol=1e-7, atol=atol)``; False where numpy cannot compare them."""
    import numpy as np

    try:
        return bool(np.allclose(actual, expected, rtol=RTOL, atol=atol))
    except Exception:  # ragged lists, strings, ints past float range: EvalPlus's assertion fails there too
        return False


def _equal(expected: Any, actual: Any) -> bool:
    try:
        return bool(expected == actual)
    except Exception:  # a comparison EvalPlus would also count as a mismatch
        return False


def outputs_match(expected: Any, actual: Any, atol: float = 0.0, exact: bool | None = None) -> bool:
    """EvalPlus's comparison of one output (``exact``: a special oracle's verdict instead of ``==``)."""
    exact = _equal(expected, actual) if exact is None else exact
    if not atol and is_floats(expected):
        atol = FLOAT_ATOL
    if exact or not atol:
        return exact
    if type(actual) is not type(expected):
        return False
    if isinstance(expected, (list, tuple)) and len(actual) != len(expected):
        return False
    return allclose(actual, expected, atol)


def plus_output_ok(task_id: str, entry_point: str, args: Sequence[Any], expected: Any, actual: Any,
                   atol: float) -> bool:
    """One EvalPlus input's verdict: the special oracle of the task when it has one, else ``outputs_match``."""
    family = task_id.split("/", 1)[0]
    try:
        if family == "HumanEval" and entry_point == "find_zero":
            return abs(_poly(*args, actual)) <= atol
        if family != "Mbpp":
            return outputs_match(expected, actual, atol)
        exact = _equal(expected, actual)
        if entry_point == "are_equivalent":  # Mbpp/164: EvalPlus accepts any output (the statement is ambiguous)
            exact = True
        elif entry_point == "sum_div":  # Mbpp/295
            exact = exact or actual == 0
        elif entry_point == "surface_Area":  # Mbpp/581
            exact = exact or abs(actual - _surface_area(*args)) <= atol
        elif entry_point == "digit_distance_nums":  # Mbpp/558
            exact = exact or actual == _digit_distance(*args)
        elif entry_point in MBPP_SET_EQUAL:
            exact = set(actual) == set(expected)
        elif entry_point in MBPP_NOT_NONE:  # EvalPlus stores the reference's output as whether it was None
            expected = expected if isinstance(expected, bool) else expected is not None
            exact = actual == expected if isinstance(actual, bool) else expected == (actual is not None)
        return outputs_match(expected, actual, atol, exact=bool(exact))
    except Exception:  # an oracle that cannot apply to this output (wrong type, overflow): a mismatch, as in EvalPlus
        return False
