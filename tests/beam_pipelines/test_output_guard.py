"""What ``guard_output`` refuses before anything is written: an ``--output`` that is empty or a file system's root,
and a directory of earlier outputs whose run.json is missing or unreadable; what a re-run may change (where its
temporary files spill); and the Ctrl-C note, which promises reuse only of a cache that holds answers."""
from __future__ import annotations

import json

import pytest

from beam_pipelines.inverse_instruct import JOB
from beam_pipelines.launch import (
    RUN_FILE,
    JobConfigError,
    RunConflictError,
    check_job_command,
    interrupt_message,
    job_main,
    pipeline_options,
)


def _options(out, *argv):
    return pipeline_options([f"--output={out}", "--engine=fake", *argv], JOB)


@pytest.fixture
def no_writes(monkeypatch):
    """Fails the test if the guard would write anything (run.json): under / it would really land there."""
    import transforms.io.filesystems as filesystems

    def refuse(path, write_body):
        raise AssertionError(f"wrote {path}")

    monkeypatch.setattr(filesystems, "atomic_write", refuse)


@pytest.mark.parametrize("output", ["", " ", "/", "//", "/.", "/tmp/..", "file:///", "gs://", "s3:///"])
def test_an_empty_or_root_output_is_refused_before_anything_is_written(output, no_writes):
    with pytest.raises(JobConfigError, match="--output"):
        _options(output, "--stages=extract")
    with pytest.raises(JobConfigError, match="--output"):  # a driver's check of a later step's command too
        check_job_command([f"--output={output}", "--engine=fake"], JOB)


def test_an_empty_output_ends_the_job_with_one_line_and_exit_code_2(no_writes, capsys):
    def run(argv):
        pipeline_options(argv, JOB)
        raise AssertionError("the job ran")

    assert job_main(["--output=", "--stages=extract", "--limit=3", "--quiet"], JOB, run) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("inverse-instruct generate: error: --output '' is empty") and "\n" not in err


def test_a_bucket_or_directory_of_its_own_is_accepted():
    from beam_pipelines.launch import check_output_location

    for output in ("gs://bucket", "gs://bucket/", "s3://bucket/runs/a", "runs/a", ".", "/tmp/x"):
        check_output_location(output)


def _finished_looking_run(out):
    """A run directory as a finished run leaves it (written here by hand): run.json, manifest, stage outputs."""
    _options(out, "--num-candidates=3")
    (out / "manifest.json").write_text('{"job": "generate"}\n')
    (out / "selected").mkdir()
    (out / "selected" / "part-00000.parquet").write_bytes(b"PAR1")


def test_outputs_without_their_run_json_are_refused(tmp_path):
    out = tmp_path / "copied"
    _finished_looking_run(out)
    (out / RUN_FILE).unlink()
    with pytest.raises(RunConflictError, match=f"holds earlier outputs but no {RUN_FILE}") as err:
        _options(out, "--stages=extract")
    assert "\n" not in str(err.value)
    assert not (out / RUN_FILE).exists()


@pytest.mark.parametrize("damaged", ['{"job": "generate", "argum', "[1, 2]", '{"arguments": 3}'])
def test_outputs_with_an_unreadable_run_json_are_refused_and_it_is_kept(tmp_path, damaged):
    out = tmp_path / "run"
    _finished_looking_run(out)
    (out / RUN_FILE).write_text(damaged)
    with pytest.raises(RunConflictError, match=f"holds earlier outputs but .*{RUN_FILE}"):
        _options(out, "--stages=extract")
    assert (out / RUN_FILE).read_text() == damaged


def test_a_run_that_wrote_only_run_json_and_logs_is_still_taken_over(tmp_path):
    out = tmp_path / "run"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "engine.log").write_text("started\n")
    (out / RUN_FILE).write_text("not json")  # damaged, but guarding nothing
    _options(out, "--stages=extract")
    assert json.loads((out / RUN_FILE).read_text())["arguments"]["stages"] == "extract"
    (out / RUN_FILE).unlink()  # and without one
    _options(out, "--stages=extract")
    assert (out / RUN_FILE).exists()


def test_a_rerun_may_say_where_its_temporary_files_spill(tmp_path):
    out = tmp_path / "run"
    _finished_looking_run(out)
    _options(out, "--num-candidates=3", f"--spill-dir={tmp_path / 'disk'}")
    _options(out, "--num-candidates=3", "--spill-dir=none")
    assert "spill_dir" not in json.loads((out / RUN_FILE).read_text())["arguments"]


