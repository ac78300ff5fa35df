"""The drivers' steps (beam_pipelines/steps.py): a finished step is skipped only when this run asks for the same
step, a step whose upstream ran again is not done, the per-step lock, signals reaching the step's processes, and
the drivers' early checks. Steps here are tiny `python -c` commands; nothing starts an engine."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from beam_pipelines.steps import marker_path, run_step


def _writer(done: Path, text: str, *extra: str) -> list[str]:
    """A step that writes ``text`` to ``done`` (``extra``: arguments it ignores, as a job's options)."""
    return [sys.executable, "-c", f"import sys; open({str(done)!r}, 'w').write({text!r})", *extra]


# ----------------------------------------------------------------------------- the command and the upstream

def test_a_finished_step_asked_with_other_arguments_is_refused_not_skipped(tmp_path, capsys):
    done = tmp_path / "eval" / "summary.json"
    done.parent.mkdir()
    run_step("test", "evaluate", _writer(done, "smoke", "--problem-limit", "2"), tmp_path / "eval.log", done)
    with pytest.raises(SystemExit) as err:
        run_step("test", "evaluate", _writer(done, "full"), tmp_path / "eval.log", done)
    message = str(err.value)
    assert "- --problem-limit" in message and "- 2" in message
    assert "new --output" in message and f"delete {done.parent}" in message
    assert done.read_text() == "smoke"  # neither skipped as done nor run over the smoke run's outputs
    capsys.readouterr()
    run_step("test", "evaluate", _writer(done, "smoke", "--problem-limit", "2"), tmp_path / "eval.log", done)
    assert "already done" in capsys.readouterr().err  # the same step still counts as done


def test_the_interpreter_launcher_and_resume_do_not_make_another_step(tmp_path, capsys):
    done = tmp_path / "train" / "COMPLETE.json"
    done.parent.mkdir()
    first = _writer(done, "{}", "--config", "c.yaml")
    run_step("test", "fine-tune", first, tmp_path / "train.log", done)
    later = ["torchrun", "--nproc_per_node", "8", *first[1:], "--resume"]
    run_step("test", "fine-tune", later, tmp_path / "train.log", done, prefix=3)
    assert "already done" in capsys.readouterr().err


def test_a_step_whose_upstream_ran_again_is_not_done(tmp_path):
    data, result = tmp_path / "data" / "manifest.json", tmp_path / "eval" / "summary.json"
    data.parent.mkdir()
    result.parent.mkdir()
    run_step("test", "generate", _writer(data, "a"), tmp_path / "generate.log", data)
    run_step("test", "evaluate", _writer(result, "from a"), tmp_path / "eval.log", result, upstream=[data])
    # The user deletes the data step's directory and runs it again with the same command: other data.
    for path in (data, marker_path(data)):
        path.unlink()
    run_step("test", "generate", _writer(data, "a"), tmp_path / "generate.log", data)
    with pytest.raises(SystemExit, match=f"the step that wrote {data} ran again"):
        run_step("test", "evaluate", _writer(result, "from a"), tmp_path / "eval.log", result, upstream=[data])
    assert result.read_text() == "from a"


def test_an_older_plain_text_marker_is_compared_too(tmp_path, capsys):
    done = tmp_path / "summary.json"
    command = _writer(done, "x")
    done.write_text("x")
    marker_path(done).write_text(shlex.join(command) + "\n")  # as the driver wrote it before the JSON markers
    run_step("test", "step", command, tmp_path / "step.log", done)
    assert "already done" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="its command differs"):
        run_step("test", "step", _writer(done, "y"), tmp_path / "step.log", done)


# ----------------------------------------------------------------------------------------------- messages

def test_a_job_that_exits_0_without_its_done_file_names_the_file(tmp_path):
    done = tmp_path / "summary.json"
    with pytest.raises(SystemExit) as err:
        run_step("test", "evaluate", [sys.executable, "-c", "pass"], tmp_path / "step.log", done)
    message = str(err.value)
    assert str(done) in message and "exited 0" in message and "exit 0)" not in message
