"""bench/train_attention_crossover.py's pooling: which steps count, per path and per run, and the same-step ratio
(canned runs with hand-computed expectations: a real run takes minutes)."""
from __future__ import annotations

import pytest

from tests.bench import load_bench

A, B = "length_aware", "sdpa"


@pytest.fixture
def crossover_bench(monkeypatch):
    return load_bench("train_attention_crossover.py", monkeypatch)


def run(paths, cpu, tokens, graphs):
    return {"step_paths": paths, "step_cpu_seconds": cpu, "step_real_tokens": tokens, "compiled_graphs": graphs}


def test_pools_steady_steps_per_path_and_pairs_the_same_step_across_runs(crossover_bench):
    # Run 1 starts with A; step 0 (warm-up) and step 1 (a graph compiled: 1 -> 2) are not steady.
    first = run([A, B, A, B, A], [50.0, 40.0, 10.0, 20.0, 12.0], [1000, 1000, 1000, 2000, 1200], [1, 2, 2, 2, 2])
    # Run 2 starts with B: the same steps' examples through the other path; its step 2 compiled (2 -> 3).
    second = run([B, A, B, A, B], [45.0, 30.0, 14.0, 16.0, 18.0], [1000, 1000, 1000, 2000, 1200], [1, 2, 3, 3, 3])
    result = crossover_bench.crossover([first, second], (A, B))
    # Run 1 steady: steps 2 (A), 3 (B), 4 (A). Run 2 steady: steps 3 (A), 4 (B) (steps 1 and 2 compiled).
    assert result["per_run"][0] == {"first_path": A, "steady_steps": 3,
                                    "tokens_per_cpu_second": {A: round(2200 / 22.0, 1), B: round(2000 / 20.0, 1)}}
    assert result["per_run"][1] == {"first_path": B, "steady_steps": 2,
                                    "tokens_per_cpu_second": {A: 125.0, B: round(1200 / 18.0, 1)}}
    assert result["pooled_steady_tokens"] == {A: 4200, B: 3200}
    assert result["pooled_tokens_per_cpu_second"] == {A: round(4200 / 38.0, 1), B: round(3200 / 38.0, 1)}
    assert result[f"pooled_{A}_over_{B}"] == round(round(4200 / 38.0, 1) / round(3200 / 38.0, 1), 3)
    # Steps steady in both runs under different paths: 3 (B 20.0 vs A 16.0) and 4 (A 12.0 vs B 18.0); step 2 is
    # steady only in run 1.
    assert result["paired_steps"] == 2
    assert result[f"paired_median_cpu_{B}_over_{A}"] == round((20.0 / 16.0 + 18.0 / 12.0) / 2, 3)


def test_eager_runs_count_every_step_after_the_first(crossover_bench):
    eager = run([A, B, A], [9.0, 4.0, 2.0], [100, 400, 100], None)
    result = crossover_bench.crossover([eager], (A, B))
    assert result["per_run"][0]["steady_steps"] == 2
    assert result["pooled_tokens_per_cpu_second"] == {A: 50.0, B: 100.0}
    assert result["paired_steps"] == 0 and result[f"paired_median_cpu_{B}_over_{A}"] is None


def test_refuses_runs_it_cannot_pool(crossover_bench):
    with pytest.raises(ValueError, match="no runs"):
        crossover_bench.crossover([], (A, B))
    with pytest.raises(ValueError, match="differ in length"):
        crossover_bench.crossover([run([A, B], [1.0], [10, 10], None)], (A, B))
    with pytest.raises(ValueError, match="outside"):
        crossover_bench.crossover([run([A, "eager"], [1.0, 1.0], [10, 10], None)], (A, B))
    with pytest.raises(SystemExit, match="two different paths"):
        crossover_bench.paths_of("sdpa,sdpa")
