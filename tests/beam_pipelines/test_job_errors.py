"""A mistake in a job's arguments or inputs ends it with one line and exit code 2, before run.json and any work;
Ctrl-C ends it with a note on resuming and exit code 130; a bug keeps its traceback (``beam_pipelines.launch``)."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time

import apache_beam as beam
import pytest

from beam_pipelines.inverse_instruct import JOB, main, run
from beam_pipelines.launch import RUN_FILE, RunConflictError, job_main, pipeline_options
from runners.engines.cleanup import LIVE_ENGINES
from tests.conftest import REPO
from transforms.io.readers import CorpusConfigError

PROG = "inverse-instruct generate"


@pytest.fixture
def tree(tmp_path):
    """A source tree of two definitions: a whole job on it takes seconds."""
    root = tmp_path / "tree"
    root.mkdir()
    (root / "arith.py").write_text("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n")
    return root


def _corpus(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"instruction": "Add.", "response": "```python\ndef add(a, b):\n    return a + b\n```"})
                    + "\n")
    return path


@pytest.mark.parametrize("bad, wanted", [
    (["--input", "{tmp}/nothing-*.jsonl"], "no file matches"),
    (["--input", "{corpus}", "--response-column", "answer"], "column 'answer' is missing from the first record"),
    (["--source-tree", "{tmp}/no-such-dir"], "no-such-dir' does not exist"),
    (["--preset", "nosuch"], "unknown prompt preset 'nosuch'"),
    (["--num-candidates", "0"], "num_candidates (--num-candidates) must be >= 1"),
    (["--benchmark", "mbpp={tmp}/mbpp.jsonl"], "mbpp.jsonl does not exist"),
    (["--prompt-code", "reference"], "add --extraction-policy paper"),
    (["--limit", "0"], "argument --limit: must be at least 1"),
    (["--limit", "-3"], "argument --limit: must be at least 1"),
    (["--engine", "foo"], "argument --engine: invalid choice: 'foo'"),
    (["--preset", "{tmp}/bad.yaml"], "prompt preset '{tmp}/bad.yaml' is not valid YAML: while parsing a flow"),
    (["--preset", "{tmp}/bad.json"], "prompt preset '{tmp}/bad.json' is not valid JSON: Expecting"),
    (["--preset", "{tmp}/extends-bad.yaml"], "prompt preset '{tmp}/bad.yaml' is not valid YAML"),
    (["--preset", "nosuch", "--stages", "extract"], "unknown prompt preset 'nosuch'"),
    (["--shard-records", "0"], "--shard-records must be at least 1, got 0"),
    (["--shard-records", "-2"], "--shard-records must be at least 1, got -2"),
    (["--shard-mb", "-1"], "--shard-mb must be a positive number of MiB, got -1"),
    (["--shard-mb", "0"], "--shard-mb must be a positive number of MiB, got 0"),
    (["--shard-mb", "nan"], "--shard-mb must be a positive number of MiB, got nan"),
    (["--shard-mb", "inf"], "--shard-mb must be a positive number of MiB, got inf"),
    (["--repetition-penalty", "0"], "repetition_penalty (--repetition-penalty) must be > 0, got 0.0"),
    (["--repetition-penalty", "-1"], "repetition_penalty (--repetition-penalty) must be > 0, got -1.0"),
])
def test_a_configuration_mistake_is_one_line_exit_2_and_leaves_no_run_file(tmp_path, tree, capsys, bad, wanted):
    out = tmp_path / "out"
    (tmp_path / "bad.yaml").write_text("extends: [unclosed\n")
    (tmp_path / "bad.json").write_text("{\"extends\": \n")
    (tmp_path / "extends-bad.yaml").write_text("extends: bad.yaml\nname: x\n")
    wanted = wanted.format(tmp=tmp_path)
    bad = [arg.format(tmp=tmp_path, corpus=_corpus(tmp_path)) for arg in bad]
    code = main([f"--output={out}", "--engine=fake", f"--source-tree={tree}", "--num-candidates=2", "--quiet", *bad])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"{PROG}: error: ") and wanted in lines[0], err
    # argparse's own errors add where to look; never a traceback, nor argparse's usage of Beam's ~200 flags
    assert len(lines) == 1 or lines[1:] == [f"See `{PROG} --help` for the options of this job."], err
    assert not (out / RUN_FILE).exists()


@pytest.mark.parametrize("module, bad, wanted", [
    ("beam_pipelines.evaluate", ["--benchmark", "mbpp={tmp}/mbpp.jsonl"],
     "--benchmark mbpp: {tmp}/mbpp.jsonl does not exist"),
    ("beam_pipelines.evaluate", ["--samples-per-problem", "0"], "--samples-per-problem must be at least 1"),
    ("beam_pipelines.self_play", [], "--puzzle-preset paper builds its prompts from P3's training families"),
    ("beam_pipelines.self_play", ["--p3-dir", "{tmp}/p3"], "--p3-dir: {tmp}/p3 does not exist"),
])
def test_the_other_jobs_check_their_arguments_before_any_work(tmp_path, capsys, module, bad, wanted):
    import importlib

    job = importlib.import_module(module)
    out = tmp_path / "out"
    code = job.main([f"--output={out}", "--engine=fake", "--quiet", *(arg.format(tmp=tmp_path) for arg in bad)])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"{job.JOB.prog}: error: ") and wanted.format(tmp=tmp_path) in lines[0], err
    assert not (out / RUN_FILE).exists()


def test_help_starts_with_a_short_usage_line(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: {PROG} [options]\n") and "--limit" in text and "--runner" in text


def test_the_corrected_rerun_of_a_run_with_a_bad_input_runs_in_its_output(tmp_path, tree, capsys):
    out = tmp_path / "out"
    base = [f"--output={out}", "--stages=extract", "--quiet"]
    assert main([*base, f"--input={tmp_path / 'missing.jsonl'}"]) == 2
    assert "no file matches" in capsys.readouterr().err and not (out / RUN_FILE).exists()
    assert main([*base, f"--source-tree={tree}"]) == 0
    assert json.loads((out / RUN_FILE).read_text())["arguments"]["source_tree"] == str(tree)


def test_a_run_that_failed_before_writing_anything_is_replaced_by_the_next(tmp_path, tree, capsys):
    """A mistake only the pipeline's construction finds (a model that is not there): run.json is written by then,
    but the run wrote nothing else, so its corrected re-run may take the directory over."""
    out = tmp_path / "out"
    base = [f"--output={out}", f"--source-tree={tree}", "--engine=fake", "--quiet"]
    assert main([*base, f"--model={tmp_path / 'no-model'}", "--stages=generate"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"{PROG}: error: model path {str(tmp_path / 'no-model')!r} does not exist"
    assert (out / RUN_FILE).exists() and "Traceback" not in err
    assert main([*base, "--stages=extract"]) == 0
    assert json.loads((out / RUN_FILE).read_text())["arguments"]["stages"] == "extract"


def test_only_a_run_that_wrote_nothing_but_logs_is_replaced(tmp_path):
    out = tmp_path / "out"

    def options(*argv):
        return pipeline_options([f"--output={out}", "--engine=fake", *argv], JOB)

    options("--num-candidates=3")
    (out / "logs").mkdir()
    (out / "logs" / "engine.log").write_text("starting\n")
    options("--num-candidates=4")  # the first run wrote no output: replaced
    assert json.loads((out / RUN_FILE).read_text())["arguments"]["num_candidates"] == 4
    (out / "cache").mkdir()
    (out / "cache" / "part-0.jsonl").write_text("{}\n")  # now it has answers of the engine to mix
    with pytest.raises(RunConflictError, match="num_candidates: 4 -> 5"):
        options("--num-candidates=5")


def _pipeline_raising(error: BaseException):
    """A job's ``run`` whose pipeline raises ``error`` in a step, as Beam re-raises it."""
    def fail(_):
        raise error

    def run_job(argv):
        with beam.Pipeline(runner="DirectRunner") as p:
            _ = p | beam.Create([1]) | "Step" >> beam.Map(fail)
        return {"balanced": True}

    return run_job


