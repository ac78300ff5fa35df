"""The drivers' steps (beam_pipelines/steps.py): a finished step is skipped only when this run asks for the same
step, a step whose upstream ran again is not done, the per-step lock, signals reaching the step's processes, and
the drivers' early checks. Steps here are tiny `python -c` commands; nothing starts an engine."""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beam_pipelines import steps
from beam_pipelines.steps import lock_path, marker_path, run_step, step_lock
from tests.beam_pipelines.tiny_p3 import TINY_P3
from tests.conftest import REPO


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
    assert "- --problem-limit 2" in message
    assert "new --output" in message and f"delete {done.parent}" in message
    assert done.read_text() == "smoke"  # neither skipped as done nor run over the smoke run's outputs
    capsys.readouterr()
    run_step("test", "evaluate", _writer(done, "smoke", "--problem-limit", "2"), tmp_path / "eval.log", done)
    assert "already done" in capsys.readouterr().err  # the same step still counts as done


def test_a_changed_value_is_named_by_its_option(tmp_path):
    """The probe's message: a re-run with --limit 9 showed `- 8` / `+ 9`, not which option changed."""
    done = tmp_path / "data" / "manifest.json"
    done.parent.mkdir()
    run_step("test", "generate", _writer(done, "{}", "--limit", "8", "--num-candidates=4", "--seed", "1"),
             tmp_path / "generate.log", done)
    with pytest.raises(SystemExit) as err:
        run_step("test", "generate", _writer(done, "{}", "--limit", "9", "--num-candidates=2", "--seed", "1"),
                 tmp_path / "generate.log", done)
    lines = [line.strip() for line in str(err.value).splitlines()]
    assert "--limit 8 -> --limit 9" in lines and "--num-candidates=4 -> --num-candidates=2" in lines
    assert "- 8" not in lines and "+ 9" not in lines and not any("--seed" in line for line in lines)


@pytest.mark.parametrize("before, now, expected", [
    (["--limit=8"], ["--limit", "9"], ["--limit=8 -> --limit 9"]),
    (["--set", "a=1", "--set", "b=2"], ["--set", "a=1", "--set", "b=3"], ["--set b=2 -> --set b=3"]),
    (["--no-dedup", "--k", "1"], ["--k", "1", "--extra", "x y"], ["- --no-dedup", "+ --extra 'x y'"]),
    (["--temperature", "-1"], ["--temperature", "0.5"], ["--temperature -1 -> --temperature 0.5"]),
    (["-m", "a.b", "--x"], ["-m", "a.c", "--x"], ["-m a.b -> -m a.c"]),
])
def test_command_differences_pair_each_flag_with_its_value(before, now, expected):
    assert steps.command_differences(["<runner>", *before], ["<runner>", *now]) == expected


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


def test_a_long_step_says_how_long_it_has_run_and_what_its_log_said_last(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(steps, "HEARTBEAT_S", 0.5)
    done, log = tmp_path / "summary.json", tmp_path / "step.log"
    job = ("import sys, time\nprint('generate 3/65 answered, 120 tokens/s', flush=True)\ntime.sleep(1.8)\n"
           f"open({str(done)!r}, 'w').write('{{}}')\n")
    run_step("test", "evaluate", [sys.executable, "-c", job], log, done)
    beats = [line for line in capsys.readouterr().err.splitlines() if "running for" in line]
    assert len(beats) >= 2, beats
    assert all(line.startswith("[test] evaluate: running for 0m0") for line in beats), beats
    assert beats[-1].endswith("; log: generate 3/65 answered, 120 tokens/s"), beats


def test_the_last_log_line_skips_blank_lines_and_is_cut(tmp_path):
    log = tmp_path / "step.log"
    assert steps.last_log_line(log) == ""  # no log yet
    log.write_text("first\n" + "x" * 500 + "\r progress 10%\r progress 20%\n\n  \n")
    assert steps.last_log_line(log) == "progress 20%"
    log.write_text("y" * 500 + "\n")
    assert steps.last_log_line(log, limit=20) == "y" * 17 + "..."


# ------------------------------------------------------------------------------------ lock and signals

def test_a_step_whose_lock_is_held_refuses_to_run(tmp_path):
    done, log = tmp_path / "summary.json", tmp_path / "step.log"
    with step_lock(lock_path(log), "other", "step"):
        with pytest.raises(SystemExit, match=f"another driver is running this step \\(pid {os.getpid()} on"):
            run_step("test", "step", _writer(done, "x"), log, done)
    assert not done.exists()
    run_step("test", "step", _writer(done, "x"), log, done)  # free again once released
    assert done.read_text() == "x" and not lock_path(log).exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, capsys):
    done, log = tmp_path / "summary.json", tmp_path / "step.log"
    pid = _dead_pid()
    lock_path(log).write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": "earlier"}))
    run_step("test", "step", _writer(done, "x"), log, done)
    assert done.read_text() == "x" and f"stale lock of pid {pid}" in capsys.readouterr().err


