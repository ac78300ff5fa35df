"""Verdicts as EvalPlus and the official MBPP harness give them. Expected verdicts are written by hand from
EvalPlus's rules (``evalplus/eval/__init__.py``, ``_special_oracle.py``): float outputs within 1e-6 (rtol 1e-7),
HumanEval/32 judged by the polynomial at the returned root, MBPP+ set comparisons and is-None checks; MBPP tests
that use a module only the solution imports; the function an MBPP test wraps in a builtin."""
from __future__ import annotations

import json
import re

import pytest

from transforms.decontam.benchmarks import called_function
from transforms.execute import problems
from transforms.execute.isolation import IsolationLimits
from transforms.execute.output_oracles import outputs_match, plus_output_ok
from transforms.execute.verdicts import OPAQUE, check_benchmark_code, run_function_tests

LIMITS = IsolationLimits(timeout_s=10)


@pytest.mark.parametrize("expected, actual, atol, verdict", [
    (0.1 + 0.2, 0.3, 0.0, True),  # a float expected: 1e-6 applies though the file's atol is 0
    (0.3, 0.31, 0.0, False),
    ([0.1 + 0.2, 1.0], [0.3, 1.0], 0.0, True),  # a list of floats too
    ([0.1 + 0.2, 1.0], (0.3, 1.0), 0.0, False),  # but a tuple is not a list
    ([0.1 + 0.2, 1.0], [0.3], 0.0, False),  # nor a shorter list
    (1e10 / 3, 1e10 / 3 + 1.4e-6, 1e-6, True),  # rtol 1e-7 of 3.3e9 allows ~333
    (1e10 / 3, 1e10 / 3 + 1000.0, 1e-6, False),
    (3, 3.0000001, 0.0, False),  # an int expected: exact
    ([1, 0.5], [1, 0.5000001], 0.0, False),  # not all floats: exact
    ([0.5, "x"], [0.5000001, "x"], 1e-6, False),  # numpy cannot compare strings within a tolerance
    ("abc", "abc", 0.0, True),
    (float("nan"), float("nan"), 0.0, False),  # == and allclose both say no
])
def test_outputs_compare_as_evalplus_compares_them(expected, actual, atol, verdict):
    assert outputs_match(expected, actual, atol) is verdict


def test_the_special_oracles():
    # HumanEval/32: x^3 - 2x^2 - x + 2 = (x - 2)(x - 1)(x + 1); any root passes, whatever root the reference found
    xs = ([2, -1, -2, 1],)
    assert plus_output_ok("HumanEval/32", "find_zero", xs, -1.0, 2.0, 1e-6)
    assert plus_output_ok("HumanEval/32", "find_zero", xs, -1.0, 1.0, 1e-6)
    assert not plus_output_ok("HumanEval/32", "find_zero", xs, -1.0, 1.5, 1e-6)  # p(1.5) = -0.625
    assert not plus_output_ok("HumanEval/32", "find_zero", xs, -1.0, "2", 1e-6)
    # MBPP+ tasks compared as sets
    assert plus_output_ok("Mbpp/2", "similar_elements", ((3, 4, 5), (5, 4)), (4, 5), (5, 4), 0.0)
    assert not plus_output_ok("Mbpp/2", "similar_elements", ((3, 4, 5), (5, 4)), (4, 5), (4,), 0.0)
    # ... and by whether the output is None (the reference returns a match object)
    match = re.search("ab{3}", "xabbb")
    assert plus_output_ok("Mbpp/787", "text_match_three", ("xabbb",), match, OPAQUE, 0.0)
    assert not plus_output_ok("Mbpp/787", "text_match_three", ("xabbb",), match, None, 0.0)
    assert plus_output_ok("Mbpp/787", "text_match_three", ("ac",), None, None, 0.0)
    assert plus_output_ok("Mbpp/295", "sum_div", (8,), 7, 0, 0.0)  # EvalPlus also accepts 0
    assert not plus_output_ok("Mbpp/295", "sum_div", (8,), 7, 6, 0.0)
    # elsewhere the same names are ordinary functions
    assert not plus_output_ok("Other/2", "similar_elements", ((3, 4, 5), (5, 4)), (4, 5), (5, 4), 0.0)


