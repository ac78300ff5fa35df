"""The drivers' steps (beam_pipelines/steps.py): a finished step is skipped only when this run asks for the same
step, a step whose upstream ran again is not done, the per-step lock, signals reaching the step's processes, and
the drivers' early checks. Steps here are tiny `python -c` commands; nothing starts an engine."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from beam_pipelines.steps import run_step


def _writer(done: Path, text: str, *extra: str) -> list[str]:
    """A step that writes ``text`` to ``done`` (``extra``: arguments it ignores, as a job's options)."""
    return [sys.executable, "-c", f"import sys; open({str(done)!r}, 'w').write({text!r})", *extra]


# ----------------------------------------------------------------------------------------------- messages

def test_a_job_that_exits_0_without_its_done_file_names_the_file(tmp_path):
    done = tmp_path / "summary.json"
    with pytest.raises(SystemExit) as err:
        run_step("test", "evaluate", [sys.executable, "-c", "pass"], tmp_path / "step.log", done)
    message = str(err.value)
    assert str(done) in message and "exited 0" in message and "exit 0)" not in message
