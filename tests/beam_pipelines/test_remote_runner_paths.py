"""Paths handed to workers that do not share the launcher's working directory (a Beam worker pool started
elsewhere, Dataflow): the launcher makes every local path option absolute before the pipeline is built, so the
pipeline, run.json and the manifest name the files the launcher meant; DataflowRunner refuses local paths its
workers would open, and a scheme or runner whose package is missing (``gs://`` without gcsfs, Dataflow without
apache-beam[gcp]) is one line naming the extra to install, before run.json."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os

import pytest

from beam_pipelines import cli, evaluate, inverse_instruct, self_play
from beam_pipelines.launch import PATH_OPTIONS, RUN_FILE, JobConfigError, absolute_paths, check_job_command

CORPUS_COLUMNS = ["--instruction-column=instruction", "--input-column=input", "--response-column=output"]
BENCH_ROW = json.dumps({"id": "1", "p": "Add two numbers.", "s": "def add(a, b):\n    return a + b"})
DATAFLOW = ["--runner=DataflowRunner", "--project=p", "--region=us-central1", "--temp_location=gs://b/tmp"]


def _one_error_line(capsys, code: int, prog: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


@pytest.fixture
def no_pipeline_run(monkeypatch):
    """Fails the test if a pipeline starts: a refused Dataflow job must never reach Google."""
    from apache_beam.pipeline import Pipeline

    def refuse(self, *args, **kwargs):
        raise AssertionError("the pipeline ran")

    monkeypatch.setattr(Pipeline, "run", refuse)


@pytest.fixture
def worker_pool(tmp_path):
    """A Beam worker pool started in another working directory than the launcher's (``/``), as the probe ran it:
    ``--environment_type=EXTERNAL --environment_config=localhost:PORT``."""
    import socket
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    log = open(tmp_path / "pool.log", "w")
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], cwd="/", env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("localhost", port)) == 0:
                    break
            time.sleep(0.2)
        yield ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
               f"--environment_config=localhost:{port}"]
    finally:
        pool.terminate()
        pool.wait(timeout=30)
        log.close()


def test_relative_paths_name_the_launchers_files_on_workers_with_another_working_directory(
        shared_data, tmp_path, monkeypatch, capsys, worker_pool):
    """The probe's failure: workers whose cwd differs (a pool started in /) opened 'ca.json' and the benchmark
    relative to their own cwd and wrote the outputs under /runs/rel; the launcher then read the manifest under its
    own."""
    launcher = tmp_path / "launcher"
    launcher.mkdir()
    (launcher / "bench.jsonl").write_text(BENCH_ROW + "\n")
    corpus = os.path.relpath(shared_data / "code_alpaca_2k.json", launcher)
    monkeypatch.chdir(launcher)
    output = f"runs/rel-{os.getpid()}"  # never an existing /runs/...
    code = inverse_instruct.main([
        *worker_pool, f"--input={corpus}", *CORPUS_COLUMNS, "--limit=20", "--stages=extract", "--decontam-source",
        "--benchmark=mb=bench.jsonl", "--benchmark-fields=mb:task_id=id,prompt=p,solution=s",
        f"--output={output}", "--quiet"])
    assert code == 0, capsys.readouterr().err
    out = launcher / output
    recorded = json.loads((out / RUN_FILE).read_text())["arguments"]
    assert recorded["input"] == str(shared_data / "code_alpaca_2k.json")
    assert recorded["benchmark"] == [f"mb={launcher / 'bench.jsonl'}"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["corpus"]["input"] == str(shared_data / "code_alpaca_2k.json")
    assert (out / "snippets").is_dir() and not os.path.exists(f"/{output}")


def test_the_local_runners_keep_the_corpus_path_as_given_and_make_the_rest_absolute(
        shared_data, tmp_path, monkeypatch, capsys):
    """On the DirectRunner the workers share the launcher's cwd: the corpus path is kept as given (it is every
    record's source_uri, so outputs do not depend on where the checkout is); the output and benchmark are absolute."""
    (tmp_path / "bench.jsonl").write_text(BENCH_ROW + "\n")
    corpus = os.path.relpath(shared_data / "code_alpaca_2k.json", tmp_path)
    monkeypatch.chdir(tmp_path)
    code = inverse_instruct.main([
        f"--input={corpus}", *CORPUS_COLUMNS, "--limit=5", "--stages=extract", "--decontam-source",
        "--benchmark=mb=bench.jsonl", "--benchmark-fields=mb:task_id=id,prompt=p,solution=s",
        "--output=runs/rel", "--quiet"])
    assert code == 0, capsys.readouterr().err
    recorded = json.loads((tmp_path / "runs" / "rel" / RUN_FILE).read_text())["arguments"]
    assert recorded["input"] == corpus and recorded["benchmark"] == [f"mb={tmp_path / 'bench.jsonl'}"]


