"""The pass@k job: the harness on the canonical solutions, and the embedded model through the shared engine."""
from __future__ import annotations

import json
import os
import textwrap

import pytest

from beam_pipelines.evaluate import run
from tests.engine_fixtures import VLLM_JOB_OPTIONS
from transforms.execute import problems as evaluation
from transforms.execute.isolation import IsolationLimits
from transforms.execute.verdicts import run_function_tests

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.mark.engine
def test_smollm2_greedy_pass_at_1_through_vllm(tmp_path):
    """The real path: the embedded model generates through the shared engine, the sandbox runs the tests.
    Every problem ends with exactly one sample record, with a status and a reason that a second, independent
    run of its solution in the sandbox confirms; pass@1 is the share of passed samples."""
    argv = ["--problem-limit=4", "--eval-max-tokens=160", *VLLM_JOB_OPTIONS]
    summary = run(argv + [f"--output={tmp_path}"])
    assert summary["problems"] == 4 and summary["samples"] == 4 and summary["balanced"] and summary["isolated"]
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    problems = {p.task_id: p for p in evaluation.load_problems()}
    for s in samples:
        assert s["completion"] is not None and s["solution"]
        assert s["solution"] == evaluation.completion_code(problems[s["task_id"]], s["completion"])
        # A verdict on the code, not on the harness: a sandbox that failed to start would fail every sample
        # the same way in both runs.
        assert s["status"] in ("passed", "failed", "timeout"), s
        assert not s["reason"].startswith(("setup:", "protocol:")), s
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


@pytest.mark.heavy
def test_p3_reference_solutions_solve_every_test_puzzle_that_has_one(tmp_path, shared_data):
    """The P3 harness: the 228 test puzzles (first instance of each test family), each reference solution
    verified as an attempt is (g's answer of f's type in one sandbox, f(answer) exactly True in another).
    ExponentialCoinMoves' answer is a 64 MB list, hence the larger answer and memory limits."""
    from transforms.selfplay.p3 import load_p3

    p3 = load_p3(shared_data / "p3")
    assert len(p3.test) == 228
    with_reference = {p.name for p in p3.test if p.sol_bodies and not p.parse_error}
    summary = run([f"--benchmark=p3={shared_data / 'p3'}", "--reference-solutions", "--sandbox-max-answer-mb=80",
                   "--sandbox-memory-mb=4096", "--sandbox-timeout=60", f"--output={tmp_path}"])
    assert summary["benchmark"] == "p3" and summary["balanced"] and summary["isolated"]
    assert summary["problems"] == len(with_reference) >= 220
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    failed = [(s["task_id"], s["reason"]) for s in samples if s["status"] != "passed"]
    assert not failed
    assert set(summary["solved"]) == with_reference and summary["pass@1"] == 100.0


def test_p3_wrong_answers_fail(tmp_path, shared_data):
    """The other half: an unrelated int, an answer of the wrong type, and the reference answer plus one do not
    verify (plus one does for BirthdayParadox, whose f accepts every n with (prob - 0.5) ** 2 <= 1 / 365)."""
    from transforms.execute.isolation import IsolationLimits
    from transforms.selfplay.beam import SandboxSettings, verify_attempts
    from transforms.selfplay.p3 import load_p3
    from transforms.selfplay.preset import load_preset
    from transforms.selfplay.solve import solution_header

    p3 = load_p3(shared_data / "p3")
    ints = [p for p in p3.test if p.ans_type == "int" and p.sol_bodies and not p.parse_error][:10]
    assert len(ints) == 10
    sandbox = SandboxSettings(IsolationLimits(timeout_s=10), workers=2)
    for p in ints:
        puzzle = {"id": p.name, "name": p.name, "sat": p.f}
        right = "\n" + p.sol_bodies[0]
        off_by_one = "\n    def reference():" + textwrap.indent(right, "    ") + "\n    return reference() + 1\n"
        texts = [right, "\n    return 'not an int'\n", "\n    return -1234567\n", off_by_one]
        attempts = verify_attempts(puzzle, solution_header(p.f), "int", texts, "", len(texts),
                                   load_preset().filters.judge_preamble, sandbox)
        assert attempts[0]["status"] == "passed", (p.name, attempts[0]["reason"])
        assert attempts[1]["status"] == "failed" and "not of type int" in attempts[1]["reason"]
        assert attempts[2]["status"] == "failed", p.name
        assert attempts[3]["status"] == ("passed" if p.name == "BirthdayParadox:0" else "failed"), p.name


def test_p3_evaluation_verifies_within_the_self_play_timeout_unless_told_otherwise(tmp_path, capsys):
    """The reference verifies f(g()) with a 1 s timeout; the P3 evaluation defaults to self-play's 2 s (the
    sandbox starts in that time too), not the code benchmarks' 10 s. A g that needs 4 s is not a solution."""
    p3_dir = tmp_path / "p3"
    p3_dir.mkdir()
    puzzles = [
        {"name": "Quick:0", "sat": "def sat(n: int):\n    return n * n == 144 and n > 0", "ans_type": "int",
         "sol_header": "def sol():", "sol_docstring": "", "sol_bodies": ["    return 12"], "module": "t.py"},
        {"name": "Slow:0", "sat": "def sat(n: int):\n    return n == 7", "ans_type": "int",
         "sol_header": "def sol():", "sol_docstring": "",
         "sol_bodies": ["    import time\n    time.sleep(4)\n    return 7"], "module": "t.py"},
        {"name": "Train:0", "sat": "def sat(s: str):\n    return s == 'a'", "ans_type": "str",
         "sol_header": "def sol():", "sol_docstring": "", "sol_bodies": ["    return 'a'"], "module": "t.py"},
    ]
    (p3_dir / "puzzles.json").write_text(json.dumps(puzzles))
    (p3_dir / "split.json").write_text(json.dumps({"train": ["Train"], "test": ["Quick", "Slow"]}))
    summary = run([f"--benchmark=p3={p3_dir}", "--reference-solutions", f"--output={tmp_path / 'default'}"])
    assert "engine messages" not in capsys.readouterr().err  # reference solutions start no engine
    assert summary["sandbox_timeout_s"] == 2.0
    assert summary["solved"] == ["Quick:0"]
    statuses = {json.loads(line)["task_id"]: json.loads(line)["status"]
                for line in (tmp_path / "default" / "samples.jsonl").read_text().splitlines()}
    assert statuses == {"Quick:0": "passed", "Slow:0": "timeout"}
    summary = run([f"--benchmark=p3={p3_dir}", "--reference-solutions", "--sandbox-timeout=10",
                   f"--output={tmp_path / 'longer'}"])
    assert summary["sandbox_timeout_s"] == 10.0 and sorted(summary["solved"]) == ["Quick:0", "Slow:0"]
