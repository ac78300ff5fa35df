"""bench/engine.py's orchestration, on the fake engine: each path alone in processes of its own, or together."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_bench(tmp_path, *flags: str) -> dict:
    out = tmp_path / "bench.json"
    command = [sys.executable, str(REPO / "bench" / "engine.py"), "--engines", "fake", "--prompts", "3",
               "--max-tokens", "4", "--repeats", "2", "--json", str(out), *flags]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(out.read_text())["fake"]


@pytest.mark.parametrize("together", [False, True])
def test_every_path_runs_each_round_and_the_ratio_pairs_them(tmp_path, together):
    report = run_bench(tmp_path, *(["--together"] if together else []))
    assert report["paths_together"] is together
    assert "raw" not in report  # raw vllm.LLM is vLLM's alone
    for path in ("direct", "pipeline"):
        runs = report[path]["runs"]
        assert len(runs) == 2
        # the fake engine makes a fixed number of tokens per request; both paths asked for the same requests
        assert all(run["generated_tokens"] > 0 and run["score_prompts_per_s"] > 0 for run in runs)
    assert report["direct"]["generated_tokens"] == report["pipeline"]["generated_tokens"]
    per_round = report["ratio"]["per_repeat"]
    assert len(per_round) == 2
    expected = [p["generate_tokens_per_s"] / d["generate_tokens_per_s"]
                for p, d in zip(report["pipeline"]["runs"], report["direct"]["runs"])]
    assert [r["generate_tokens_per_s"] for r in per_round] == pytest.approx(expected)


def test_a_path_alone_refuses_an_unknown_name(tmp_path):
    completed = subprocess.run([sys.executable, str(REPO / "bench" / "engine.py"), "--engines", "fake",
                                "--one-path", "teleport", "--one-path-out", str(tmp_path / "x.json")],
                               capture_output=True, text=True, timeout=120, cwd=REPO)
    assert completed.returncode == 2 and "teleport" in completed.stderr
