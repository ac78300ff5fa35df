"""Verdicts on real benchmarks: HumanEval's canonical solutions pass and broken ones fail; P3's reference
solutions verify and wrong answers fail. Sandboxes run two at a time through the pool."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from transforms.execute import verdicts, wire
from transforms.execute.isolation import IsolationLimits
from transforms.execute.pool import SandboxPool
from transforms.execute.problems import Problem, completion_code, load_problems
from transforms.selfplay.puzzles import load_self_play_prompt

LIMITS = IsolationLimits(timeout_s=20, cpu_s=15)
P3_SAMPLE_EVERY = 20  # every 20th P3 instance with a reference solution: 84 of 1,661 (the evaluation job
# test verifies all 227 test puzzles that have one)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(2) as p:
        yield p


@pytest.fixture(scope="module")
def humaneval() -> list[Problem]:
    problems = load_problems()
    assert len(problems) == 164
    return problems


# ------------------------------------------------------------------------------------------------ wire

def test_wire_round_trips_plain_data_and_keeps_types_apart():
    value = [None, True, 1, 1.5, "s\udc80", (1, [2, (3,)]), {(1, "a"): {"k": [1.0]}, 2: None}, {1, 2},
             frozenset({"x"}), b"\x00\xff", 7 ** 5000, -(3 ** 9000), math.inf, -math.inf]
    back = wire.loads(wire.dumps(value))
    assert back == value
    assert [type(v) for v in back] == [type(v) for v in value]
    assert type(back[5]) is tuple and type(back[5][1]) is list and type(back[5][1][1]) is tuple
    assert type(wire.loads(wire.dumps(True))) is bool and type(wire.loads(wire.dumps(1))) is int
    assert math.isnan(wire.loads(wire.dumps(math.nan)))
    with pytest.raises(wire.WireError, match="NaN"):
        wire.loads(wire.dumps([math.nan]), allow_nan=False)


@pytest.mark.parametrize("value, message", [
    (type("I", (int,), {})(3), "not plain data"),
    (type("S", (str,), {})("x"), "not plain data"),
    (type("L", (list,), {})(), "not plain data"),
    (object(), "not plain data"),
    ((x for x in ()), "not plain data"),
    ("x" * 2000, "larger than"),
])
def test_wire_refuses_what_is_not_plain_data(value, message):
    with pytest.raises(wire.WireError, match=message):
        wire.dumps(value, max_bytes=1000)


@pytest.mark.parametrize("text, message", [
    ('{"t":"tuple","v":[1],"x":1}', "not a wire value"),
    ('{"a":1}', "not a wire value"),
    ('{"t":"set","v":[[1]]}', "unhashable"),
    ('{"t":"dict","v":[[[1],2]]}', "unhashable"),
    ('NaN', "non-standard"),
    ('[' * 100_000 + ']' * 100_000, "deep"),
    ('[' * 150 + ']' * 150, "deeper"),
    ('1' * 5000, "not JSON"),
    ('{"t":"int","v":"12g"}', "bad int"),
    ('{"t":"int","v":"-"}', "bad int"),
    ('{"t":"int","v":"--1"}', "bad int"),
    ('{"t":"set","v":[' + ",".join(str(k * (2**61 - 1)) for k in range(1, 40)) + "]}", "of one hash"),
    ('{"t":"dict","v":[' + ",".join(f"[{k * (2**61 - 1)},0]" for k in range(1, 40)) + "]}", "of one hash"),
    ('"' + "x" * 2000 + '"', "larger than"),
    ("[" + "[]," * 1_000_001 + "[]]", "containers"),
])
def test_wire_refuses_hostile_text(text, message):
    with pytest.raises(wire.WireError, match=message):
        wire.loads(text, max_bytes=1000 if len(text) < 3000 else 8 << 20)


def test_a_few_equal_hashes_still_cross():
    # -1 and -2 hash alike, as do 0, 2**61 - 1 and 0.0-equal keys of other values: plain data has a handful.
    value = {-1, -2, 0, 2**61 - 1, (1, 2), frozenset({3})}
    assert wire.loads(wire.dumps(value)) == value
    same_hash = [k * (2**61 - 1) for k in range(wire.MAX_EQUAL_HASHES)]
    assert wire.loads(wire.dumps({k: k for k in same_hash})) == {k: k for k in same_hash}


# ------------------------------------------------------------------------------------------- HumanEval

def test_humaneval_canonical_solutions_all_pass(humaneval, pool):
    results = pool.map(lambda p: verdicts.run_function_tests(p, p.prompt + p.canonical_solution, LIMITS), humaneval)
    failed = {p.task_id: v.reason for p, v in zip(humaneval, results) if not v.passed}
    assert failed == {}
    assert all(v.isolated for v in results)


def test_humaneval_solutions_returning_none_all_fail(humaneval, pool):
    results = pool.map(lambda p: verdicts.run_function_tests(p, p.prompt + "    return None\n", LIMITS), humaneval)
    passed = [p.task_id for p, v in zip(humaneval, results) if v.status != "failed"]
    assert passed == []
    assert all(v.reason for v in results)


# Wrong but plausible: each differs from a right solution in one way a model might get wrong.
PLAUSIBLY_WRONG = {
    "HumanEval/0": "    return any(abs(a - b) < threshold for a, b in zip(numbers, numbers[1:]))\n",  # unsorted
    "HumanEval/8": "    return [sum(numbers), math.prod(numbers)]\n",  # a list where the test wants a tuple
    "HumanEval/12": "    return max(strings, key=len) if strings else ''\n",  # '' where None is expected
    "HumanEval/13": "    return min(a, b)\n",
    "HumanEval/23": "    return len(string) - 1 if string else 0\n",
    "HumanEval/55": "    a, b = 0, 1\n    for _ in range(n - 1):\n        a, b = b, a + b\n    return a\n",
}


def _fails_in_process(problem: Problem, solution: str) -> bool:
    """The independent oracle: HumanEval's own way, solution and test in one namespace (trusted code here)."""
    namespace: dict = {}
    try:
        exec(solution + "\n" + problem.test + f"\ncheck({problem.entry_point})\n", namespace)
    except Exception:
        return True
    return False


