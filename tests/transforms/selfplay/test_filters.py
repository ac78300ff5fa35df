"""Each filter with one puzzle it must reject and one it must keep. Programs run in this process
(``run_in_process``) and only on puzzles written here."""
import pytest

from transforms.selfplay import filters as F

KEEP_INT = "def f(x: int):\n    return x * x == 12321"  # 111, outside the small ints
KEEP_STR = "def f(s: str, n=3):\n    return s.count('z') == n and len(s) == n"  # "zzz", not a candidate
KEEP_LIST = "def f(li: List[List[str]]):\n    return len(li) == 3 and all(len(x) == 3 for x in li)"


def outcome(texts, run, rate=1.0, **kw):
    return [o.reason for o in F.filter_puzzles(texts, run, trivial_reject_rate=rate, **kw)]


@pytest.mark.parametrize("reject, keep, reason", [
    ("def g(x: int):\n    return x * x == 12321", KEEP_INT, "missing_def_f"),
    ("def f(x: int):\n    assert x * x == 12321", KEEP_INT, "missing_return"),
    ("def f(s: str):\n    return open(s).read() == 'secret'", KEEP_STR, "unsafe_code"),
    ("def f(x: int):\n    import os\n    return os.getpid() == x", "def f(x: int):\n    import math\n"
     "    return math.isqrt(x) == 12 and x % 7 == 3", "unsafe_code"),
    ("def f(x: int):\n    return x == 3 and __name__ == '__main__'", KEEP_INT, "reaches_interpreter"),
    ("def f(x: int):\n  return x * x == 12321", KEEP_INT, "return_true_failed"),  # 2-space body
    ("def f(x: int, a=1 // 0):\n    return x == a", "def f(x: int, a=1 // 1 + 200):\n    return x == a",
     "return_true_failed"),
    ("def f(x):\n    return x * x == 12321", KEEP_INT, "answer_annotation_invalid"),
    ("def f(x: Set[int]):\n    return len(x) == 3 and 700 in x", KEEP_LIST, "answer_annotation_invalid"),
    # Two required parameters fail already in step 2: f(None) lacks an argument.
    ("def f(x: int, y: int):\n    return x * y == 12321 and x > y", "def f(x: int, y=1):\n"
     "    return x * y == 12321", "return_true_failed"),
    ("def f(x: int, *rest):\n    return x * x == 12321", KEEP_INT, "bad_signature"),
    ("def f(x: int, *, k=2):\n    return x ** k == 12321", KEEP_INT, "bad_signature"),
    ("def f(x: int, **options):\n    return x * x == 12321", KEEP_INT, "bad_signature"),
    ("def f(x: int, n=12321):\n    return n % 2 == 1", KEEP_INT, "answer_unused"),
    ("def f(b: bool):\n    return b == (12321 % 7 == 0)", KEEP_INT, "bool_answer"),
    ("def f(d: dict):\n    return d.get('k') == 12321", KEEP_LIST, "unsupported_answer_type"),
    ("def f(x: 'int'):\n    return x * x == 12321", "def f(x: 'List[int]'):\n    return sum(x) == 12321",
     "unsupported_answer_type"),
    ("def f(x: int):\n    return x * 0 == 0", KEEP_INT, "trivial_answer"),
    ("def f(s: str):\n    return s[::-1] == 'tac'", KEEP_STR, "trivial_answer"),
    ("def f(li: List[int]):\n    return sum(li) == 5 and len(li) == 2", "def f(li: List[int]):\n"
     "    return sum(li) == 7 and len(li) == 2", "trivial_answer"),  # [2, 3] is a candidate, 7 = 3 + 4 is not
    ("def f(x: float):\n    return abs(x * 4 - 2) < 1e-9", "def f(x: float):\n    return abs(x * 4 - 3) < 1e-9",
     "trivial_answer"),
    ("def f(x: int):\n    return undefined + x == 3", KEEP_INT, "trivial_answer"),  # a NameError counts
])
def test_each_filter_rejects_its_puzzle_and_keeps_a_good_one(run_in_process, reject, keep, reason):
    assert outcome([reject], run_in_process) == [reason]
    assert outcome([keep], run_in_process) == [None]


def test_the_project_additions_duplicate_and_too_long(run_in_process):
    assert outcome([KEEP_INT, KEEP_STR, KEEP_INT], run_in_process) == [None, None, "duplicate_puzzle"]
    assert outcome([KEEP_INT], run_in_process, known=[KEEP_INT]) == ["duplicate_puzzle"]
    assert outcome([KEEP_LIST, KEEP_INT], run_in_process, max_chars=60) == ["too_long", None]


def test_the_first_failing_filter_names_the_rejection(run_in_process):
    assert outcome(["def f(b: bool, *more):\n    return b"], run_in_process) == ["bad_signature"]
    assert outcome(["def f(x):\n  return x"], run_in_process) == ["return_true_failed"]
    # A one-line puzzle: "return True" lands after the header line and cannot be indented there.
    assert outcome(["def f(x: int): return x * 0 == 0"], run_in_process) == ["return_true_failed"]


def test_the_trivial_test_catches_x_times_zero_even_on_one_line(run_in_process):
    puzzle = "def f(x: int): return x * 0 == 0"
    verdict = F.check_signature(puzzle, trivial_reject_rate=1.0)
    assert verdict.reason is None and verdict.tested and verdict.answer_type == "int"
    programs = F.trivial_programs(puzzle, verdict.candidates)
    assert F.read_trivial_programs([run_in_process(p) for p in programs]) == "trivial_answer"