def test_an_mbpp_test_that_wraps_the_call_in_a_builtin_names_the_function_under_test():
    assert called_function(["assert abs(area(1) - 3.14159) < 1e-3"]) == "area"
    assert called_function(["assert sorted(su([3, 1])) == [1, 3]"]) == "su"
    assert called_function(["assert round(f(x=g(1)), 2) == 1.0"], defined={"f"}) == "f"
    assert called_function(["assert round(f(x=g(1)), 2) == 1.0"], defined={"g"}) == "g"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_mbpp_problems_get_their_function_and_the_modules_their_tests_use(tmp_path):
    rows = [
        {"task_id": 11, "text": "Area of a circle.", "test_setup_code": "", "challenge_test_list": [],
         "code": "import math\ndef area(r):\n    return math.pi * r * r",
         "test_list": ["assert abs(area(1) - 3.14159) < 1e-3", "assert math.isclose(area(2), 12.566, rel_tol=1e-3)"]},
    ]
    (problem,) = problems.load_benchmark("mbpp", _write(tmp_path / "mbpp.jsonl", rows))
    assert problem.entry_point == "area"
    own_import = "import math\ndef area(r):\n    return math.pi * r ** 2\n"
    assert run_function_tests(problem, own_import, LIMITS).passed
    wrong = "def area(r):\n    return 3 * r * r\n"
    assert run_function_tests(problem, wrong, LIMITS).status == "failed"


def test_mbpp_plus_test_imports_and_match_object_tasks(tmp_path):
    rows = [
        {"task_id": "Mbpp/3", "entry_point": "is_not_prime", "atol": 0,
         "prompt": '"""\nIdentify non-prime numbers.\nassert is_not_prime(2) == False\n"""\n',
         "canonical_solution": "def is_not_prime(n):\n    return n < 2 or any(n % d == 0 for d in range(2, n))\n",
         "test_imports": ["import math"], "assertion": "assert math.isclose(float(is_not_prime(10)), 1.0)",
         "base_input": [[2], [10]], "plus_input": [[35]]},
        {"task_id": "Mbpp/787", "entry_point": "text_match_three", "atol": 0,
         "prompt": '"""\nMatch an a followed by three b.\nassert not text_match_three("ac")\n"""\n',
         "canonical_solution": "import re\ndef text_match_three(text):\n    return re.search('ab{3}?', text)\n",
         "test_imports": [], "assertion": 'assert not text_match_three("ac")',
         "base_input": [["ac"], ["abbbba"]], "plus_input": [["xabbbb"]]},
    ]
    prime, match = problems.load_benchmark("mbpp_plus", _write(tmp_path / "MbppPlus.jsonl", rows))
    assert run_function_tests(prime, prime.canonical_solution, LIMITS).passed
    assert run_function_tests(match, match.canonical_solution, LIMITS).passed  # a re.Match cannot cross: opaque
    never = "def text_match_three(text):\n    return None\n"
    verdict = run_function_tests(match, never, LIMITS)
    assert verdict.status == "failed" and "plus input #1" in verdict.reason
    found = "def text_match_three(text):\n    return object()\n"  # not plain data: passes only where None is wrong
    assert run_function_tests(match, found, LIMITS).status == "failed"  # 'ac' must give None


def test_a_body_that_nests_a_function_of_the_entry_points_name_is_still_a_body():
    problem = problems.Problem("T/0", 'def add(a, b):\n    """Sum."""\n', "add",
                               "def check(candidate):\n    assert candidate(1, 2) == 3\n")
    body = "    def add(x, y):\n        return x + y\n    return add(a, b)\n"
    assert problems.completion_code(problem, body) == problem.prompt + body
    whole = "def add(a, b):\n    return a + b\n"
    assert problems.completion_code(problem, whole) == whole


def test_a_benchmark_whose_test_does_not_run_is_refused_before_any_sample():
    good = problems.Problem("T/0", "def one():\n", "one", "def check(candidate):\n    assert candidate() == 1\n")
    check_benchmark_code([good])
    with pytest.raises(ValueError, match="T/1: the test code defines no check"):
        check_benchmark_code([good, problems.Problem("T/1", "def one():\n", "one", "assert True\n")])


def test_each_evalplus_input_has_its_own_time_limit(tmp_path):
    """EvalPlus gives each input max(1 s, 4x the reference's time): a candidate that takes 2.5 s on one cheap input
    fails, though the whole run stays within its 10 s (it passed before)."""
    rows = [{"task_id": "HumanEval/902", "entry_point": "inc", "atol": 0, "contract": "",
             "prompt": 'def inc(x: int) -> int:\n    """x + 1."""\n', "canonical_solution": "    return x + 1\n",
             "test": "def check(candidate):\n    assert candidate(1) == 2\n",
             "base_input": [[1]], "plus_input": [[5], [7]]}]
    (problem,) = problems.load_benchmark("humaneval_plus", _write(tmp_path / "HumanEvalPlus.jsonl", rows))
    slow_on_5 = problem.prompt + "    import time\n    if x == 5:\n        time.sleep(2.5)\n    return x + 1\n"
    verdict = run_function_tests(problem, slow_on_5, LIMITS)
    assert verdict.status == "timeout" and verdict.reason.startswith("timeout: plus input #1"), verdict
    assert verdict.duration_s < 6  # stopped at the input's limit, not the run's
    quick = problem.prompt + "    import time\n    time.sleep(0.3)\n    return x + 1\n"  # within 1 s per input
    assert run_function_tests(problem, quick, LIMITS).passed
