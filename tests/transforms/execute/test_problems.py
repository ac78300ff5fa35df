"""Execution benchmarks: HumanEval problems, the generation prompt, solution code and the harness's tests."""
from __future__ import annotations

import pytest

from transforms.execute import problems as evaluation


@pytest.fixture(scope="module")
def problems():
    return evaluation.load_problems()


def test_humaneval_ships_with_its_entry_points_and_tests(problems):
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0"
    assert all(p.entry_point and "def check(" in p.test and p.canonical_solution for p in problems)


def test_generation_prompt_uses_the_training_template_and_opens_a_fence(problems):
    prompt = evaluation.generation_prompt(problems[0], evaluation.load_eval_prompt())
    assert "@@ Instruction\nPlease provide a self-contained Python script" in prompt
    assert problems[0].prompt.strip() in prompt
    assert prompt.endswith("@@ Response\nBelow is a Python script with a self-contained function that solves the "
                           "problem and passes corresponding tests:\n```python\n")


def test_completion_code_takes_the_code_before_the_fence_and_adds_the_prompt_to_a_bare_body(problems):
    p = problems[2]  # truncate_number
    full = f"def {p.entry_point}(number: float) -> float:\n    return number % 1.0\n"
    assert evaluation.completion_code(p, full + "```\nexplanation") == full  # its prompt imports nothing
    body = "    return number % 1.0\n"
    assert evaluation.completion_code(p, body) == p.prompt + body
    # A whole function gets the prompt's imports, which its signature may rely on.
    q = problems[0]  # has_close_elements(numbers: List[float], ...)
    whole = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n    return False\n"
    assert evaluation.completion_code(q, whole) == "from typing import List\n" + whole