def test_the_interrupt_note_promises_reuse_only_of_saved_answers(tmp_path):
    out = tmp_path / "run"
    argv = [f"--output={out}", "--engine=fake"]
    assert "No engine answer was saved yet" in interrupt_message(argv, JOB)
    (out / "cache").mkdir(parents=True)  # an empty cache directory holds no answer either
    assert "No engine answer was saved yet" in interrupt_message(argv, JOB)
    (out / "cache" / "part-0a.jsonl").write_text(json.dumps({"key": "k", "value": {"kind": "generate"}}) + "\n")
    note = interrupt_message(argv, JOB)
    assert f"already saved in {out}/cache are reused" in note and "saved yet" not in note
    elsewhere = tmp_path / "shared-cache"
    assert "No engine answer was saved yet" in interrupt_message([*argv, f"--inference-cache={elsewhere}"], JOB)
    assert "--no-cache" in interrupt_message([*argv, "--no-cache"], JOB)


def test_a_second_job_into_a_directory_a_running_job_writes_is_refused_and_report_says_it_runs(tmp_path, capsys):
    """Two jobs into one directory both ran (a user probe: two identical extract runs, both exit 0, outputs and
    cache mixed), and `report DIR` called a running job "stopped, e.g. killed", advising a re-run into it."""
    import os
    import subprocess
    import sys
    import time

    from beam_pipelines import report
    from beam_pipelines.inverse_instruct import main
    from tests.conftest import REPO

    out = tmp_path / "out"
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.py").write_text("def add(a, b):\n    return a + b\n")
    (out).mkdir()
    (out / "run.json").write_text(json.dumps({"job": "generate", "arguments": {}}))
    holder = subprocess.Popen(  # a job in the middle of its run: it holds the directory's lock
        [sys.executable, "-c", "import sys, time\nfrom beam_pipelines.launch import lock_output\n"
         f"lock_output({str(out)!r})\nprint('locked', flush=True)\ntime.sleep(60)\n"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        argv = [f"--output={out}", f"--source-tree={tree}", "--stages=extract", "--quiet"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{out} is being written by another job (pid {holder.pid})" in err, err
        assert report.main([str(out)]) == 2
        err = capsys.readouterr().err
        assert f"is being written by a running job (pid {holder.pid})" in err and "killed" not in err, err
    finally:
        holder.kill()
        holder.wait()
    started = time.monotonic()
    assert main(argv) == 0  # the lock went with its process
    assert time.monotonic() - started < 60 and (out / "snippets").is_dir()
    assert os.path.exists(out / "run.lock")
    assert main(argv) == 0  # the same process again: its own lock does not stop it


def test_the_stop_note_counts_the_answers_the_cache_holds(tmp_path, monkeypatch):
    """A stopped run's note and failure report said "generate 0/60" from the progress counters while its cache held
    4 answers streamed in mid-batch (a user probe): the note counts the cache's answers."""
    import beam_pipelines.launch as launch

    out = tmp_path / "run"
    (out / "cache").mkdir(parents=True)
    line = json.dumps({"key": "k", "value": {"kind": "generate"}}) + "\n"
    (out / "cache" / "part-0a.jsonl").write_text(line * 3)
    (out / "cache" / "part-0b.jsonl").write_text(line * 14)
    note = interrupt_message([f"--output={out}", "--engine=fake"], JOB)
    assert note.endswith("and only the rest is asked of the engine (17 saved)."), note
    monkeypatch.setattr(launch, "CACHE_COUNT_MAX_BYTES", 10)  # a cache too large to read at a stop: not counted
    note = interrupt_message([f"--output={out}", "--engine=fake"], JOB)
    assert note.endswith("and only the rest is asked of the engine."), note


def test_an_output_that_is_a_file_is_named_as_one(tmp_path, capsys):
    """It said `cannot write .../run.json: FileExistsError: [Errno 17] File exists` (a user probe)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert job_main([f"--output={afile}", "--stages=extract", "--quiet"], JOB, lambda argv: pipeline_options(
        argv, JOB)) == 2
    err = capsys.readouterr().err
    assert f"--output '{afile}' is a file, not a directory" in err, err
    assert afile.read_text() == "x"