def test_the_default_output_is_absolute_in_the_pipelines_options(tmp_path, monkeypatch):
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.options import OutputOptions

    monkeypatch.chdir(tmp_path)
    options = PipelineOptions([])
    absolute_paths(options, inverse_instruct.JOB)
    assert options.view_as(OutputOptions).output == str(tmp_path / "runs" / "latest")


# Every path option, relative, and what the launcher makes of it (None: left as it is).
RELATIVE = {
    "input": ("a.json,dir/*.parquet,gs://b/c.json", lambda d: f"{d}/a.json,{d}/dir/*.parquet,gs://b/c.json"),
    "source_tree": ("src", lambda d: f"{d}/src"),
    "benchmark": (["humaneval", "humaneval_plus=hep.jsonl", "mbpp=gs://b/m.jsonl"],
                  lambda d: ["humaneval", f"humaneval_plus={d}/hep.jsonl", "mbpp=gs://b/m.jsonl"]),
    "problems": ("p.jsonl", lambda d: f"{d}/p.jsonl"),
    "p3_dir": ("p3", lambda d: f"{d}/p3"),
    "solve_prefix": ("prefix.txt", lambda d: f"{d}/prefix.txt"),
    "preset": ("my/preset.yaml", lambda d: f"{d}/my/preset.yaml"),
    "model": ("./models/m", lambda d: f"{d}/models/m"),
    "model_cache": ("~/models", lambda d: os.path.expanduser("~/models")),
    "inference_cache": ("cache", lambda d: f"{d}/cache"),
    "spill_dir": ("spill", lambda d: f"{d}/spill"),
    "engine_load_log": ("loads.log", lambda d: f"{d}/loads.log"),
    "output": ("runs/x", lambda d: f"{d}/runs/x"),
}
# Values that name no local path: they stay as they are.
NOT_LOCAL = {"preset": "chat", "model": "smollm2", "spill_dir": "auto", "output": "gs://b/runs/x",
             "inference_cache": "memory://cache"}


@pytest.mark.parametrize("module", [inverse_instruct, evaluate, self_play], ids=lambda m: m.JOB.name)
def test_every_path_option_a_job_reads_is_made_absolute(module, tmp_path, monkeypatch):
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.launch import _job_path_options

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "m").mkdir(parents=True)
    options = PipelineOptions(["--runner=FlinkRunner"])  # workers elsewhere: every path is made absolute
    read = {dest for _, dest, _ in _job_path_options(options, module.JOB)}  # the non-None defaults
    for cls in module.JOB.option_classes:
        view = options.view_as(cls)
        for dest in view.get_all_options(current_only=True):
            if dest in RELATIVE and (module.JOB.reads_only.get(cls) is None or dest in module.JOB.reads_only[cls]):
                setattr(view, dest, RELATIVE[dest][0])
                read.add(dest)
    absolute_paths(options, module.JOB)
    values = options.get_all_options()
    assert {"output", "model"} <= read
    for dest in read:
        assert values[dest] == RELATIVE[dest][1](str(tmp_path)), dest
    for dest, value in NOT_LOCAL.items():
        if dest in read:
            options = PipelineOptions(["--runner=FlinkRunner", f"--{dest.replace('_', '-')}={value}"])
            absolute_paths(options, module.JOB)
            assert options.get_all_options()[dest] == value, dest


