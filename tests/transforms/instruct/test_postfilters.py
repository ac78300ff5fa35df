"""Post-filters on generated candidate instructions."""
from __future__ import annotations

import pytest

from transforms.instruct import postfilters
from transforms.instruct.options import FilterConfig
from transforms.instruct.postfilters import check_candidate, duplicate_of
from transforms.instruct.prompts import stored_instruction

CODE = """def merge_sorted(left, right):
    result = []
    i = j = 0
    while i < len(left) and j < len(right):
        if left[i] <= right[j]:
            result.append(left[i]); i += 1
        else:
            result.append(right[j]); j += 1
    return result + left[i:] + right[j:]
"""


def verdict(generated: str, prefix: str = "Write a python", code: str = CODE, config: FilterConfig = FilterConfig()):
    result = check_candidate(generated, stored_instruction(prefix, generated), code, config)
    return None if result is None else result.reason


def test_an_honest_description_passes():
    assert verdict(" function that merges two sorted lists into one sorted list.") is None


@pytest.mark.parametrize("generated", ["", "   \n", " ...", "\n\n!"])
def test_empty(generated):
    assert verdict(generated) == postfilters.EMPTY


@pytest.mark.parametrize(
    "generated",
    [
        " program. I'm sorry, but I cannot help with that.",
        " function. As an AI language model, I do not write code.",
        " I am unable to determine the problem from this code.",
        " Sorry, but this snippet is incomplete.",
    ],
)
def test_refusal(generated):
    assert verdict(generated) == postfilters.REFUSAL


def test_code_echo_of_the_whole_code():
    assert verdict(" function:\n" + CODE) == postfilters.CODE_ECHO


def test_code_echo_of_most_lines():
    lines = CODE.splitlines()
    echoed = "\n".join(lines[:7])  # 7 of the 9 lines
    assert verdict(" function like this:\n" + echoed) == postfilters.CODE_ECHO


def test_quoting_a_signature_is_not_an_echo():
    assert verdict(" function `merge_sorted(left, right)` that merges two sorted lists: "
                   "def merge_sorted(left, right):") is None


def test_short_code_echo_threshold():
    one_liner = "print(sum(range(10)))"
    assert verdict(" program that runs print(sum(range(10)))", code=one_liner) == postfilters.CODE_ECHO
    assert verdict(" program that prints x", code="print(x)") is None  # a tiny snippet quoted is not an echo


def test_length_bounds():
    config = FilterConfig(min_instruction_chars=30, max_instruction_chars=80)
    assert verdict(" sorter.", config=config) == postfilters.TOO_SHORT  # "Write a python sorter." = 22 chars
    assert verdict(" function that merges two sorted lists " + "and more " * 10, config=config) == postfilters.TOO_LONG
    assert verdict(" function that merges two sorted lists.", config=config) is None
    unbounded = FilterConfig(min_instruction_chars=0, max_instruction_chars=0)
    assert verdict(" x", config=unbounded) is None
    assert verdict(" function" + " that merges" * 1000, config=unbounded) is None


def test_refusal_wins_over_length():
    assert verdict(" I'm sorry", config=FilterConfig(min_instruction_chars=100)) == postfilters.REFUSAL


def test_duplicates_keep_the_lowest_index():
    candidates = [
        (3, "c3", "Write a python function that sorts."),
        (0, "c0", "Write a python function that sorts"),
        (1, "c1", "Write a Python  function that SORTS."),
        (2, "c2", "Write a python function that merges."),
        (5, "c5", "Write a python function that merges"),
    ]
    assert duplicate_of(candidates) == {"c1": 0, "c3": 0, "c5": 2}


def test_no_duplicates():
    assert duplicate_of([(0, "c0", "Write a x"), (1, "c1", "Write a y")]) == {}
    assert duplicate_of([]) == {}


def test_a_second_copy_of_a_candidate_is_not_its_own_duplicate():
    """A snippet that arrived twice brings every candidate twice, with the same id: each copy is judged as the
    first is (the kept one stays kept, a duplicate stays a duplicate); Select dead-letters the extra snippet."""
    once = [(0, "c0", "Write a python function that sorts."), (1, "c1", "Write a python function that sorts"),
            (2, "c2", "Write a python function that merges.")]
    assert duplicate_of(once + once) == duplicate_of(once) == {"c1": 0}
    assert duplicate_of([(0, "c0", "Write a x"), (0, "c0", "Write a x")]) == {}