def test_a_lock_of_another_host_is_refused(tmp_path):
    done, log = tmp_path / "summary.json", tmp_path / "step.log"
    lock_path(log).write_text(json.dumps({"host": "elsewhere.example", "pid": 1, "started": "earlier"}))
    with pytest.raises(SystemExit, match="another machine"):
        run_step("test", "step", _writer(done, "x"), log, done)
    assert not done.exists()


DRIVER = """
import sys
from pathlib import Path
from beam_pipelines.steps import run_step
d = Path(sys.argv[1])
child = "import os, time; open({!r}, 'w').write(str(os.getpid())); time.sleep(60)".format(str(d / "child.pid"))
run_step("test", "long step", [sys.executable, "-c", child], d / "step.log", d / "done.json")
"""


def _start_driver(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], cwd=REPO, stderr=subprocess.PIPE,
                              text=True)
    pid_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline and driver.poll() is None, driver.stderr.read() if driver.poll() else ""
        time.sleep(0.05)
    return driver, int(pid_file.read_text())


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_driver_stops_its_step(tmp_path, signum):
    driver, child = _start_driver(tmp_path)
    try:
        driver.send_signal(signum)
        assert driver.wait(timeout=20) == 128 + signum
        assert _gone(child), "the step's process outlived its driver"
        assert "stopped by" in driver.stderr.read()
        assert not lock_path(tmp_path / "step.log").exists()
    finally:
        driver.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_a_step_left_running_by_a_killed_driver_keeps_its_lock(tmp_path):
    driver, child = _start_driver(tmp_path)
    try:
        driver.kill()  # SIGKILL: nothing can be forwarded; the step runs on
        driver.wait(timeout=20)
        with pytest.raises(SystemExit, match="another driver is running this step"):
            run_step("test", "long step", [sys.executable, "-c", "pass"], tmp_path / "step.log",
                     tmp_path / "done.json")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    assert _gone(child)
    run_step("test", "long step", _writer(tmp_path / "done.json", "{}"), tmp_path / "step.log",
             tmp_path / "done.json")  # the lock of the dead step is taken over


# ------------------------------------------------------------------------------------- the fine-tune's resume

def test_a_fine_tune_that_never_reached_a_checkpoint_starts_afresh(tmp_path):
    train = tmp_path / "train"
    assert steps.train_resume_arguments("test", train) == []
    (train / "stage-0-generated").mkdir(parents=True)
    (train / "config.json").write_text("{}")
    (train / "stage-0-generated" / "metrics.jsonl").write_text("")
    assert steps.train_resume_arguments("test", train) == []
    assert not train.exists()


@pytest.mark.parametrize("made", ["stage-0-generated/checkpoint-5/COMPLETE", "stage-0-generated/COMPLETE.json",
                                  "stage-0-generated/checkpoint-5/model.safetensors"])
def test_a_fine_tune_with_something_to_continue_from_resumes(tmp_path, made):
    train = tmp_path / "train"
    (train / made).parent.mkdir(parents=True)
    (train / made).write_text("")
    (train / "config.json").write_text("{}")
    assert steps.train_resume_arguments("test", train) == ["--resume"]
    assert (train / made).exists()


# ----------------------------------------------------------------------------- the global batch, up front

@pytest.mark.parametrize("launcher, processes", [
    ("", 1), ("torchrun", 1), ("torchrun --nproc_per_node 8", 8), ("torchrun --nproc-per-node=4 --nnodes 2", 8),
    ("torchrun --nnodes=2 --nproc_per_node=2", 4), ("torchrun --nproc_per_node gpu", None),
    ("python -m torch.distributed.run --nproc_per_node 3", 3),
])
def test_the_launchers_process_count(launcher, processes):
    assert steps.launcher_processes(launcher) == processes


SELF_PLAY_CONFIG = REPO / "training" / "configs" / "self_play.yaml"