def test_a_configuration_error_found_in_a_step_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, capsys,
                                                                                           caplog):
    argv = [f"--output={tmp_path}", "--quiet"]
    code = job_main(argv, JOB, _pipeline_raising(CorpusConfigError("column 'x' is missing from b.parquet")))
    assert code == 2
    assert capsys.readouterr().err == f"{PROG}: error: column 'x' is missing from b.parquet [while running 'Step']\n"
    assert not [r for r in caplog.records if r.name == "apache_beam.runners.common"]  # Beam's traceback: dropped
    with pytest.raises(ValueError, match="a bug"):
        job_main(argv, JOB, _pipeline_raising(ValueError("a bug")))
    with pytest.raises(RuntimeError, match="FileNotFoundError"):  # Beam's wrapper of a missing file: no user error
        job_main(argv, JOB, _pipeline_raising(FileNotFoundError(2, "No such file", "x.jsonl")))


def test_an_interrupt_says_how_to_resume_and_exits_130(tmp_path, capsys, caplog):
    def interrupted(argv):
        raise KeyboardInterrupt

    out = tmp_path / "out"
    (out / "cache").mkdir(parents=True)
    (out / "cache" / "part-0.jsonl").write_text('{"key": "k", "value": {"kind": "generate"}}\n')
    for extra, wanted in (([], f"the engine answers already saved in {out}/cache are reused"),
                          (["--inference-cache=gs://bucket/cache"], "saved (if any) in gs://bucket/cache are reused"),
                          (["--no-cache"], "Nothing was cached (--no-cache): re-running the command starts over")):
        try:
            code = job_main([f"--output={out}", *extra], JOB, interrupted)
        except KeyboardInterrupt:
            pytest.fail("the interrupt escaped job_main")
        err = capsys.readouterr().err
        assert code == 130 and err.startswith(f"{PROG}: interrupted.") and wanted in err, err
    # Ctrl-C inside a step reaches the launcher as Beam's RuntimeError("KeyboardInterrupt [while running ...]")
    assert job_main([f"--output={out}"], JOB, _pipeline_raising(KeyboardInterrupt())) == 130
    assert "Re-run the same command to resume" in capsys.readouterr().err
    assert not [r for r in caplog.records if r.name == "apache_beam.runners.common"]


