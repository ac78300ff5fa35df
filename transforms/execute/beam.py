"""Beam glue of execution: the samples of an evaluation, run in the sandbox.

``Samples`` turns each problem's joined generation result into ``n`` sample records (``runners.inference``);
``reference_samples`` gives the canonical solutions as samples instead (checks the harness). ``ExecuteSamples``
runs each sample's solution against the benchmark's tests (``verdicts.run_function_tests``: the tests run here,
the solution in a sandbox) on a bounded pool of sandboxes per worker, and emits the sample with one status
(``passed``, ``failed``, ``timeout`` or ``engine_error``) and a reason.
"""
from __future__ import annotations

import os
from typing import Any, Iterator

import apache_beam as beam

from runners.inference import to_samples
from schemas.records import RecordKind
from transforms.execute import problems
from transforms.execute.isolation import IsolationLimits
from transforms.execute.options import sandbox_max_batch
from transforms.execute.pool import SandboxPool
from transforms.execute.verdicts import guarded, run_function_tests
from transforms.stage import StageBooks

EXECUTE_STAGE = "execute"
STATUSES = ("passed", "failed", "timeout", "engine_error")


def problem_group(task_id: str, size: int = 20) -> str:
    """A problem's group for per-group scores: blocks of ``size`` consecutive numbered tasks ("HumanEval/0-19"),
    or the task's own prefix when it has no number."""
    prefix, _, number = task_id.rpartition("/")
    if number.isdigit():
        start = int(number) // size * size
        return f"{prefix}/{start}-{start + size - 1}"
    return prefix or task_id


def _sample_base(task_id: str, problem: problems.Problem, i: int) -> dict[str, Any]:
    return {"id": f"{task_id}#{i}", "task_id": task_id, "sample_index": i, "completion": None, "problem": problem,
            "group": problem_group(task_id)}


def generated_samples(element, n: int) -> Iterator[dict[str, Any]]:
    """A problem joined to its generation result -> n samples (an engine error gives n error samples)."""
    return to_samples(element, n, _sample_base, text_key="completion")


def reference_samples(problem: problems.Problem, n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {**_sample_base(problem.task_id, problem, i), "completion": problem.canonical_solution}


class SandboxPoolDoFn(beam.DoFn):
    """A DoFn with one pool of ``workers`` sandboxes per worker process, from setup to teardown (None: the
    worker's own number of CPUs)."""

    def __init__(self, workers: int | None):
        super().__init__()
        self._workers = workers
        self._pool: SandboxPool | None = None

    def setup(self):
        self._pool = SandboxPool(self._workers or os.cpu_count() or 1)

    def teardown(self):
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class _ExecuteBatchFn(SandboxPoolDoFn):
    """Runs a batch of samples on the worker's pool of sandboxes; every sample is emitted with its verdict (a
    failure is a result here, not a dead letter), and the books count one ``execute.<status>`` per sample."""

    def __init__(self, limits: IsolationLimits, workers: int | None, allow_unisolated: bool):
        super().__init__(workers)
        self._limits = limits
        self._allow_unisolated = allow_unisolated
        self.books = StageBooks(EXECUTE_STAGE, RecordKind.SOURCE_PAIR)

    def _execute(self, element: dict[str, Any]) -> dict[str, Any]:
        problem: problems.Problem = element["problem"]
        sample = {k: v for k, v in element.items() if k != "problem"}  # Beam inputs are not to be mutated
        if sample.get("engine_error"):
            return {**sample, "solution": None, "status": "engine_error", "reason": sample["engine_error"],
                    "duration_s": 0.0}
        solution = problems.completion_code(problem, sample["completion"])
        verdict = guarded(run_function_tests, problem, solution, self._limits, self._allow_unisolated)
        return {**sample, "solution": solution, "status": verdict.status, "reason": verdict.reason,
                "duration_s": round(verdict.duration_s, 3), "isolated": verdict.isolated,
                "stderr_tail": verdict.stderr[-500:]}

    def process(self, batch: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        self.books.took(len(batch))
        for result in self._pool.map(self._execute, batch):
            self.books.count(result["status"])
            self.books.observe("sandbox_ms", result["duration_s"] * 1000)
            yield result


class ExecuteSamples(beam.PTransform):
    """Samples -> the same samples with ``solution``, ``status``, ``reason`` and ``duration_s``."""

    def __init__(self, limits: IsolationLimits, workers: int | None, allow_unisolated: bool = False):
        super().__init__()
        self._fn = _ExecuteBatchFn(limits, workers, allow_unisolated)
        self._workers = workers

    def expand(self, samples):
        return (samples
                | "Spread" >> beam.Reshuffle()
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=sandbox_max_batch(self._workers))
                | "Execute" >> beam.ParDo(self._fn))
