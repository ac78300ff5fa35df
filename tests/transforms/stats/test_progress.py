"""Live progress: the stage counters reach the console while a job runs, as plain lines when stderr is not a
terminal, and as a live display when it is."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time

import pytest

from tests.beam_pipelines.test_plumbing_fake_engine import CORPUS
from tests.conftest import REPO
from transforms.stats import progress


@pytest.mark.heavy
def test_progress_lines_appear_during_a_run_and_are_plain_text_off_a_terminal(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in CORPUS))
    proc = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.inverse_instruct", "--engine=fake", f"--input={corpus}",
         "--num-candidates=3", "--max-new-tokens=16", "--progress-interval=0.5", f"--output={tmp_path / 'out'}"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [line for line in proc.stderr.splitlines() if line.startswith("progress [")]
    assert len(reports) >= 2, proc.stderr[-3000:]
    assert "\x1b" not in proc.stderr  # no terminal control codes in a log file
    assert "engine messages go to" in proc.stderr
    stage_lines = [line for line in proc.stderr.splitlines() if line.strip().startswith("extract ")]
    assert stage_lines and " out " in stage_lines[-1]
    engine = [line for line in proc.stderr.splitlines() if "engine: generate" in line]
    assert engine, "the engine line (requests done of planned, tokens) never appeared"


def test_counters_from_several_processes_are_summed(tmp_path, monkeypatch):
    monkeypatch.setenv(progress.PROGRESS_DIR_ENV, str(tmp_path))
    (tmp_path / "host-1.json").write_text(
        json.dumps({"extract.in": 3, "extract.out": 2, "extract.rejected.no_code": 1}))
    (tmp_path / "host-2.json").write_text(json.dumps({"extract.in": 4, "extract.out": 4}))
    (tmp_path / ".host-3.json.tmp").write_text("{not json")  # a snapshot being written is not read
    totals = progress.read_progress(str(tmp_path))
    assert totals == {"extract.in": 7, "extract.out": 6, "extract.rejected.no_code": 1}
    lines = progress.progress_lines({**totals, "summarize.requests.generate": 10, "engine.done.generate": 4,
                                     "engine.generated_tokens": 400}, elapsed=20, engine_since=10, order=["extract"])
    assert any("extract" in line and "in        7" in line and "rejected       1" in line for line in lines)
    engine = next(line for line in lines if "engine:" in line)
    assert "generate 4/10" in engine and "(40/s)" in engine and "ETA 15s" in engine


def test_on_a_terminal_the_display_is_live(tmp_path):
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "w")
    (tmp_path / "p.json").write_text(json.dumps({"extract.in": 5, "extract.out": 5}))
    reporter = progress.ProgressReporter(str(tmp_path), interval=0.2, stream=stream).start()
    time.sleep(1.0)
    reporter.stop()
    stream.flush()
    os.set_blocking(master, False)
    out = b""
    try:
        while True:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            out += chunk
    except BlockingIOError:
        pass
    assert reporter.tty and reporter.reports >= 2
    assert b"extract" in out and b"\x1b[" in out  # rich redraws in place with control codes


def test_a_new_job_in_the_same_process_starts_its_counts_from_zero(tmp_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.launch import run_timed

    progress.LIVE.add("extract.in", 41)  # what an earlier job in this process counted
    options = PipelineOptions([f"--output={tmp_path}", "--quiet"])

    def build(pipeline, _options):
        _ = pipeline | beam.Create([1, 2]) | beam.Map(lambda x: progress.LIVE.add("extract.in", x))

    run_timed(options, build)
    assert progress.LIVE.snapshot() == {"extract.in": 3}