def test_plausibly_wrong_solutions_fail(humaneval, pool):
    by_id = {p.task_id: p for p in humaneval}
    cases = [(by_id[t], "import math\n" + by_id[t].prompt + body) for t, body in PLAUSIBLY_WRONG.items()]
    assert all(_fails_in_process(problem, solution) for problem, solution in cases)
    results = pool.map(lambda c: verdicts.run_function_tests(c[0], c[1], LIMITS), cases)
    assert {c[0].task_id: v.status for c, v in zip(cases, results)} == {c[0].task_id: "failed" for c in cases}
    # ... and the same code path accepts a right answer written by hand (a tuple, not a list, for /8).
    right = "import math\n" + by_id["HumanEval/8"].prompt + "    return (sum(numbers), math.prod(numbers))\n"
    assert not _fails_in_process(by_id["HumanEval/8"], right)
    assert verdicts.run_function_tests(by_id["HumanEval/8"], right, LIMITS).passed


def test_collections_results_are_judged_like_their_plain_form(humaneval):
    histogram = next(p for p in humaneval if p.entry_point == "histogram")
    counter = ("import collections\n" + histogram.prompt +
               "    words = [w for w in test.split(' ') if w]\n    if not words:\n        return {}\n"
               "    counts = collections.Counter(words)\n    top = max(counts.values())\n"
               "    return collections.Counter({w: c for w, c in counts.items() if c == top})\n")
    assert verdicts.run_function_tests(histogram, counter, LIMITS).passed
    as_deque = counter.replace("return collections.Counter({w: c", "return collections.deque({w: c")
    verdict = verdicts.run_function_tests(histogram, as_deque, LIMITS)
    assert verdict.status == "failed" and "not plain data: collections.deque" in verdict.reason, verdict


def test_a_whole_generated_function_goes_through_completion_code(humaneval):
    problem = humaneval[0]
    generated = (f"def {problem.entry_point}(numbers, threshold):\n    return any(abs(a - b) < threshold "
                 "for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```\nexplanation")
    assert verdicts.run_function_tests(problem, completion_code(problem, generated), LIMITS).passed


# ------------------------------------------------------------------------------------------------- P3

@pytest.fixture(scope="module")
def p3_sample(shared_data: Path):
    path = shared_data / "p3" / "puzzles.json"
    solved = [p for p in json.loads(path.read_text(encoding="utf-8")) if p.get("sol_bodies")]
    assert len(solved) == 1661
    return solved[::P3_SAMPLE_EVERY]


def _reference(p: dict) -> str:
    return f"{p['sol_header']}\n{p['sol_bodies'][0]}"


def _mutated(answer, ans_type: str):
    """A type-correct answer near the reference one (often, not always, wrong: the test asks P3 itself)."""
    depth, base = verdicts.parse_ans_type(ans_type)
    if depth:
        return answer[:-1] if answer else [_mutated(None, ans_type[5:-1]) if depth > 1 else base()]
    if base is bool:
        return not answer
    if base is str:
        return answer + "?"
    return answer + 1 if answer is not None else base(1)


def _wrong_type(ans_type: str):
    depth, base = verdicts.parse_ans_type(ans_type)
    wrong = {bool: 1, int: True, float: 1, str: b"x"}[base]
    for _ in range(depth):
        wrong = [wrong]
    return wrong if depth else wrong


