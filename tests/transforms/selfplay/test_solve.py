"""The solve step. Verification programs run in this process (``run_in_process``) on puzzles written here."""
import dataclasses

import pytest

from transforms.selfplay import solve as S
from transforms.selfplay.p3 import P3Instance

PUZZLE = "def f(x: int, a=12, b=[1, 2]):\n    return x * a == 144 + sum(b) * 0"


def _tutorial(i, f, body):
    return P3Instance(f"Tutorial{i}:0", f"Tutorial{i}", "train", f, "str", "def g():", "", (body,), "tutorial.py")


def test_prefix_is_the_five_tutorial_puzzles_solved_after_the_typing_import():
    train = [_tutorial(i, f"def f(s: str):\n    return s == '{i}'", f"    return '{i}'") for i in (5, 3, 1, 2, 4)]
    expected = "from typing import List\n\n" + "\n\n".join(
        f"def f(s: str):\n    return s == '{i}'\n\ndef g():\n    return '{i}'\n\nassert f(g())" for i in range(1, 6))
    assert S.build_solve_prefix(train) == expected + "\n\n"


def test_prefix_refuses_test_families_and_missing_tutorials():
    train = [_tutorial(i, "def f(s: str):\n    return s == 'a'", "    return 'a'") for i in range(1, 6)]
    with pytest.raises(ValueError, match="training families"):
        S.build_solve_prefix([*train[:4], dataclasses.replace(train[4], split="test")])
    with pytest.raises(ValueError, match="Tutorial5"):
        S.build_solve_prefix(train[:4])


def test_a_prefix_file_loads_stripped_with_trailing_spaces_removed(tmp_path):
    path = tmp_path / "prefix.txt"
    path.write_text("\n\ndef f(x: int):   \n    return x == 1\n\n\n")
    assert S.load_solve_prefix(path) == "def f(x: int):\n    return x == 1\n\n"


def test_solve_prompt_ends_with_g_taking_the_puzzles_other_parameters():
    prompt = S.build_solve_prompt("PREFIX\n\n", PUZZLE + "\n")
    assert prompt.text == f"PREFIX\n\n{PUZZLE}\n\ndef g(a=12, b=[1, 2]):"
    assert prompt.header == "def g(a=12, b=[1, 2]):" and prompt.answer_type == "int"
    assert S.build_solve_prompt("", "def f(s: str):\n    return s == 'a'").text.endswith("\n\ndef g():")


def test_a_puzzle_whose_inputs_cannot_be_read_is_refused():
    with pytest.raises(S.WeirdSignature):
        S.build_solve_prompt("", "def f(x: int,\n      a=1):\n    return x == a")


@pytest.fixture
def prompt():
    return S.build_solve_prompt("", PUZZLE)


@pytest.mark.parametrize("completion, verified", [
    ("\n    return 144 // a\n\nassert f(g())", True),
    ("\n    return 13", False),  # wrong answer
    ("\n    return 12.0", False),  # f(12.0) is True but the answer is not an int
    ("\n    return next(x for x in range(100) if f(x))", True),  # g may call f, as in the reference's namespace
    ("\n    return 1 / 0", False),
])
def test_verification_program_runs_cleanly_only_for_a_verified_attempt(run_in_process, prompt, completion, verified):
    [attempt] = S.attempts_from_completions([completion])
    assert attempt.body is not None
    assert run_in_process(S.verification_program(prompt, attempt.body)) is verified


def test_only_exactly_true_verifies(run_in_process):
    truthy = S.build_solve_prompt("", "def f(x: int):\n    return x * 2")  # returns 4 for x=2, not True
    assert not run_in_process(S.verification_program(truthy, "\n    return 2"))
    exact = S.build_solve_prompt("", "def f(x: int):\n    return x * 2 == 4")
    assert run_in_process(S.verification_program(exact, "\n    return 2"))


@pytest.mark.parametrize("value, type_text, ok", [
    (3, "int", True), (True, "int", False), (3, "float", False), ([1, 2], "List[int]", True),
    ([1, "2"], "List[int]", False), ([[1.0]], "List[List[float]]", True), ((1, 2), "List[int]", False),
    ({1}, "Set[int]", True), ({"a": 1}, "Dict[str, int]", True), ([1], "list", False),
])
def test_answer_type_check_is_the_judges(value, type_text, ok):
    assert S.answer_type_matches(value, type_text) is ok


def test_verification_request_carries_f_with_g_and_the_answer_type(prompt):
    request = S.verification_request(prompt, "\n    return 12")
    assert request["sol_source"] == PUZZLE + "\n\ndef g(a=12, b=[1, 2]):\n    return 12"
    assert request["sat_source"] == PUZZLE and request["ans_type"] == "int" and request["unsafe"] is None
    assert S.verification_request(prompt, "\n    return open('x')")["unsafe"] == "unsafe_code"


