"""MBPP, MBPP+ and HumanEval+ problem files in their public formats: small fixtures written here, the canonical
solutions pass the harness, and a solution that passes the original tests but not an EvalPlus input fails."""
from __future__ import annotations

import json

import pytest

from beam_pipelines.evaluate import run
from transforms.execute import problems
from transforms.execute.isolation import IsolationLimits
from transforms.execute.verdicts import run_function_tests

LIMITS = IsolationLimits(timeout_s=10)

HUMANEVAL_PLUS = [
    {"task_id": "HumanEval/900", "entry_point": "add",
     "prompt": 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n',
     "canonical_solution": "    return a + b\n",
     "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n",
     "contract": "", "base_input": [[1, 2], [0, 0]], "plus_input": [[-3, 10], [10 ** 9, 7]], "atol": 0},
    {"task_id": "HumanEval/901", "entry_point": "mean",
     "prompt": 'from typing import List\n\n\ndef mean(xs: List[float]) -> float:\n    """The mean of xs."""\n',
     "canonical_solution": "    return sum(xs) / len(xs)\n",
     "test": "def check(candidate):\n    assert abs(candidate([1.0, 2.0]) - 1.5) < 1e-9\n",
     "contract": "", "base_input": [[[1.0, 2.0]]], "plus_input": [[[0.1, 0.2, 0.3]]], "atol": 1e-6},
]
MBPP = [
    {"task_id": 2, "text": "Not in the test split.", "code": "def f(x):\n    return x",
     "test_list": ["assert f(1) == 1"], "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given character.",
     "code": "def remove_Occ(s, ch):\n    i = s.find(ch)\n    if i >= 0:\n        s = s[:i] + s[i + 1:]\n"
             "    j = s.rfind(ch)\n    if j >= 0:\n        s = s[:j] + s[j + 1:]\n    return s",
     "test_list": ['assert remove_Occ("hello","l") == "heo"', 'assert remove_Occ("abcda","a") == "bcd"',
                   'assert remove_Occ("PHP","P") == "H"'],
     "test_setup_code": "", "challenge_test_list": []},
]
MBPP_PLUS = [
    {"task_id": "Mbpp/12", "entry_point": "square_nums",
     "prompt": '"""\nWrite a function to find squares of individual elements in a list.\n'
               'assert square_nums([1, 2, 3]) == [1, 4, 9]\n"""\n',
     "canonical_solution": "def square_nums(nums):\n    return [n ** 2 for n in nums]\n",
     "assertion": "assert square_nums([1, 2, 3]) == [1, 4, 9]",
     "base_input": [[[1, 2, 3]]], "plus_input": [[[-4, 0, 11]], [[]]], "atol": 0},
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def files(tmp_path):
    return {"humaneval_plus": _write(tmp_path / "HumanEvalPlus.jsonl", HUMANEVAL_PLUS),
            "mbpp": _write(tmp_path / "mbpp.jsonl", MBPP), "mbpp_plus": _write(tmp_path / "MbppPlus.jsonl", MBPP_PLUS)}


def test_the_public_formats_load(files):
    he = problems.load_benchmark("humaneval_plus", files["humaneval_plus"])
    assert [p.task_id for p in he] == ["HumanEval/900", "HumanEval/901"] and len(he[0].inputs) == 4
    assert he[1].atol == 1e-6
    mbpp = problems.load_benchmark("mbpp", files["mbpp"])
    assert [p.task_id for p in mbpp] == ["Mbpp/11"] and mbpp[0].entry_point == "remove_Occ"
    assert 'assert remove_Occ("hello","l") == "heo"' in mbpp[0].prompt
    plus = problems.load_benchmark("mbpp_plus", files["mbpp_plus"])
    assert plus[0].inputs == (([1, 2, 3],), ([-4, 0, 11],), ([],))
    with pytest.raises(ValueError, match="does not ship"):
        problems.load_benchmark("mbpp_plus", None)


@pytest.mark.parametrize("name", ["humaneval_plus", "mbpp", "mbpp_plus"])
def test_canonical_solutions_pass_through_the_job(name, files, tmp_path):
    summary = run([f"--benchmark={name}={files[name]}", "--reference-solutions", "--quiet",
                   f"--output={tmp_path / name}"])
    assert summary["benchmark"] == name and summary["balanced"] and summary["pass@1"] == 100.0


def test_a_solution_that_only_passes_the_original_tests_fails_on_a_plus_input(files):
    add = problems.load_benchmark("humaneval_plus", files["humaneval_plus"])[0]
    sloppy = add.prompt + "    return a + b if a >= 0 else 0\n"  # right on the original tests, wrong on (-3, 10)
    verdict = run_function_tests(add, sloppy, LIMITS)
    assert verdict.status == "failed" and verdict.reason.startswith("plus input #2")
    close = problems.load_benchmark("humaneval_plus", files["humaneval_plus"])[1]
    rounded = close.prompt + "    return round(sum(xs) / len(xs), 9)\n"  # within atol: passes
    assert run_function_tests(close, rounded, LIMITS).passed
    squares = problems.load_benchmark("mbpp_plus", files["mbpp_plus"])[0]
    positive_only = "def square_nums(nums):\n    return [n * abs(n) for n in nums]\n"
    verdict = run_function_tests(squares, positive_only, LIMITS)
    assert verdict.status == "failed" and "plus input #1" in verdict.reason


def test_an_mbpp_plus_task_with_nothing_to_check_a_solution_is_refused(tmp_path):
    # Without an assertion and without inputs the check would be empty, so any solution that loads would pass.
    bare = {**MBPP_PLUS[0], "assertion": "  ", "base_input": [], "plus_input": []}
    with pytest.raises(ValueError, match="neither a test nor an input"):
        problems.load_benchmark("mbpp_plus", _write(tmp_path / "MbppPlus.jsonl", [bare]))
    with pytest.raises(ValueError, match="at least one test line"):
        problems.mbpp_check(["", "  \n"], setup="import math")


def test_an_mbpp_plus_task_with_inputs_only_is_checked_by_its_inputs(tmp_path):
    inputs_only = {**MBPP_PLUS[0], "assertion": ""}
    [squares] = problems.load_benchmark("mbpp_plus", _write(tmp_path / "MbppPlus.jsonl", [inputs_only]))
    assert run_function_tests(squares, squares.canonical_solution, LIMITS).passed
    wrong = "def square_nums(nums):\n    return [n * abs(n) for n in nums]\n"
    verdict = run_function_tests(squares, wrong, LIMITS)
    assert verdict.status == "failed" and "plus input #1" in verdict.reason


def test_a_file_in_another_format_names_the_missing_field(tmp_path):
    wrong = [{"task_id": "Mbpp/12", "text": "no prompt or entry point", "assertion": "assert f(1) == 1"}]
    with pytest.raises(ValueError, match=r"mbpp_plus file .*MbppPlus.jsonl: a row has no 'prompt' field"):
        problems.load_benchmark("mbpp_plus", _write(tmp_path / "MbppPlus.jsonl", wrong))
