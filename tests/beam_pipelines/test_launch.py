"""Launching jobs: unknown options stop a job before any work, Beam's own options pass, and the CLI dispatches."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from beam_pipelines import cli
from beam_pipelines.launch import UnknownOptionError, beam_option_classes, check_known_options
from tests.conftest import REPO


def _job(module: str):
    import importlib

    return importlib.import_module(module).JOB


@pytest.mark.parametrize("module, argv, wanted", [
    ("beam_pipelines.inverse_instruct", ["--limt", "5"], "--limit"),
    ("beam_pipelines.inverse_instruct", ["--num-candidate=3"], "--num-candidates"),
    ("beam_pipelines.evaluate", ["--samples-per-problme", "4"], "--samples-per-problem"),
    ("beam_pipelines.self_play", ["--num-prompt", "4"], "--num-prompts"),
])
def test_a_typo_is_an_error_with_a_suggestion(module, argv, wanted):
    with pytest.raises(UnknownOptionError) as err:
        check_known_options(argv, _job(module))
    message = str(err.value)
    assert argv[0].split("=")[0] in message and f"did you mean {wanted}" in message
    assert f"did you mean {wanted}?" in message  # one suggestion: the shared dashes made --limt 'close' to --quiet


def test_an_option_of_another_job_is_unknown_to_this_one():
    # --limit samples the main job's corpus; evaluate has no corpus and must not accept it silently.
    with pytest.raises(UnknownOptionError, match="--limit"):
        check_known_options(["--limit", "5"], _job("beam_pipelines.evaluate"))
    check_known_options(["--limit", "5"], _job("beam_pipelines.inverse_instruct"))


def test_beam_and_runner_options_pass():
    job = _job("beam_pipelines.inverse_instruct")
    check_known_options([
        "--runner=DataflowRunner", "--project=p", "--region=us-central1", "--temp_location=gs://b/tmp",
        "--setup_file=./setup.py", "--sdk_container_image=img", "--experiments=use_runner_v2",
        "--machine_type=g2-standard-8", "--flink_master=host:8081", "--environment_type=LOOPBACK",
        "--job_endpoint=embed", "--direct_running_mode=multi_processing", "--direct_num_workers=2",
        "--output=x", "--limit=3", "--engine=transformers",
    ], job)


def test_no_two_option_classes_of_a_job_share_a_flag():
    """Beam parses every registered options class into one parser when it runs a pipeline: a flag defined twice
    would crash it there."""
    import importlib

    for module, _ in cli.SUBCOMMANDS.values():
        mod = importlib.import_module(module)
        if not hasattr(mod, "JOB"):
            continue
        parser = argparse.ArgumentParser()
        for cls in (*mod.JOB.option_classes, *beam_option_classes()):
            cls._add_argparse_args(parser)  # raises argparse.ArgumentError on a conflict


def test_the_job_stops_before_any_work_on_an_unknown_option(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "beam_pipelines.inverse_instruct", "--limt", "5", f"--output={out}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "unknown option" in proc.stderr and "did you mean --limit" in proc.stderr
    assert not out.exists()


def test_cli_lists_subcommands_and_dispatches_help(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in cli.SUBCOMMANDS)
    assert cli.main(["generate", "--help"]) == 0
    assert "--limit" in capsys.readouterr().out
    assert cli.main(["evaluat"]) == 2
    assert "did you mean evaluate" in capsys.readouterr().err


def test_cli_without_a_subcommand_is_a_usage_error(capsys):
    """No subcommand printed the usage and exited 0; it is a usage error (exit 2, the usage on stderr), as argparse
    does; --help and help still print it on stdout and exit 0."""
    assert cli.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "usage: inverse-instruct <subcommand>" in captured.err
    assert "inverse-instruct: error: a subcommand is required" in captured.err
    for ask in (["--help"], ["-h"], ["help"]):
        assert cli.main(ask) == 0
        captured = capsys.readouterr()
        assert "usage: inverse-instruct <subcommand>" in captured.out and captured.err == ""


def test_report_prints_a_finished_runs_summary(tmp_path, capsys):
    import json

    manifest = {"stages": {"read": {"records_in": 2, "records_out": 2, "rejected": {}, "balanced": True}},
                "stage_order": ["read"], "balanced": True, "wall_seconds": 1.0}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["report", str(tmp_path)]) == 0
    assert "read" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "missing")]) == 2


def test_a_driver_step_whose_job_failed_after_writing_its_output_runs_again(tmp_path, capsys):
    from beam_pipelines.steps import run_step

    done = tmp_path / "summary.json"
    # Like an unbalanced evaluation: it writes its summary, then exits 1.
    failing = [sys.executable, "-c", f"open({str(done)!r}, 'w').write('{{}}'); raise SystemExit(1)"]
    with pytest.raises(SystemExit, match="failed"):
        run_step("test", "evaluate", failing, tmp_path / "step.log", done)
    assert done.exists()
    succeeding = [sys.executable, "-c", f"open({str(done)!r}, 'w').write('{{\"ok\": 1}}')"]
    run_step("test", "evaluate", succeeding, tmp_path / "step.log", done)  # not skipped: it failed before
    assert "did not succeed; running it again" in capsys.readouterr().err
    assert done.read_text() == '{"ok": 1}'
    run_step("test", "evaluate", succeeding, tmp_path / "step.log", done)  # now it is done: not run again
    assert "already done" in capsys.readouterr().err and done.read_text() == '{"ok": 1}'
    with pytest.raises(SystemExit, match="its command differs"):  # another command is another step: refused
        run_step("test", "evaluate", failing, tmp_path / "step.log", done)
    assert done.read_text() == '{"ok": 1}'


def _main_job_options(out, *argv):
    from beam_pipelines.inverse_instruct import JOB
    from beam_pipelines.launch import pipeline_options

    return pipeline_options([f"--output={out}", "--engine=fake", *argv], JOB)


def test_a_rerun_may_change_the_engines_speed_only_options(tmp_path):
    from beam_pipelines.launch import RUN_FILE, RunConflictError

    out = tmp_path / "run"
    out.mkdir()
    _main_job_options(out, "--kv-cache-gb=2", "--num-candidates=3")
    (out / "cache").mkdir()  # the run did work (a run that wrote nothing may be replaced by any other)
    (out / "cache" / "part-0.jsonl").write_text("{}\n")
    _main_job_options(out, "--kv-cache-gb=8", "--gpu-memory-utilization=0.5", "--max-num-seqs=16",
                      "--tensor-parallel-size=2", "--vllm-host=spawned", "--cpu-runtime-preload",
                      f"--model-cache={tmp_path / 'models'}", "--num-candidates=3")
    with pytest.raises(RunConflictError, match="num_candidates"):
        _main_job_options(out, "--num-candidates=4")
    # compiled vLLM rounds otherwise than eager: an explicit choice changes answers
    with pytest.raises(RunConflictError, match="enforce_eager"):
        _main_job_options(out, "--no-enforce-eager", "--num-candidates=3")
    # A run.json written while these options were still recorded: a re-run that changes them still matches.
    recorded = json.loads((out / RUN_FILE).read_text())
    recorded["arguments"]["kv_cache_gb"] = 2.0
    (out / RUN_FILE).write_text(json.dumps(recorded))
    _main_job_options(out, "--kv-cache-gb=4", "--num-candidates=3")


def test_the_speed_only_options_are_those_the_inference_cache_ignores():
    """Every engine option is either in the cache's key (runners.options.result_settings: it changes answers) or
    free to change on a re-run; none is both."""
    from beam_pipelines.launch import NON_RESULT_OPTIONS, SPEED_ONLY_ENGINE_OPTIONS
    from runners.engines import EngineConfig
    from runners.options import EngineOptions, result_settings

    every_setting = EngineConfig(engine="transformers", vllm_engine_args=(("quantization", "x"),),
                                 vllm_score_method="prompt_logprobs", score_batch_size=8, cpu_amx="full",
                                 enforce_eager=False)
    in_key = (set(result_settings(every_setting)) | set(result_settings(dataclasses.replace(every_setting,
                                                                                             engine="vllm")))
              | {"model", "engine_seed"})
    parser = argparse.ArgumentParser()
    EngineOptions._add_argparse_args(parser)
    engine_options = {a.dest for a in parser._actions if a.dest != "help"}
    config_fields = set(EngineConfig.__dataclass_fields__)
    for dest in engine_options & config_fields:
        assert (dest in in_key) != (dest in NON_RESULT_OPTIONS), dest
    assert SPEED_ONLY_ENGINE_OPTIONS <= engine_options and not SPEED_ONLY_ENGINE_OPTIONS & in_key


def test_report_explains_a_truncated_summary(tmp_path, capsys):
    (tmp_path / "summary.json").write_text('{"pass@1": 12.5, "statu')
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "summary.json is not valid JSON" in err and "cut short" in err


@pytest.mark.parametrize("module, ignored, read", [
    # evaluate reads the benchmark, the training template and the seed; its sampling has its own flags
    ("beam_pipelines.evaluate", ["--temperature", "0.8"], ["--run-seed", "3", "--preset", "paper"]),
    ("beam_pipelines.evaluate", ["--max-new-tokens", "1024"], ["--benchmark", "humaneval"]),
    ("beam_pipelines.evaluate", ["--benchmark-fields", "humaneval=prompt"], []),
    ("beam_pipelines.self_play", ["--num-candidates", "3"], ["--run-seed", "3"]),
    ("beam_pipelines.self_play", ["--temperature", "0.5"], []),
])
def test_options_a_job_would_ignore_are_unknown_to_it(module, ignored, read):
    job = _job(module)
    with pytest.raises(UnknownOptionError, match=ignored[0]):
        check_known_options(ignored, job)
    check_known_options(read, job)
    check_known_options(ignored, _job("beam_pipelines.inverse_instruct"))  # the main job reads them


def test_run_json_records_only_what_the_job_reads_and_older_ones_still_match(tmp_path):
    from beam_pipelines.launch import RUN_FILE, guard_output, pipeline_options

    job = _job("beam_pipelines.evaluate")
    options = pipeline_options([f"--output={tmp_path}", "--run-seed=3"], job)
    guard_output(options, job)
    recorded = json.loads((tmp_path / RUN_FILE).read_text())["arguments"]
    assert recorded["run_seed"] == 3 and "preset" in recorded and "benchmark" in recorded
    assert "temperature" not in recorded and "benchmark_fields" not in recorded and "num_candidates" not in recorded
    # A run.json written when evaluate still recorded every MethodOptions value: the same run, not a conflict.
    older = json.loads((tmp_path / RUN_FILE).read_text())
    older["arguments"].update(temperature=0.8, num_candidates=10, benchmark_fields=None)
    (tmp_path / RUN_FILE).write_text(json.dumps(older))
    guard_output(options, job)


def test_a_jobs_summary_prints_as_lines_not_json(tmp_path, capsys):
    from beam_pipelines.launch import write_summary

    summary = {"model": "m", "pass_at_k": {"1": 0.25, "10": 0.5}, "solved": ["a", "b"], "hidden_list": [1]}
    write_summary(str(tmp_path), dict(summary), hidden=("hidden_list",))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"output in {tmp_path} (summary.json holds these numbers)"
    assert [line.split() for line in printed[1:]] == [["model", "m"], ["pass_at_k", "1=0.25,", "10=0.5"],
                                                      ["solved", "a,", "b"]]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary  # the file keeps everything


def test_report_of_a_driver_prints_its_results_table(tmp_path, capsys):
    """The paper and self-play-loop drivers keep their table in summary.md; ``report`` prints it."""
    summary = {"model": "m", "base_model": "m", "generated_pairs": 3, "original_pairs": 4, "profile": "paper",
               "rows": [{"model": "m (M)", "data": "original corpus", "path": "m", "pass@1": {"humaneval": 0.61}}]}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    table = "| Model | HumanEval (+) |\n| --- | --- |\n| m (M) | 0.61 |\n"
    (tmp_path / "summary.md").write_text(table)
    assert cli.main(["report", str(tmp_path)]) == 0
    assert table.strip() in capsys.readouterr().out



def test_cli_stops_quietly_when_its_reader_goes_away(monkeypatch, tmp_path):
    """`inverse-instruct --help | head -1`: once head has gone, a write raises BrokenPipeError; the command ends
    with 141 (as if killed by SIGPIPE) and no traceback, and stdout no longer points at the dead pipe."""
    sink = (tmp_path / "stdout").open("w")

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            return sink.fileno()

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["--help"]) == 141
    os.write(sink.fileno(), b"after")  # fd now /dev/null: nothing reaches the file
    sink.close()
    assert (tmp_path / "stdout").read_bytes() == b""


def test_the_python_m_form_stops_quietly_when_its_reader_goes_away(tmp_path, shared_data):
    """`python -m beam_pipelines.inverse_instruct ... | head -1` (the form make demo uses): 141 and no traceback,
    as through `inverse-instruct` (it was exit 1 and a BrokenPipeError traceback from the job's last print)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the job prints
    done = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.inverse_instruct", f"--input={shared_data / 'code_alpaca_2k.json'}",
         "--response-column=output", "--stages=extract", "--limit=5", f"--output={tmp_path / 'out'}", "--quiet"],
        stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300, cwd=REPO)
    os.close(write_end)
    assert done.returncode == 141 and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "out" / "manifest.json").is_file()  # the job's work was done before its last print