def test_unparsable_completions_get_no_body_and_verdicts_map_to_parsed_attempts():
    attempts = S.attempts_from_completions(["\n    return 12", "\n    return (", "\n    return 11"])
    assert [a.body for a in attempts] == ["\n    return 12", None, "\n    return 11"]
    marked = S.mark_attempts(attempts, [True, False])
    assert [a.passed for a in marked] == [True, False, False]
    with pytest.raises(ValueError):
        S.mark_attempts(attempts, [True])


def test_selection_keeps_distinct_verified_bodies_shortest_first_up_to_the_limit():
    bodies = ["\n    return 12", "\n    return 144 // 12", "\n    return 12", "\n    return  12",
              "\n    return 6 + 6", "\n    return 3 * 4", "\n    return 13"]
    passed = [True, True, True, True, True, True, False]
    attempts = [S.Attempt(i, b, p) for i, (b, p) in enumerate(zip(bodies, passed))]
    assert S.select_solutions(attempts) == ["\n    return 12", "\n    return  12", "\n    return 6 + 6",
                                            "\n    return 3 * 4", "\n    return 144 // 12"]
    assert S.select_solutions(attempts, max_sols_per_puzzle=2) == ["\n    return 12", "\n    return  12"]
    many = [S.Attempt(i, f"\n    return {i}", True) for i in range(20)]
    assert len(S.select_solutions(many)) == 8
    assert S.select_solutions([S.Attempt(0, "\n    return 1", False)]) == []


def test_first_success_is_one_based():
    attempts = [S.Attempt(0, "\n    return 1", False), S.Attempt(1, None), S.Attempt(2, "\n    return 2", True)]
    assert S.first_success(attempts) == 3
    assert S.first_success(attempts[:2]) is None


def test_solve_defaults_are_the_references():
    d = S.solve_defaults()
    assert (d.attempts, d.temperature, d.max_new_tokens, d.max_sols_per_puzzle) == (128, None, 150, 8)
    assert (d.eval_attempts, d.eval_temperature) == (100, 0.8)


def test_real_prefix_and_all_228_test_prompts(p3_data):
    prefix = S.build_solve_prefix(p3_data.train)
    assert prefix.startswith('from typing import List\n\ndef f(s: str):\n    return "Hello " + s == "Hello world"')
    assert prefix.count("assert f(g())") == 5 and prefix.endswith("assert f(g())\n\n")
    assert len(p3_data.test) == 228
    for p in p3_data.test:
        prompt = S.build_solve_prompt(prefix, p.f)
        assert prompt.text.startswith(prefix) and prompt.answer_type == p.ans_type
        # solve.py reads g's inputs with a plain split at the first comma; it agrees on every test puzzle.
        args = p.f[p.f.index("(") + 1 : p.f.index("):\n")]
        naive = args[args.index(",") + 1 :].strip() if "," in args else ""
        assert prompt.header == f"def g({naive}):"


# The reference's data/train_prefix.txt (microsoft/PythonProgrammingPuzzles ICLR2023), quoted as data; loaded as
# solve.py loads it: stripped, then a blank line.
RELEASED_TRAIN_PREFIX = '''from typing import List

def f(s: str):
    return "Hello " + s == "Hello world"

def g():
    return "world"

assert f(g())

def f(s: str):
    return "Hello " + s[::-1] == "Hello world"

def g():
    return "world"[::-1]

assert f(g())

def f(x: List[int]):
    return len(x) == 2 and sum(x) == 3

def g():
    return [1, 2]

assert f(g())

def f(s: List[str]):
    return len(set(s)) == 1000 and all((x.count("a") > x.count("b")) and ('b' in x) for x in s)

def g():
    return ["a"*(i+2)+"b" for i in range(1000)]

assert f(g())

def f(n: int):
    return str(n * n).startswith("123456789")

def g():
    return int(int("123456789" + "0"*9) ** 0.5) + 1

assert f(g())
'''


def test_the_prefix_built_from_p3_is_the_released_train_prefix_byte_for_byte(p3_data):
    """P3 spells two tutorial solutions with spaces the released file lacks (`"a" * (i + 2)`): the P3 test
    evaluation's prompts used to differ from the paper's by those tokens."""
    assert S.build_solve_prefix(p3_data.train) == RELEASED_TRAIN_PREFIX.strip() + "\n\n"


def test_a_released_spelling_never_replaces_a_different_solution():
    train = [_tutorial(i, "def f(s: str):\n    return s == 'a'", "    return 'a'") for i in range(1, 6)]
    assert 'return ["a"*(i+2)' not in S.build_solve_prefix(train)  # Tutorial4 here solves another puzzle
    train[3] = _tutorial(4, "def f(s: str):\n    return s == 'a'",
                         '    return ["a" * (i + 2) + "b" for i in range(1000)]')
    assert 'return ["a"*(i+2)+"b" for i in range(1000)]' in S.build_solve_prefix(train)
