"""The sandbox: what passes, what fails and why, and that limits hold."""
from __future__ import annotations

import os

import pytest

from transforms.execute.sandbox import SandboxLimits, run_program

FAST = SandboxLimits(timeout_s=3.0, cpu_s=3, memory_mb=512)


def test_a_program_that_runs_to_its_end_passes_and_keeps_its_output():
    result = run_program("assert sum([1, 2]) == 3\nprint('ok')", FAST)
    assert result.passed and result.reason == "" and result.stdout == "ok\n" and result.returncode == 0


@pytest.mark.parametrize("source, reason", [
    ("assert 1 == 2", "AssertionError"),
    ("raise ValueError('bad input')", "ValueError: bad input"),
    ("def f(:\n  pass", "SyntaxError"),
])
def test_a_failing_program_fails_with_its_exception(source, reason):
    result = run_program(source, FAST)
    assert result.status == "failed" and reason in result.reason


@pytest.mark.parametrize("source", ["import sys\nsys.exit(0)\nassert False", "import os\nos._exit(0)\nassert False"])
def test_exiting_half_way_with_status_0_is_not_a_pass(source):
    result = run_program(source, FAST)
    assert result.status == "failed"


def test_a_main_block_in_generated_code_does_not_run():
    assert run_program("if __name__ == '__main__':\n    raise SystemExit(1)\n", FAST).passed


def test_an_endless_loop_times_out_and_is_killed():
    result = run_program("while True:\n    pass", SandboxLimits(timeout_s=1.5, cpu_s=10))
    assert result.status == "timeout" and 1.4 < result.duration_s < 5


def test_cpu_time_is_limited_even_without_the_wall_clock():
    result = run_program("while True:\n    pass", SandboxLimits(timeout_s=30, cpu_s=1))
    assert result.status == "failed" and "SIGXCPU" in result.reason and result.duration_s < 10


def test_memory_is_limited():
    result = run_program("x = bytearray(2 * 1024 ** 3)", FAST)
    assert result.status == "failed" and "MemoryError" in result.reason


def test_output_is_capped_by_the_file_size_limit():
    limits = SandboxLimits(timeout_s=10, cpu_s=10, file_size_mb=1, output_tail_chars=100)
    result = run_program("while True:\n    print('x' * 1000)", limits)
    assert result.status == "failed" and "File too large" in result.reason
    assert len(result.stdout) <= 100


def test_destructive_calls_are_refused(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("data")
    for source in (f"import os\nos.remove({str(victim)!r})", f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
                   "import subprocess\nsubprocess.run(['true'])", "import os\nos.system('true')",
                   "import socket\nsocket.create_connection(('127.0.0.1', 80))", "import os\nos.fork()"):
        result = run_program(source, FAST)
        assert result.status == "failed" and "disabled in the sandbox" in result.reason, source
    assert victim.read_text() == "data"


def test_the_program_runs_in_its_own_empty_directory_with_a_minimal_environment():
    source = "import os\nprint(sorted(os.listdir('.')))\nprint('SECRET' in os.environ)"
    os.environ["SECRET"] = "1"
    try:
        result = run_program(source, FAST)
    finally:
        del os.environ["SECRET"]
    lines = result.stdout.splitlines()
    assert result.passed and lines[1] == "False"
    assert set(eval(lines[0])) <= {"program.py", "done", "stdout", "stderr"}


def test_common_libraries_import():
    assert run_program("import numpy, math, collections, itertools, re, heapq, functools\n"
                       "assert numpy.arange(4).sum() == 6", SandboxLimits(timeout_s=20, cpu_s=20)).passed


def test_invalid_limits_are_rejected():
    with pytest.raises(ValueError):
        SandboxLimits(timeout_s=0)
