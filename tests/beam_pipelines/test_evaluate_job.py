"""The pass@k job: the harness on the canonical solutions, and the embedded model through the shared engine."""
from __future__ import annotations

import json
import os

import pytest

from beam_pipelines.evaluate import run
from transforms.execute import problems as evaluation
from transforms.execute.isolation import IsolationLimits
from transforms.execute.verdicts import run_function_tests

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def test_reference_solutions_pass_every_humaneval_problem_through_the_pipeline(tmp_path):
    summary = run(["--reference-solutions", f"--output={tmp_path}"])
    assert summary["problems"] == 164 and summary["pass@1"] == 100.0 and summary["balanced"]
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert sorted(s["id"] for s in samples) == sorted(f"{p.task_id}#0" for p in evaluation.load_problems())


@pytest.mark.engine
def test_smollm2_greedy_pass_at_1_through_vllm(tmp_path):
    """The real path: the embedded model generates through the shared engine, the sandbox runs the tests.
    Every problem ends with exactly one sample record, with a status and a reason that a second, independent
    run of its solution in the sandbox confirms; pass@1 is the share of passed samples."""
    argv = ["--problem-limit=4", "--eval-max-tokens=160", "--engine=vllm", "--max-model-len=2048"]
    summary = run(argv + [f"--output={tmp_path}"])
    assert summary["problems"] == 4 and summary["samples"] == 4 and summary["balanced"]
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    problems = {p.task_id: p for p in evaluation.load_problems()}
    for s in samples:
        assert s["completion"] is not None and s["solution"]
        assert s["solution"] == evaluation.completion_code(problems[s["task_id"]], s["completion"])
        again = run_function_tests(problems[s["task_id"]], s["solution"], IsolationLimits(timeout_s=10))
        assert (again.status, again.reason) == (s["status"], s["reason"]), s["task_id"]
        assert (s["status"] == "passed") == (s["reason"] == "")
    assert summary["pass@1"] == pytest.approx(100.0 * sum(s["status"] == "passed" for s in samples) / 4)
    rerun_summary = run(argv + [f"--output={tmp_path / 'again'}"])
    rerun = [json.loads(line) for line in (tmp_path / "again" / "samples.jsonl").read_text().splitlines()]
    key = lambda s: s["id"]  # noqa: E731
    assert [(s["id"], s["completion"], s["status"]) for s in sorted(samples, key=key)] == \
           [(s["id"], s["completion"], s["status"]) for s in sorted(rerun, key=key)]
    assert rerun_summary["pass@1"] == summary["pass@1"]