def test_an_interrupt_closes_the_live_engines(tmp_path, monkeypatch):
    monkeypatch.setattr(logging, "raiseExceptions", logging.raiseExceptions)  # close_all_engines turns it off

    class Engine:
        closed = False

        def close(self):
            self.closed = True
            LIVE_ENGINES.discard(self)

    engine = Engine()
    LIVE_ENGINES.add(engine)

    def interrupted(argv):
        raise KeyboardInterrupt

    try:
        assert job_main([f"--output={tmp_path}"], JOB, interrupted) == 130
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped job_main")
    assert engine.closed


@pytest.mark.parametrize("signal_name, code, said", [
    ("SIGINT", 130, "interrupted."),  # a terminal's Ctrl-C
    # `kill PID` (a supervisor's stop) used to leave the job running until its engine batch ended, then exit with
    # no note; now it is a stop with the resume note and exit 128 + 15.
    ("SIGTERM", 143, "terminated (SIGTERM)."),
])
def test_a_stop_signal_in_a_running_job_prints_a_note_not_a_traceback(tmp_path, signal_name, code, said):
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        import apache_beam as beam
        from beam_pipelines.inverse_instruct import JOB
        from beam_pipelines.launch import job_main

        def step(x):
            os.kill(os.getpid(), signal.{signal_name})
            time.sleep(60)  # the signal comes first
            return x

        def run(argv):
            with beam.Pipeline(runner="DirectRunner") as p:
                _ = p | beam.Create([1]) | "Judge" >> beam.Map(step)
            return {{"balanced": True}}

        sys.exit(job_main(sys.argv[1:], JOB, run))
    """)
    proc = subprocess.run([sys.executable, "-c", script, f"--output={tmp_path}"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr
    # Nothing reached the engine, so the note promises no reuse (tests/beam_pipelines/test_output_guard.py).
    assert f"{PROG}: {said} No engine answer was saved yet" in proc.stderr


def test_run_still_raises_for_callers_that_are_not_the_command(tmp_path):
    """``run`` (tests, notebooks) raises the configuration error itself; only ``job_main`` turns it into a line."""
    from beam_pipelines.launch import JobConfigError

    with pytest.raises(JobConfigError, match="num_candidates"):
        run([f"--output={tmp_path}", "--num-candidates=0"])


def test_a_run_whose_pipeline_fails_leaves_a_report_of_what_it_did_and_a_rerun_replaces_it(tmp_path, tree,
                                                                                          monkeypatch, capsys):
    """A long run that dies (the engine, a worker) used to leave no report: only a traceback. Now failed.json and
    report.html say each stage's counts when it stopped and how to resume; `report DIR` prints them (exit 1); the
    next run's own report replaces them."""
    from beam_pipelines import report as report_command
    from runners.engines.fake_engine import FakeEngine
    from transforms.stats.report import FAILED_NAME

    def engine_dies(self, *args, **kwargs):
        raise RuntimeError("the engine died (out of memory)")

    out = tmp_path / "out"
    argv = [f"--output={out}", f"--source-tree={tree}", "--engine=fake", "--quiet", "--num-candidates=2"]
    with monkeypatch.context() as patch:
        patch.setattr(FakeEngine, "generate", engine_dies)
        with pytest.raises(Exception, match="the engine died"):
            run(argv)
    failed = json.loads((out / FAILED_NAME).read_text())
    assert failed["status"] == "failed" and "the engine died (out of memory)" in failed["error"]
    assert failed["job"] == "generate"
    stages = {s["stage"]: s for s in failed["stages"]}
    assert stages, failed
    assert stages["extract"]["in"] == 2 and stages["extract"]["out"] == 2  # the tree's two definitions
    page = (out / "report.html").read_text()
    assert "run failed" in page and "the engine died" in page and "<td>extract</td>" in page
    assert "Fix the cause of the error first. No engine answer was saved yet" in page  # the engine never answered
    capsys.readouterr()
    assert report_command.main([str(out)]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("failed: RuntimeError") and "extract: in=2 out=2" in printed

    assert run(argv)["balanced"]  # the same command again, now succeeding
    assert not (out / FAILED_NAME).exists()
    assert "run failed" not in (out / "report.html").read_text()


def test_ctrl_c_in_a_step_is_reported_as_a_stopped_run_with_the_counts_so_far(tmp_path, capsys):
    """Beam re-raises a KeyboardInterrupt of a step as RuntimeError("KeyboardInterrupt [while running ...]")."""
    from beam_pipelines.launch import report_failure
    from transforms.stats.report import FAILED_NAME

    progress = tmp_path / "progress"
    progress.mkdir()
    (progress / "host-1.json").write_text(json.dumps({"extract.in": 5, "extract.out": 3, "extract.rejected.x": 2}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")  # written by the pipeline just before the stop
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            wrapper = RuntimeError("KeyboardInterrupt [while running 'Judge']")
            wrapper._tagged_with_step = True  # as Beam marks its copy
            raise wrapper  # noqa: B904 (Beam raises its copy while handling the original: __context__)
    except RuntimeError as wrapped:
        report_failure(str(out), wrapped, str(progress), ["extract"], 12.3)
    failed = json.loads((out / FAILED_NAME).read_text())
    assert failed["status"] == "stopped" and failed["wall_seconds"] == 12.3
    assert failed["error"].startswith("stopped by Ctrl-C (SIGINT)")
    assert not (out / "manifest.json").exists()  # a stopped run is not a finished one
    assert failed["stages"] == [{"stage": "extract", "in": 5, "out": 3, "rejected": 2}]
    assert "run stopped" in (out / "report.html").read_text()
    assert f"what the run did before it stopped: {out}/report.html" in capsys.readouterr().err


def test_report_on_a_run_killed_outright_says_what_a_resume_would_reuse(tmp_path, capsys):
    """SIGKILL leaves no failure report: `report DIR` used to say only that there is no manifest."""
    from beam_pipelines import report as report_command

    out = tmp_path / "out"
    (out / "cache").mkdir(parents=True)
    (out / RUN_FILE).write_text(json.dumps({"job": "generate", "arguments": {}}))
    (out / "cache" / "part-0.jsonl").write_text('{"key": "a"}\n{"key": "b"}\n{"key": "c"}\n')
    assert report_command.main([str(out)]) == 2
    err = capsys.readouterr().err
    assert "unfinished `generate` run" in err and f"3 engine answer(s) are saved in {out}/cache" in err, err
    (out / "cache" / "part-0.jsonl").unlink()
    assert report_command.main([str(out)]) == 2
    assert "no engine answer was saved" in capsys.readouterr().err
    (out / RUN_FILE).unlink()
    assert report_command.main([str(out)]) == 2
    assert "unfinished" not in capsys.readouterr().err  # a directory no run started in


def test_the_failure_reports_resume_advice_says_what_a_rerun_reuses(tmp_path):
    from beam_pipelines.launch import resume_advice

    out = tmp_path / "out"
    (out / "cache").mkdir(parents=True)

    def advice(*argv, stopped=True):
        return resume_advice(pipeline_options([f"--output={out}", *argv], JOB), str(out), stopped)

    assert advice("--no-cache") == "Nothing was cached (--no-cache): re-running the command starts over."
    assert advice().startswith("No engine answer was saved yet")
    (out / "cache" / "part-0.jsonl").write_text('{"key": "k"}\n')
    assert advice().startswith(f"Re-run the same command to resume: the engine answers already saved in {out}/cache")
    assert advice(stopped=False).startswith("Fix the cause of the error first. Re-run the same command")


def test_the_process_exits_even_when_a_thread_of_the_runner_never_ends():
    """Seen once after a SIGTERM: Beam's state sampler thread was never stopped, and exit_process joined it
    forever after the job had printed its note."""
    script = textwrap.dedent("""
        import threading, time
        from beam_pipelines import cli
        cli.THREAD_JOIN_SECONDS = 1.0
        threading.Thread(target=time.sleep, args=(600,), daemon=False).start()
        cli.exit_process(143)
    """)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143 and time.monotonic() - started < 60, proc.stderr


def test_an_engine_that_fails_to_start_is_one_error_line_exit_1_with_its_traceback_in_failed_json(
        tmp_path, tree, monkeypatch, capsys):
    """The engine server's start failure used to print its traceback four times (Beam's log of the step, the step's
    error, and Beam's copy of it, each with the server's traceback inside): 316 lines, even with --quiet. Now: one
    error line ending with the engine's own error, exit 1, and the engine's traceback in failed.json and the page."""
    import runners.engines as engines
    from runners.engines.server import ServedEngine
    from transforms.stats.report import FAILED_NAME

    # The server hosts vllm and fake engines only: asked for another, it fails to start (as vLLM does on a bad
    # setting), after the pipeline has begun.
    monkeypatch.setattr(engines, "build_engine", lambda config: ServedEngine(config))
    out = tmp_path / "out"
    code = main([f"--output={out}", f"--source-tree={tree}", "--engine=transformers", "--quiet",
                 "--num-candidates=2"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and "File \"" not in err, err
    errors = [line for line in err.splitlines() if line.startswith(f"{PROG}: error: ")]
    assert len(errors) == 1, err
    assert errors[0].endswith("the transformers engine failed to start: ValueError: the engine server runs vllm or "
                              "fake engines, not 'transformers'"), err
    assert "failed.json" in err
    failed = json.loads((out / FAILED_NAME).read_text())
    assert failed["status"] == "failed" and "runs vllm or fake engines" in failed["error"]
    assert failed["engine_traceback"].startswith("Traceback (most recent call last):")
    assert "runners/engines/server.py" in failed["engine_traceback"]
    assert "The engine's traceback (from its own process)" in (out / "report.html").read_text()


def test_an_engine_failure_keeps_its_traceback_with_verbose(tmp_path, tree, monkeypatch, capsys):
    import runners.engines as engines
    from runners.engines.server import ServedEngine

    monkeypatch.setattr(engines, "build_engine", lambda config: ServedEngine(config))
    code = main([f"--output={tmp_path / 'out'}", f"--source-tree={tree}", "--engine=transformers", "--quiet",
                 "--verbose", "--num-candidates=2"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback (most recent call last)" in err and "runners/engines/server.py" in err


def test_a_stop_that_arrives_as_the_finished_run_prints_its_summary_says_nothing_is_left_to_resume(tmp_path, capsys):
    """A SIGTERM in the run's last second (its summary printed) used to say "Re-run the same command to resume"
    under the summary of a finished run."""
    import signal

    from beam_pipelines.launch import STOP_SIGNALS, write_summary

    out = tmp_path / "out"
    out.mkdir()

    def finished_then_stopped(argv):
        write_summary(str(out), {"records": 3})
        STOP_SIGNALS.append(signal.SIGTERM)  # what job_main's handler records before it raises
        raise KeyboardInterrupt

    assert job_main([f"--output={out}"], JOB, finished_then_stopped) == 143
    err = capsys.readouterr().err
    assert err.startswith(f"{PROG}: terminated (SIGTERM) after its run had finished: {out}/summary.json"), err
    assert "nothing is left to resume" in err and "Re-run" not in err

    def stopped(argv):  # a stop before the summary still says how to resume
        STOP_SIGNALS.append(signal.SIGTERM)
        raise KeyboardInterrupt

    assert job_main([f"--output={out}"], JOB, stopped) == 143
    err = capsys.readouterr().err
    assert err.startswith(f"{PROG}: terminated (SIGTERM). ") and "re-running the command starts over" in err, err


def test_a_run_whose_every_engine_request_failed_exits_1_and_says_so(tmp_path, capsys):
    """A --max-model-len that held no prompt: every request an engine error, the stages balanced, exit 0 and every
    stage [ok] (a user probe). Now the summary says it failed and the exit code is 1; one failure among answers
    is still an ordinary run."""
    from runners.engines.fake_engine import FAIL_MARKER

    tree = tmp_path / "tree"
    tree.mkdir()
    failing = f"def add(a, b):\n    '{FAIL_MARKER}'\n    return a + b\n"
    (tree / "a.py").write_text(failing)
    argv = [f"--output={tmp_path / 'out'}", f"--source-tree={tree}", "--engine=fake", "--num-candidates=2",
            "--quiet"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "FAILED: every engine request failed (summarize: 2 engine errors)" in out, out
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["balanced"] and manifest["engine_failed"] == {"summarize": 2}
    from beam_pipelines import report

    assert report.main([str(tmp_path / "out")]) == 1  # as the job said
    assert "FAILED: every engine request failed" in capsys.readouterr().out
    (tree / "b.py").write_text("def sub(a, b):\n    return a - b\n")
    argv[0] = f"--output={tmp_path / 'out2'}"
    assert main(argv) == 0
    assert "FAILED" not in capsys.readouterr().out