def test_p3_reference_solutions_verify_and_wrong_answers_fail(p3_sample, pool):
    assert len(p3_sample) == 84
    preamble = load_self_play_prompt().preamble
    too_large = {"ExponentialCoinMoves:0"}  # its answer is over 64 MB of plain data: refused, by design

    def run(p):
        verdict = verdicts.verify_pair(p["sat"], _reference(p), p["ans_type"], LIMITS, sat_entry="sat",
                                       sol_entry="sol")
        if not verdict.passed:
            return verdict, None, None
        wrong = _mutated(verdict.value, p["ans_type"])
        return verdict, wrong, verdicts.check_sat(p["sat"], wrong, LIMITS, entry="sat")

    results = pool.map(run, p3_sample)
    failed = {p["name"]: v.reason for p, (v, _, _) in zip(p3_sample, results) if not v.passed}
    assert set(failed) <= too_large, failed
    # Whether the mutated answer is wrong, P3's own check decides, run here on the trusted reference puzzle.
    rejected = 0
    for p, (verdict, wrong, checked) in zip(p3_sample, results):
        if checked is None or verdict.duration_s > 1.0:
            continue
        namespace: dict = {}
        exec(preamble + p["sat"], namespace)
        try:
            expected = namespace["sat"](wrong) is True
        except Exception:
            expected = False
        assert checked.passed == expected, (p["name"], wrong, checked)
        assert verdicts.check_answer_type(verdict.value, p["ans_type"])
        assert not verdicts.check_answer_type(_wrong_type(p["ans_type"]), p["ans_type"])
        rejected += not checked.passed
    assert rejected > 0.8 * len(p3_sample), rejected


def test_p3_type_check_follows_p3():
    assert verdicts.check_answer_type([[1, 2], []], "List[List[int]]")
    assert not verdicts.check_answer_type([[1, True]], "List[List[int]]")
    assert not verdicts.check_answer_type(1, "float") and verdicts.check_answer_type(1.0, "float")
    assert not verdicts.check_answer_type((1,), "List[int]")
    assert verdicts.check_answer_type(True, "bool") and not verdicts.check_answer_type(1, "bool")
    with pytest.raises(ValueError, match="unsupported"):
        verdicts.check_answer_type({}, "Dict[str, int]")


def test_sat_results_checks_many_answers_in_one_sandbox_and_survives_a_hang():
    sat = "def f(x: int):\n    if x == 3:\n        while True:\n            pass\n    return x * x == 16\n"
    limits = IsolationLimits(timeout_s=1.5)
    results = verdicts.sat_results(sat, [1, 4, 3, -4, 5], limits)
    assert [v.status for v in results] == ["failed", "passed", "timeout", "passed", "failed"]
    assert verdicts.sat_results("def f(x: int):\n    return True\n", list(range(-10, 100)), limits)[-1].passed


def test_runs_cleanly_is_the_judge_filter():
    with_return_true = "def f(x: List[int]):\n    return True\n    return sum(x) == 3\n"
    assert verdicts.runs_cleanly(with_return_true, entry="f", args=(None,), preamble="from typing import List\n").passed
    bad_signature = "def f(x: Lisst[int]):\n    return True\n"
    verdict = verdicts.runs_cleanly(bad_signature, entry="f", args=(None,))
    assert verdict.status == "failed" and "NameError" in verdict.reason


def test_without_bwrap_isolation_is_refused_unless_explicitly_allowed(monkeypatch, caplog, humaneval):
    from transforms.execute import isolation
    monkeypatch.setattr(isolation, "_probe", lambda: "bwrap is not installed")
    problem = humaneval[0]
    with pytest.raises(isolation.IsolationUnavailable, match="apt-get install bubblewrap"):
        verdicts.run_function_tests(problem, problem.prompt + problem.canonical_solution, LIMITS)
    monkeypatch.setattr(isolation, "_warned_unisolated", False)
    with caplog.at_level("WARNING", logger=isolation.__name__):
        verdict = verdicts.run_function_tests(problem, problem.prompt + problem.canonical_solution, LIMITS,
                                              allow_unisolated=True)
    assert verdict.passed and verdict.isolated is False
    assert "WITHOUT ISOLATION" in caplog.text


def test_limits_are_validated():
    with pytest.raises(ValueError, match="positive"):
        IsolationLimits(timeout_s=0)
    with pytest.raises(ValueError, match="open_files"):
        IsolationLimits(open_files=3)


def test_an_answer_too_large_to_print_fails_cleanly_in_the_trusted_side():
    """A model's g may return an int over Python's 4,300-digit str limit: the verdict must describe it without
    converting it, never raise."""
    from transforms.execute.verdicts import check_sat, solve_answer

    limits = IsolationLimits(timeout_s=10)
    wrong_type = solve_answer("def g():\n    return 7 ** 20000\n", "str", limits, preamble="")
    assert wrong_type.status == "failed" and "too large to print" in wrong_type.reason
    not_true = check_sat("def f(x: int):\n    return x * 7 ** 20000\n", 3, limits, preamble="")
    assert not_true.status == "failed" and "too large to print" in not_true.reason
    huge = solve_answer("def g():\n    return [7 ** 20000]\n", "List[int]", limits, preamble="")
    assert huge.passed and huge.value[0] == 7 ** 20000