def test_a_global_batch_the_launcher_cannot_split_fails_before_any_step(tmp_path):
    with pytest.raises(SystemExit) as err:
        steps.check_train_batch("test", SELF_PLAY_CONFIG, [], "", "torchrun --nproc_per_node 8")
    message = str(err.value)
    assert "global_batch_size 4" in message and "per_device_batch_size 4 x 8 processes" in message
    assert "--set global_batch_size=32" in message
    steps.check_train_batch("test", SELF_PLAY_CONFIG, [], "", "")
    steps.check_train_batch("test", SELF_PLAY_CONFIG, [], "--set per_device_batch_size=1",
                            "torchrun --nproc_per_node 4")
    with pytest.raises(SystemExit, match="does not load"):
        steps.check_train_batch("test", SELF_PLAY_CONFIG, [], "--set global_batch_sise=8", "")
    # per_device_batch_size: auto takes a divisor of each process's share: only the process count must divide
    steps.check_train_batch("test", SELF_PLAY_CONFIG, [], "--set per_device_batch_size=auto",
                            "torchrun --nproc_per_node 4")
    with pytest.raises(SystemExit) as err:
        steps.check_train_batch("test", SELF_PLAY_CONFIG, [], "--set per_device_batch_size=auto",
                                "torchrun --nproc_per_node 3")
    assert "global_batch_size 4 is not a multiple of 3 processes" in str(err.value)


def test_the_self_play_loop_refuses_the_batch_before_its_first_step(tmp_path, monkeypatch):
    from beam_pipelines import self_play_loop

    ran = []
    monkeypatch.setattr(self_play_loop, "run_step", lambda *a, **k: ran.append(a))
    with pytest.raises(SystemExit, match="would fail at its start"):
        self_play_loop.main([f"--output={tmp_path / 'loop'}", f"--p3-dir={TINY_P3}",
                             "--train-launcher=torchrun --nproc_per_node 8"])
    assert ran == [] and not (tmp_path / "loop").exists()


def test_the_paper_driver_refuses_the_batch_before_its_first_step(tmp_path, monkeypatch, capsys):
    from beam_pipelines import paper

    ran = []
    monkeypatch.setattr(paper, "run_step", lambda *a, **k: ran.append(a))
    with pytest.raises(SystemExit, match="would fail at its start") as refused:
        paper.main([f"--output={tmp_path / 'paper'}", "--train-launcher=torchrun --nproc_per_node 3"])
    assert ran == []
    # a configuration error: exit 2, as the jobs' (it was 1, as for a failed step), the message said once
    assert refused.value.code == 2 and capsys.readouterr().err.count("would fail at its start") == 1


def test_a_driver_refusal_is_exit_2_with_its_message_from_the_command_line(tmp_path):
    out = tmp_path / "paper"
    done = subprocess.run([sys.executable, "-m", "beam_pipelines.paper", f"--output={out}",
                           "--train-args=--set learning_rat=1"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert "[paper] the training configuration does not load" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------------------------------- local outputs only

@pytest.mark.parametrize("module, argv", [("beam_pipelines.paper", []),
                                          ("beam_pipelines.self_play_loop", [f"--p3-dir={TINY_P3}"])])
def test_a_driver_refuses_a_url_output(module, argv, capsys):
    import importlib

    with pytest.raises(SystemExit) as err:
        importlib.import_module(module).parse_args(["--output=gs://b/x", *argv])
    assert err.value.code == 2 and "must be a local path" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ atomic summaries

def test_write_text_atomic_replaces_the_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    path.write_text("old")
    os.link(path, tmp_path / "seen-by-a-reader")
    steps.write_text_atomic(path, "new")
    assert path.read_text() == "new" and (tmp_path / "seen-by-a-reader").read_text() == "old"

    def fail(_fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        steps.write_text_atomic(path, "half")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["seen-by-a-reader",
                                                                                       "summary.json"]


@pytest.mark.parametrize("driver", ["paper", "self_play_loop"])
def test_a_drivers_bad_argument_is_two_lines_and_exit_2(driver, capsys):
    import importlib

    module = importlib.import_module(f"beam_pipelines.{driver}")
    with pytest.raises(SystemExit) as stopped:
        module.parse_args(["--output=x", f"--p3-dir={TINY_P3}", "--rounds=-1"] if driver == "self_play_loop"
                          else ["--output=x", "--benchmark=nosuch"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(lines) == 2, lines  # argparse printed its whole usage block first
    assert lines[0].startswith("inverse-instruct ") and ": error: " in lines[0] and "--help" in lines[1]