def test_every_option_whose_help_names_a_path_is_a_path_option():
    """A new path option must join PATH_OPTIONS, or workers elsewhere get it relative."""
    not_paths = {"output_records_per_file", "input_format", "no_cache", "benchmark_fields"}
    for module in (inverse_instruct, evaluate, self_play):
        parser = argparse.ArgumentParser(conflict_handler="resolve")
        for cls in module.JOB.option_classes:
            cls._add_argparse_args(parser)
        for action in parser._actions:
            text = (action.help or "").lower()
            if any(word in text for word in ("path", "director", "file", "folder")):
                assert action.dest in PATH_OPTIONS or action.dest in not_paths, (module.JOB.name, action.dest)


def test_the_path_options_keywords_are_the_codes_own():
    from runners.model_resolution import EMBEDDED_MODELS
    from transforms.instruct.prompts import BUILTIN_PRESETS
    from transforms.io.options import SPILL_AUTO, SPILL_NONE

    assert PATH_OPTIONS["preset"].keywords == frozenset(BUILTIN_PRESETS)
    assert PATH_OPTIONS["spill_dir"].keywords == {SPILL_AUTO, SPILL_NONE}
    assert "smollm2" in EMBEDDED_MODELS


def test_a_run_json_recorded_with_relative_paths_is_continued_and_made_absolute(shared_data, tmp_path, monkeypatch,
                                                                                capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.jsonl").write_text(BENCH_ROW + "\n")
    argv = [f"--input={shared_data / 'code_alpaca_2k.json'}", *CORPUS_COLUMNS, "--limit=5", "--stages=extract",
            "--decontam-source", "--benchmark=mb=bench.jsonl", "--benchmark-fields=mb:task_id=id,prompt=p,solution=s",
            "--output=out", "--quiet"]
    assert inverse_instruct.main(argv) == 0
    run_file = tmp_path / "out" / RUN_FILE
    older = json.loads(run_file.read_text())
    older["arguments"]["benchmark"] = ["mb=bench.jsonl"]  # as the launcher recorded it before it made it absolute
    run_file.write_text(json.dumps(older))
    assert inverse_instruct.main(argv) == 0, capsys.readouterr().err
    assert json.loads(run_file.read_text())["arguments"]["benchmark"] == [f"mb={tmp_path / 'bench.jsonl'}"]


@pytest.mark.parametrize("args, named", [
    (["--output=runs/df", "--input=gs://b/c.json"], "--output 'runs/df'"),
    (["--input=c.json"], "--output 'runs/latest'"),  # the default output is local too
    (["--output=gs://b/x", "--input=c.json"], "--input 'c.json'"),
    (["--output=gs://b/x", "--input=gs://b/c.json", "--decontam-source", "--benchmark=humaneval_plus=hep.jsonl"],
     "--benchmark humaneval_plus 'hep.jsonl'"),
    (["--output=gs://b/x", "--source-tree=src"], "--source-tree 'src'"),
])
def test_dataflow_refuses_local_paths_its_workers_open_in_one_line_before_run_json(
        args, named, tmp_path, monkeypatch, capsys, no_pipeline_run):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text(json.dumps([{"instruction": "Add.", "output": "def f():\n    return 1\n"}]))
    code = inverse_instruct.main([*DATAFLOW, *args, "--stages=extract", "--quiet"])
    line = _one_error_line(capsys, code, inverse_instruct.JOB.prog)
    assert named in line and "DataflowRunner" in line and "gs://" in line, line
    assert not list(tmp_path.rglob(RUN_FILE)) and not (tmp_path / "runs").exists()
    with pytest.raises(JobConfigError, match="DataflowRunner"):  # a driver's check of a later step's command too
        check_job_command([*DATAFLOW, *args, "--stages=extract"], inverse_instruct.JOB)


def test_dataflow_refuses_a_local_output_of_every_job(tmp_path, monkeypatch, capsys, no_pipeline_run):
    monkeypatch.chdir(tmp_path)
    for module in (evaluate, self_play):
        code = module.main([*DATAFLOW, "--output=runs/x", "--quiet"])
        line = _one_error_line(capsys, code, module.JOB.prog)
        assert "--output 'runs/x'" in line and "DataflowRunner" in line, line
    assert not (tmp_path / "runs").exists()


def test_local_benchmarks_evaluate_reads_itself_are_not_dataflows_business():
    """evaluate loads its problems on the launcher (beam.Create): only its output must be remote."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.launch import check_path_locations

    options = PipelineOptions([*DATAFLOW, "--output=gs://b/x", "--benchmark=humaneval=he.jsonl"])
    try:
        check_path_locations(options, evaluate.JOB)
    except Exception as err:  # without the gcp extra: the package, never the local benchmark
        assert "he.jsonl" not in str(err) and "gcp" in str(err), err


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


needs_no_gcsfs = pytest.mark.skipif(not _missing("gcsfs"), reason="gcsfs is installed here: gs:// would be reached")


@needs_no_gcsfs
@pytest.mark.parametrize("args, named", [
    (["--output=gs://bucket/runs/x"], "--output gs://bucket/runs/x"),
    (["--output=out", "--inference-cache=gs://bucket/cache"], "--inference-cache gs://bucket/cache"),
    (["--output=out", "--input=gs://bucket/corpus/*.json"], "--input gs://bucket/corpus/*.json"),
])
def test_a_gs_path_without_gcsfs_is_one_line_naming_the_package_and_the_extra(args, named, tmp_path, monkeypatch,
                                                                            capsys, no_pipeline_run):
    monkeypatch.chdir(tmp_path)
    code = inverse_instruct.main([*args, "--stages=extract", "--quiet"])
    line = _one_error_line(capsys, code, inverse_instruct.JOB.prog)
    assert named in line and "gcsfs" in line and "pip install -e '.[gcp]'" in line, line
    assert not list(tmp_path.rglob(RUN_FILE))


@needs_no_gcsfs
def test_a_gs_path_without_gcsfs_is_one_line_in_the_commands_without_a_job_launcher(capsys):
    assert cli.main(["report", "gs://bucket/runs/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "gcsfs" in err and "pip install -e '.[gcp]'" in err, err
    from beam_pipelines import self_play_merge

    assert self_play_merge.main(["--round=gs://bucket/r0", "--output=gs://bucket/merged"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "gcsfs" in err and "pip install -e '.[gcp]'" in err, err


@pytest.mark.skipif(not _missing("google.auth"), reason="apache-beam[gcp] is installed here")
def test_dataflow_without_apache_beam_gcp_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys,
                                                                       no_pipeline_run):
    monkeypatch.chdir(tmp_path)
    code = inverse_instruct.main([*DATAFLOW, "--output=gs://bucket/runs/x", "--input=gs://bucket/c.json",
                                  "--stages=extract", "--quiet"])
    line = _one_error_line(capsys, code, inverse_instruct.JOB.prog)
    assert "apache-beam[gcp]" in line and "pip install -e '.[gcp]'" in line, line


def test_setup_has_a_gcp_extra_at_beams_pin_and_accelerate_goes_with_torch(monkeypatch):
    import runpy
    from pathlib import Path

    import setuptools

    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: seen.update(kwargs))
    runpy.run_path(str(Path(__file__).resolve().parents[2] / "setup.py"))
    beam = next(r for r in seen["install_requires"] if r.startswith("apache-beam"))
    assert seen["extras_require"]["gcp"] == [beam.replace("apache-beam", "apache-beam[gcp]", 1), "gcsfs"]
    # accelerate requires torch>=2.6: in the core, `pip install .` on a worker would pull a CUDA torch from PyPI
    assert not any(r.startswith("accelerate") for r in seen["install_requires"])
    assert all(any(r.startswith("accelerate") for r in seen["extras_require"][extra]) for extra in ("cpu", "gpu"))


def test_a_launcher_without_bubblewrap_can_submit_to_remote_workers(monkeypatch):
    """The sandbox runs on the workers: where they are elsewhere (an external worker pool, Flink, Dataflow), this
    machine's bubblewrap is not asked (a laptop without it refused the job); the workers' sandboxes check their own."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.launch import workers_share_cwd
    from transforms.execute import options as execute_options
    from transforms.execute.isolation import IsolationUnavailable

    asked = []

    def no_bwrap_here(allow_unsandboxed):
        asked.append(allow_unsandboxed)
        raise IsolationUnavailable("bubblewrap cannot run here")

    monkeypatch.setattr(execute_options, "check_isolation", no_bwrap_here)
    remote = PipelineOptions(["--runner=PortableRunner", "--job_endpoint=host:8099", "--environment_type=EXTERNAL",
                              "--environment_config=host:50000"])
    assert execute_options.require_isolation(remote, workers_share_cwd(remote)) and asked == []
    for local in (PipelineOptions([]), PipelineOptions(["--runner=PortableRunner", "--job_endpoint=embed",
                                                        "--environment_type=LOOPBACK"])):
        with pytest.raises(IsolationUnavailable):
            execute_options.require_isolation(local, workers_share_cwd(local))
    assert asked == [False, False]


def test_a_worker_that_cannot_sandbox_fails_the_job_instead_of_every_sample(monkeypatch):
    """On a worker without bubblewrap each sample's sandbox refuses to start: that is the job's error (Beam
    retries and fails it, naming the cause), not a 'failed' verdict for every sample, which pass@k would count."""
    from transforms.execute import isolation, problems, verdicts

    def no_bwrap_here(allow_unsandboxed):
        raise isolation.IsolationUnavailable("bubblewrap cannot run here")

    monkeypatch.setattr(isolation, "check_isolation", no_bwrap_here)
    problem = problems.Problem("T/0", "def one():\n", "one", "def check(candidate):\n    assert candidate() == 1\n")
    with pytest.raises(isolation.IsolationUnavailable):
        verdicts.guarded(verdicts.run_function_tests, problem, "def one():\n    return 1\n")
    # any other trusted-side error stays one program's failed verdict
    assert verdicts.guarded(lambda: 1 / 0).reason.startswith("verifier error: ZeroDivisionError")


def test_remote_workers_size_their_sandbox_pools_by_their_own_cpus(monkeypatch):
    """``--sandbox-workers`` unset: a job whose workers run here takes this machine's CPU count; one whose workers
    run elsewhere leaves the number to each worker (a 2-core launcher used to give 16-core workers 2 sandboxes)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.launch import workers_share_cwd
    from transforms.execute import beam as execute_beam
    from transforms.execute import options as execute_options
    from transforms.execute.isolation import IsolationLimits

    remote = ["--runner=PortableRunner", "--job_endpoint=host:8099", "--environment_type=EXTERNAL",
              "--environment_config=host:50000"]
    monkeypatch.setattr(execute_options.os, "cpu_count", lambda: 2)  # the launcher
    here = PipelineOptions([])
    assert execute_options.sandbox_workers(here, workers_share_cwd(here)) == 2
    elsewhere = PipelineOptions(remote)
    assert execute_options.sandbox_workers(elsewhere, workers_share_cwd(elsewhere)) is None
    assert execute_options.sandbox_workers(PipelineOptions([*remote, "--sandbox-workers=3"]), False) == 3
    assert execute_options.sandbox_max_batch(None) >= 4 * 16 and execute_options.sandbox_max_batch(3) == 12

    monkeypatch.setattr(execute_beam.os, "cpu_count", lambda: 16)  # the worker
    fn = execute_beam.ExecuteSamples(IsolationLimits(timeout_s=1), None)._fn
    fn.setup()
    try:
        assert fn._pool.workers == 16
    finally:
        fn.teardown()