def test_multi_processing_workers_are_quiet_unless_verbose(tmp_path, shared_data):
    """--direct_running_mode=multi_processing: each SDK worker process logged ~20 INFO lines (channels, harness
    start and exit, all pipeline options) and the launcher re-logged their warnings: 46 lines for a quiet run."""
    command = [sys.executable, "-m", "beam_pipelines.inverse_instruct",
               f"--input={shared_data / 'code_alpaca_2k.json'}", "--response-column=output", "--stages=extract",
               "--limit=20", "--quiet", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    done = subprocess.run([*command, f"--output={tmp_path / 'quiet'}"], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    noise = [line for line in done.stderr.splitlines() if "sdk_worker" in line or "Pipeline_options" in line
             or "local_job_service" in line or "Discarding unparseable args" in line]
    assert noise == [] and len(done.stderr.splitlines()) <= 6, done.stderr  # only what workers log at import
    told = subprocess.run([*command, f"--output={tmp_path / 'told'}", "--default_sdk_harness_log_level=INFO"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert told.returncode == 0 and "sdk_worker" in told.stderr  # a level the user sets is theirs


def test_exit_process_ends_after_pythons_exit_work_with_the_code(tmp_path):
    """The entries end through ``exit_process`` (no native teardown, where Arrow's thread pools can abort a
    finished job): what Python's own exit does must still happen, in order, and the code must come out."""
    import subprocess
    import sys

    code = (
        "import atexit, threading, time\n"
        "from beam_pipelines.cli import exit_process\n"
        "atexit.register(lambda: print('atexit', end=''))\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread ', end=''))).start()\n"
        "print('buffered ', end='')\n"  # no newline: still in the buffer of a piped stdout
        "exit_process(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (3, "buffered thread atexit"), done.stderr


def run_small_extract_job(tmp_path) -> None:
    """The main job's extraction, on the DirectRunner, over a one-function source tree."""
    from beam_pipelines.inverse_instruct import run

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.py").write_text("def add(a, b):\n    return a + b\n")
    assert run([f"--output={tmp_path / 'out'}", f"--source-tree={tree}", "--stages=extract", "--quiet"])["balanced"]
    assert (tmp_path / "out" / "snippets").is_dir()


def test_a_local_job_never_tries_prism_and_leaves_no_pipeline_temp_dir(tmp_path, monkeypatch):
    """Beam 2.77's DirectRunner first runs a pipeline on Prism, downloading its binary from GitHub at run time
    (offline it fails and falls back, so every job here tried it): a run-time download, and on a machine online a
    runner this project never tests. And a pipeline run outside a `with` block left its beam-pipeline-temp dir."""
    import tempfile

    from apache_beam.runners.portability import prism_runner

    tried = []

    def record_prism(self, *args, **kwargs):
        tried.append(args)
        raise RuntimeError("no Prism here")  # the DirectRunner falls back, as offline

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", record_prism)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    run_small_extract_job(tmp_path)
    assert tried == []
    assert not list(temp.glob("beam-pipeline-temp*"))


def test_a_local_job_skips_the_runner_api_round_trip_as_beams_direct_runner_does(tmp_path, monkeypatch):
    """Beam's Pipeline.run skips its round trip through the runner API for the DirectRunner, recognised by its class
    name; the runner without Prism (local_runner) had another name, so every local job paid the round trip."""
    import apache_beam as beam

    round_trips = []
    original = beam.Pipeline.from_runner_api

    def record(*args, **kwargs):
        round_trips.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(beam.Pipeline, "from_runner_api", staticmethod(record))
    run_small_extract_job(tmp_path)
    assert round_trips == []


def test_report_of_an_evaluation_prints_its_counts_and_pass_at_k_first(tmp_path, capsys):
    """summary.json sorts its keys, so `report DIR` buried pass@1 among them (a user probe); it prints them in the
    job's own order: problems, samples, statuses, pass@k by k, then the rest."""
    import json

    summary = {"balanced": True, "benchmark": "humaneval", "pass@10": 0.5, "pass@1": 0.25, "pass@2": 0.3,
               "problems": 4, "samples": 40, "statuses": {"passed": 10, "failed": 30}, "wall_seconds": 2.0}
    (tmp_path / "summary.json").write_text(json.dumps(summary, sort_keys=True))
    assert cli.main(["report", str(tmp_path)]) == 0
    keys = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:] if line.startswith("  ")]
    assert keys[:6] == ["problems", "samples", "statuses", "pass@1", "pass@2", "pass@10"], keys


def test_each_job_in_a_process_logs_the_engine_to_its_own_file_only(tmp_path, monkeypatch):
    import logging

    from beam_pipelines.launch import configure_engine_log
    from runners.engines.common import ENGINE_LOG_ENV

    monkeypatch.delenv("VLLM_LOGGING_CONFIG_PATH", raising=False)
    monkeypatch.delenv(ENGINE_LOG_ENV, raising=False)
    vllm_logger = logging.getLogger("vllm")
    monkeypatch.setattr(vllm_logger, "handlers", list(vllm_logger.handlers))
    monkeypatch.setattr(vllm_logger, "propagate", vllm_logger.propagate)
    level = vllm_logger.level
    vllm_logger.setLevel(logging.INFO)
    try:
        first = configure_engine_log(str(tmp_path / "job-1"))
        vllm_logger.info("from the first job")
        second = configure_engine_log(str(tmp_path / "job-2"))
        vllm_logger.info("from the second job")
        for handler in vllm_logger.handlers:
            handler.flush()
        assert first != second
        assert open(first).read().splitlines() == ["from the first job"]
        assert open(second).read().splitlines() == ["from the second job"]
        assert sum(isinstance(h, logging.FileHandler) for h in vllm_logger.handlers) == 1
    finally:
        vllm_logger.setLevel(level)
        for handler in vllm_logger.handlers:
            handler.close()
