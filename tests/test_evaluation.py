"""pass@k evaluation: the estimator, prompts and programs, and the harness on real HumanEval."""
from __future__ import annotations

import itertools
import json
import os

import pytest

from beam_pipelines.evaluate import run
from transforms import evaluation
from transforms.sandbox import SandboxLimits, run_program

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="module")
def problems():
    return evaluation.load_problems()


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    """The definition: the share of k-subsets of the n samples that hold at least one pass."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n, c, k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (6, 1, 5), (7, 7, 2), (8, 0, 4)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    assert evaluation.pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))


def test_pass_at_k_rejects_impossible_counts():
    for n, c, k in ((3, 4, 1), (3, 1, 4), (3, 1, 0)):
        with pytest.raises(ValueError):
            evaluation.pass_at_k(n, c, k)


def test_summary_averages_over_problems_and_skips_k_above_n():
    results = [{"task_id": "a", "status": "passed"}, {"task_id": "a", "status": "failed"},
               {"task_id": "b", "status": "timeout"}, {"task_id": "b", "status": "failed"}]
    summary = evaluation.summarize_results(results, ks=(1, 2, 3))
    assert summary["pass@1"] == 25.0 and summary["pass@2"] == 50.0 and "pass@3" not in summary
    assert summary["statuses"] == {"failed": 2, "passed": 1, "timeout": 1} and summary["solved"] == ["a"]


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


def test_broken_solutions_fail_on_the_real_tests(problems):
    """The other half of a sound harness: a wrong body fails every one of these tests."""
    for p in problems[:12]:
        for body in ("    return None\n", "    raise NotImplementedError\n"):
            result = run_program(evaluation.test_program(p, p.prompt + body), SandboxLimits(timeout_s=10))
            assert result.status == "failed", (p.task_id, body)


def test_reference_solutions_pass_every_humaneval_problem_through_the_pipeline(tmp_path):
    summary = run(["--reference-solutions", f"--output={tmp_path}"])
    assert summary["problems"] == 164 and summary["pass@1"] == 100.0 and summary["balanced"]
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert sorted(s["id"] for s in samples) == sorted(f"{p.task_id}#0" for p in evaluation.load_problems())


def test_smollm2_greedy_pass_at_1_through_vllm(tmp_path):
    """The real path: the embedded model generates through the shared engine, the sandbox runs the tests.
    Every problem ends with exactly one sample record, with a status and a reason."""
    summary = run(["--problem-limit=4", "--eval-max-tokens=160", "--engine=vllm", "--max-model-len=2048",
                   f"--output={tmp_path}"])
    assert summary["problems"] == 4 and summary["samples"] == 4 and summary["balanced"]
    assert 0.0 <= summary["pass@1"] <= 100.0
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    for s in samples:
        assert s["status"] in ("passed", "failed", "timeout", "engine_error")
        assert s["completion"] is not None and s["solution"]
        assert (s["status"] == "passed") == (s["reason"] == "")
    again = run(["--problem-limit=4", "--eval-max-tokens=160", "--engine=vllm", "--max-model-len=2048",
                 f"--output={tmp_path / 'again'}"])
    rerun = [json.loads(line) for line in (tmp_path / "again" / "samples.jsonl").read_text().splitlines()]
    key = lambda s: s["id"]  # noqa: E731
    assert [(s["id"], s["completion"], s["status"]) for s in sorted(samples, key=key)] == \
           [(s["id"], s["completion"], s["status"]) for s in sorted(rerun, key=key)]