def test_untested_puzzles_skip_the_answer_checks_as_in_the_reference(run_in_process):
    # With probability 1 - trivial_reject_rate the reference returns no tests: the puzzle is kept even if its
    # answer is unused, bool, of an unsupported type or trivial. The signature checks still apply.
    for text in ["def f(x: int, n=3):\n    return n == 3", "def f(b: bool):\n    return b",
                 "def f(x: int):\n    return x * 0 == 0"]:
        assert outcome([text], run_in_process, rate=0.0) == [None]
    assert outcome(["def f(x: int, *ys):\n    return x in ys"], run_in_process, rate=0.0) == ["bad_signature"]


def test_the_draw_is_seeded_per_puzzle_and_hits_the_rate():
    texts = [f"def f(x: int):\n    return x == {i}" for i in range(4000)]
    tested = [F.check_signature(t, trivial_reject_rate=0.95, seed=3).tested for t in texts]
    assert tested == [F.check_signature(t, trivial_reject_rate=0.95, seed=3).tested for t in texts]
    assert 0.93 < sum(tested) / len(tested) < 0.97
    other_seed = [F.check_signature(t, trivial_reject_rate=0.95, seed=4).tested for t in texts]
    assert other_seed != tested


def test_candidate_lists_are_the_references():
    assert F.trivial_candidates("int") == list(range(-10, 101))
    assert F.trivial_candidates("str") == ["cat", "dog", "aa", "ab", "foo", "bar", "baz", ""]
    assert F.trivial_candidates("float") == [-100.0, -10.0, -2.0, -1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0, 2.0, 10.0,
                                             100.0]
    ints = F.trivial_candidates("List[int]")  # lengths 0, 1, 2 over -3..3
    assert len(ints) == 1 + 7 + 49 and ints[0] == [] and [-3, 3] in ints and [4] not in ints
    assert len(F.trivial_candidates("List[str]")) == 1 + 5 + 25
    assert F.trivial_candidates("List[bool]") == [[], [True], [False], [True, True], [True, False],
                                                  [False, True], [False, False]]
    assert [-0.1, 2.0] in F.trivial_candidates("List[float]")
    nested = F.trivial_candidates("List[List[int]]")  # each list wrapped once more, then [] added
    assert len(nested) == 57 + 1 and nested[0] == [[]] and nested[-1] == [] and [[1, 2]] in nested
    with pytest.raises(ValueError):
        F.trivial_candidates("dict")


def test_step_two_and_four_programs_are_the_references_text():
    puzzle = "def f(s: str):\n    return s == 'x'"
    assert F.return_true_program(puzzle, preamble=False) == (
        "def f(s: str):\n    return True\n    return s == 'x'\n\nassert f(None)")
    assert F.return_true_program(puzzle).startswith("from typing import List, Set, Tuple, Dict\n\n")
    assert F.trivial_programs(puzzle, ["cat", ""], preamble=False) == [
        'def f(s: str):\n    return s == \'x\'\n\ntry:\n    assert f("cat")\nexcept NameError:\n    pass',
        'def f(s: str):\n    return s == \'x\'\n\ntry:\n    assert f("")\nexcept NameError:\n    pass']


def test_per_candidate_outcomes_read_like_the_references_assert():
    assert F.read_trivial_outcomes(["falsy", "error", "timeout"]) is None
    assert F.read_trivial_outcomes(["falsy", "truthy"]) == "trivial_answer"  # assert passes on 5, not only True
    assert F.read_trivial_outcomes(["name_error"]) == "trivial_answer"
    assert F.read_trivial_outcomes([]) is None
    with pytest.raises(ValueError):
        F.read_trivial_outcomes(["passed"])


@pytest.mark.parametrize("code, unsafe", [
    ("x = 1", False),
    ("from collections import Counter", False),
    ("import math, re", False),
    ("import numpy", True),
    ("import math as m", True),  # the judge compares "math as m" with its list
    ("s = 'important'", True),  # "import" on a line that is not an import statement
    ("y = x.__class__", True),
    ("z = __builtins__", True),
])
def test_the_judges_static_refusal(code, unsafe):
    assert (F.unsafe_reason(code) == "unsafe_code") is unsafe


def test_every_reason_is_declared():
    assert len(set(F.REASONS)) == len(F.REASONS) == 19


@pytest.mark.parametrize("imports, names", [
    ("import math\n", {"math"}),
    ("import os.path\n\nfrom collections import Counter as C, deque\n", {"os", "C", "deque"}),
    ("import numpy as np\nfrom itertools import *\n", {"np"}),
    ("", set()),
])
def test_imported_names_are_the_names_an_import_binds(imports, names):
    from transforms.selfplay.source import imported_names

    assert imported_names(imports) == names


def test_a_default_may_use_a_name_the_puzzles_own_imports_bind():
    puzzle = "def f(x: float, a=math.pi):\n    return x > a"
    assert F.check_signature(puzzle, trivial_reject_rate=0.0).reason == "answer_annotation_invalid"
    verdict = F.check_signature(puzzle, trivial_reject_rate=0.0, imported={"math"})
    assert verdict.reason is None and verdict.answer_type == "float"
