"""bench/train.py's rounds: every side runs once per round, the order rotates, and the ratios pair each round's
runs (the runs themselves replaced by canned reports: a real one takes minutes)."""
from __future__ import annotations

import pytest

from tests.bench import load_bench


@pytest.fixture
def bench_train(monkeypatch):
    return load_bench("train.py", monkeypatch)


def test_rounds_rotate_the_order_and_pair_each_rounds_runs(bench_train, monkeypatch, tmp_path):
    order: list[str] = []
    speeds = {"before": iter([100.0, 80.0, 90.0]), "auto": iter([400.0, 360.0, 390.0]),
              "sdpa": iter([350.0, 340.0, 330.0])}

    def report(side):
        order.append(side)
        return {"tokens_per_cpu_second": next(speeds[side]), "attention": side}

    monkeypatch.setattr(bench_train, "_run_before", lambda args, tmp: report("before"))
    monkeypatch.setattr(bench_train, "_run_side", lambda args, precision, attention, tmp: report(attention))
    args = bench_train.parse_args(["--compare", "--rounds", "3", "--baseline-ref", "HEAD",
                                   "--round-attentions", "auto,sdpa", "--json-out", str(tmp_path / "r.json")])
    result = bench_train.main_with(args)
    assert order == ["before", "auto", "sdpa", "auto", "sdpa", "before", "sdpa", "before", "auto"]
    assert result["tokens_per_cpu_second_median"] == {"before": 90.0, "auto": 390.0, "sdpa": 340.0}
    assert result["over_before_median"] == {"auto": 4.33, "sdpa": 3.78}
    assert result["over_before_per_round"] == {"auto": [4.0, 4.5, 4.33], "sdpa": [3.5, 4.25, 3.67]}
    assert (tmp_path / "r.json").exists()


def test_rounds_refuse_an_unknown_attention_or_no_baseline(bench_train):
    for argv in (["--round-attentions", "flash", "--baseline-ref", "HEAD"], ["--round-attentions", "auto"]):
        with pytest.raises(SystemExit, match="--rounds needs --baseline-ref"):
            bench_train.main_with(bench_train.parse_args(["--compare", "--rounds", "2", *argv]))


def test_steady_steps_leave_out_the_steps_that_compiled(bench_train):
    steps = [{"compiled_graphs": 1, "i": 0}, {"compiled_graphs": 2, "i": 1}, {"compiled_graphs": 2, "i": 2},
             {"compiled_graphs": 2, "i": 3}, {"compiled_graphs": 3, "i": 4}, {"compiled_graphs": 3, "i": 5}]
    assert [s["i"] for s in bench_train.steady_steps(steps)] == [2, 3, 5]
    eager = [{"i": 0}, {"i": 1}, {"i": 2}]  # no count logged: every step after the first
    assert [s["i"] for s in bench_train.steady_steps(eager)] == [1, 2]
    assert bench_train.steady_steps([{"compiled_graphs": 1}]) == []


def test_rounds_report_steady_ratios_with_the_baselines_overall_rate(bench_train, monkeypatch):
    def report(side):
        if side == "before":  # an older commit's bench: no steady figure
            return {"tokens_per_cpu_second": 100.0}
        return {"tokens_per_cpu_second": 300.0, "steady_tokens_per_cpu_second": 450.0, "attention": side}

    monkeypatch.setattr(bench_train, "_run_before", lambda args, tmp: report("before"))
    monkeypatch.setattr(bench_train, "_run_side", lambda args, precision, attention, tmp: report(attention))
    result = bench_train.main_with(bench_train.parse_args(["--compare", "--rounds", "2", "--baseline-ref", "HEAD",
                                                           "--round-attentions", "sdpa"]))
    assert result["over_before_median"] == {"sdpa": 3.0}
    assert result["steady_over_before_median"] == {"sdpa": 4.5}
    assert result["steady_tokens_per_cpu_second_median"] == {"before": 100.0, "sdpa": 450.0}
