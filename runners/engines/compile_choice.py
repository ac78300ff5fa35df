"""Eager or compiled vLLM on a CPU, chosen from how much work the job has. Pure.

Compiling (``torch.compile``) costs vLLM-CPU about 49-64 s more start-up than eager and pays it back only on CPUs
where compiled steps are faster enough. Measured with ``bench/compile_choice.py --prompts 1000 --max-tokens 128
--modes server,server-compiled`` (README, "Eager or compiled, from measurements"):

- AMX Xeon, bf16, batch-invariant AMX (the default) with the AMX tile kernel: compiled saves 31.3 s per 1,000
  requests (a request: one generation of up to 128 tokens and its judging; 39.7 s at equal generated tokens) against
  49.1 s more start-up, so it pays from about 1,250-1,600 requests (2026-12-04 22:19-22:28 UTC,
  ``bench/results/compile_choice_1k_amx_tiles.json``; with oneDNN's 32-row blocks before it, 2,000-3,300). The
  threshold is the upper end: below it eager is as fast or faster.
- AVX2-only EPYC (float32) and the earlier AVX-512 BF16 machine: compiled was 1.03-1.12x faster per token but
  never paid back its start-up in the jobs measured (up to 1k requests; break-even 107,000-163,000 generated
  tokens), so those CPUs stay eager.
- P3 solve attempts (the P3 evaluation's, and self-play's: a shared few-shot prefix and a puzzle, up to 150 tokens
  at T 0.8, EOS never sampled, ended by its stop strings; about 47 tokens each), AMX Xeon, bf16, invariant AMX,
  ``bench/compile_choice.py --workload p3-solve --samples 32``, 2026-12-05 05:34-06:18 UTC, quiet: compiled generates
  1.13-1.15x as fast for about 41 s more start-up. It saves 11.0 ms per attempt at 1,024 attempts (break-even 3,700;
  medians of 2 rounds, ``bench/results/compile_choice_p3_solve_1k.json``), 7.5 ms at 4,096 (5,394;
  ``..._4k.json``) and 6.6 ms at 7,296 (6,293; ``..._7k.json``, where compiled finished first, 432.6 s against
  439.2 s): eager gains more from larger jobs. The threshold sits above the largest break-even. The P3 evaluation's
  default, 228 puzzles x 100 attempts, is above it.
- Not measured: ``--cpu-amx full`` or ``off`` compiled on AMX; they stay eager. Nor the code benchmarks'
  evaluation (up to 512 greedy tokens per problem), which stays eager.
"""
from __future__ import annotations

import dataclasses

# What a job's size is counted in, per kind of work:
# instruct: requests, each one generation of up to 128 tokens and its judging (the main job);
# p3_solve: P3 solve attempts (the P3 evaluation; self-play counts its puzzle samples as attempts too).
UNITS = {"instruct": "requests", "p3_solve": "attempts"}
WORKLOADS = tuple(UNITS)
# kind of work -> CPU class -> the size from which compiling pays (bench/results/compile_choice_1k_amx_tiles.json,
# compile_choice_p3_solve_*.json)
COMPILE_PAYS_FROM = {"instruct": {"amx_bf16": 1_600}, "p3_solve": {"amx_bf16": 7_500}}


def compile_threshold(cpu_bf16_feature: str | None, dtype: str, cpu_amx: str, workload: str = "instruct",
                      ) -> int | None:
    """The size (in ``workload``'s unit) from which a compiled vLLM engine beats eager on this CPU class, or None
    where it was not measured to pay at any job size here."""
    if workload not in WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    if dtype != "bfloat16" or cpu_amx != "invariant":
        return None
    return COMPILE_PAYS_FROM[workload].get(cpu_bf16_feature or "")


def compiles(requests: int, threshold: int | None) -> bool:
    """Whether a job of ``requests`` requests should compile (``threshold`` from ``compile_threshold``)."""
    return threshold is not None and requests >= threshold


@dataclasses.dataclass(frozen=True)
class WorkEstimate:
    """A job's size in its workload's unit (``UNITS``), and how it was counted (shown in the launch note); ``bound``:
    "" when exact, or "at least"."""
    requests: int
    unit: str
    how: str
    bound: str = ""

    def describe(self) -> str:
        return f"{self.bound + ' ' if self.bound else ''}{self.requests:,} {self.unit} ({self.how})"
