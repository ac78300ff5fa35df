"""Beam glue of execution: the samples of an evaluation, run in the sandbox.

``Samples`` turns each problem's joined generation result into ``n`` sample records (``runners.inference``);
``reference_samples`` gives the canonical solutions as samples instead (checks the harness). ``ExecuteSampleFn``
runs each sample's test program and emits it with one status (``passed``, ``failed``, ``timeout`` or
``engine_error``) and a reason.
"""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam

from runners.inference import to_samples
from schemas.records import RecordKind
from transforms.execute import problems
from transforms.execute.sandbox import SandboxLimits, run_program
from transforms.stage import StageBooks

EXECUTE_STAGE = "execute"
STATUSES = ("passed", "failed", "timeout", "engine_error")


def _sample_base(task_id: str, problem: problems.Problem, i: int) -> dict[str, Any]:
    return {"id": f"{task_id}#{i}", "task_id": task_id, "sample_index": i, "completion": None, "problem": problem}


def generated_samples(element, n: int) -> Iterator[dict[str, Any]]:
    """A problem joined to its generation result -> n samples (an engine error gives n error samples)."""
    return to_samples(element, n, _sample_base, text_key="completion")


def reference_samples(problem: problems.Problem, n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {**_sample_base(problem.task_id, problem, i), "completion": problem.canonical_solution}


class ExecuteSampleFn(beam.DoFn):
    """Runs each sample's test program in the sandbox; emits the sample with its status and reason.

    Every sample is emitted (a failure is a result here, not a dead letter); the books count one
    ``execute.<status>`` per sample."""

    def __init__(self, limits: SandboxLimits):
        self._limits = limits
        self.books = StageBooks(EXECUTE_STAGE, RecordKind.SOURCE_PAIR)

    def process(self, element: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.books.took()
        problem: problems.Problem = element["problem"]
        sample = {k: v for k, v in element.items() if k != "problem"}  # Beam inputs are not to be mutated
        if sample.get("engine_error"):
            self.books.count("engine_error")
            yield {**sample, "solution": None, "status": "engine_error", "reason": sample["engine_error"],
                   "duration_s": 0.0}
            return
        solution = problems.completion_code(problem, sample["completion"])
        result = run_program(problems.test_program(problem, solution), self._limits)
        self.books.count(result.status)
        self.books.observe("sandbox_ms", result.duration_s * 1000)
        yield {**sample, "solution": solution, "status": result.status, "reason": result.reason,
               "duration_s": round(result.duration_s, 3), "stderr_tail": result.stderr[-500:]}
