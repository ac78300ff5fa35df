"""The Beam ModelHandler: one shared engine for two RunInference stages, across SDK worker processes.

The multi-process pipelines run in a subprocess (``python tests/test_model_handler.py ...``, the ``main`` at the
bottom) so that the tests can count engine loads across worker processes and kill the pipeline's parent.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # when run as a script
    sys.path.insert(0, str(REPO))

from runners.api import GenerateRequest, GenerateResult, SamplingSpec, ScoreRequest, ScoreResult, request_seed  # noqa: E402
from runners.engines import EngineConfig  # noqa: E402
from runners.model_handler import EngineModelHandler, engine_identifier, model_identifier_of, request_length  # noqa: E402
from runners.options import engine_config_from_options, handler_from_options  # noqa: E402
from tests.engine_fixtures import VLLM_JOB_OPTIONS, VLLM_TEST_CONFIG  # noqa: E402

ENGINE_PROCESS_MARKERS = ("VLLM", "EngineCore", "runners.engines.server")


# ------------------------------------------------------------------------------------------------ the pipeline

def judge_prompt(code: str, instruction: str) -> str:
    return (f"@@ Instruction\nHere is a programming problem:\n{instruction}\n\n"
            "Here is the answer code to the problem:\n"
            f"{code}\nIs the answer correct? Your reply should begin with Yes or No.\n\n@@ Response\n")


def build_pipeline(pipeline, records: list[dict], handler, yes_no: tuple[int, int], run_seed: int, max_tokens: int,
                   output: str):
    """Two inference stages on one handler, each a plain ``RunInference(handler)`` like the pipeline's stages."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference

    def generate_request(record):
        spec = SamplingSpec(n=1, temperature=0.8, max_tokens=max_tokens, stop=("\n\n",),
                            seed=request_seed(record["id"], 0, run_seed))
        return record["id"], GenerateRequest(prompt=f"Describe what this code does:\n{record['code']}\nIt", spec=spec)

    def score_request(keyed):
        record_id, prediction = keyed
        instruction = "It" + prediction.inference.texts[0]
        return record_id, (instruction, ScoreRequest(prompt=judge_prompt(prediction.example.prompt, instruction),
                                                     token_ids=yes_no))

    def to_json(keyed):
        record_id, (instruction, prediction) = keyed[0], keyed[1]
        return json.dumps({"id": record_id, "instruction": instruction,
                           "logprobs": {str(k): v for k, v in prediction.inference.logprobs.items()}}, sort_keys=True)

    scored_input = (
        pipeline
        | "Records" >> beam.Create(records)
        | "GenerateRequests" >> beam.Map(generate_request)
        | "Summarize" >> RunInference(handler)
        | "ScoreRequests" >> beam.Map(score_request)
    )
    instructions = scored_input | "KeepInstruction" >> beam.Map(lambda kv: (kv[0], kv[1][0]))
    scored = (
        scored_input
        | "OnlyRequest" >> beam.Map(lambda kv: (kv[0], kv[1][1]))
        | "Judge" >> RunInference(handler)
    )
    _ = (
        ({"instruction": instructions, "scored": scored})
        | "Join" >> beam.CoGroupByKey()
        | "Flatten" >> beam.Map(lambda kv: (kv[0], (kv[1]["instruction"][0], kv[1]["scored"][0])))
        | "ToJson" >> beam.Map(to_json)
        | "Write" >> beam.io.WriteToText(output, shard_name_template="", num_shards=1)
    )


def make_records(n: int) -> list[dict]:
    snippets = ["def add(a, b):\n    return a + b", "def rev(s):\n    return s[::-1]",
                "def first(xs):\n    return xs[0] if xs else None",
                "def evens(n):\n    return [i for i in range(n) if i % 2 == 0]"]
    return [{"id": f"rec-{i:04d}", "code": snippets[i % len(snippets)] + f"  # {i}"} for i in range(n)]


def run(engine: str, records: int, workers: int, output: str, load_log: str, max_tokens: int, run_seed: int) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from runners.engines import load_tokenizer
    from runners.model_resolution import resolve_model

    tokenizer = load_tokenizer(resolve_model("smollm2"))
    yes_no = (tokenizer("Yes").input_ids[0], tokenizer("No").input_ids[0])
    config = EngineConfig(engine=engine, max_model_len=1024, kv_cache_gb=1)
    handler = EngineModelHandler(config, load_log=load_log, min_batch_size=1, max_batch_size=16).keyed()
    flags = ["--runner=DirectRunner"]
    if workers > 1:
        flags += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
    with beam.Pipeline(options=PipelineOptions(flags)) as pipeline:
        build_pipeline(pipeline, make_records(records), handler, yes_no, run_seed, max_tokens, output)


def read_output(path: str) -> list[dict]:
    return sorted((json.loads(line) for line in Path(path).read_text().splitlines()), key=lambda r: r["id"])


def pipeline_command(tmp_path: Path, engine: str, records: int, workers: int, max_tokens: int,
                     tag: str = "run") -> tuple[list[str], Path, Path]:
    output, load_log = tmp_path / f"{tag}.jsonl", tmp_path / f"{tag}.loads"
    command = [sys.executable, str(Path(__file__).resolve()), "--engine", engine, "--records", str(records),
               "--workers", str(workers), "--output", str(output), "--load-log", str(load_log),
               "--max-tokens", str(max_tokens)]
    return command, output, load_log


def subprocess_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "VLLM_CPU_KVCACHE_SPACE": "1"}


def engine_processes(exclude: set[int]) -> list:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        if proc.info["pid"] in exclude or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        text = proc.info["name"] + " " + " ".join(proc.info["cmdline"] or [])
        if any(marker in text for marker in ENGINE_PROCESS_MARKERS):
            found.append(proc)
    return found


# ------------------------------------------------------------------------------------------------ unit tests

def test_handlers_for_the_same_config_share_one_identifier():
    config = EngineConfig(engine="transformers", max_model_len=1024)
    assert EngineModelHandler(config).model_identifier == EngineModelHandler(config).model_identifier
    assert (EngineModelHandler(config).model_identifier
            != EngineModelHandler(EngineConfig(engine="vllm")).model_identifier)
    assert engine_identifier(config, nonce="a") != engine_identifier(config, nonce="b")  # other launches never connect
    keyed = EngineModelHandler(config).keyed()
    assert model_identifier_of(keyed) == EngineModelHandler(config).model_identifier
    assert not keyed.share_model_across_processes()  # the engine has its own MultiProcessShared; the EngineRef need not


def test_the_job_tests_options_name_the_engine_the_handler_tests_share(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    # The jobs build their handler this way: keyed, behind the inference cache.
    job_handler = handler_from_options(PipelineOptions(list(VLLM_JOB_OPTIONS)), cache_root=str(tmp_path))
    assert model_identifier_of(job_handler) == EngineModelHandler(VLLM_TEST_CONFIG).model_identifier
    assert model_identifier_of(job_handler) != EngineModelHandler(
        engine_config_from_options(PipelineOptions(["--engine=vllm"]))).model_identifier  # the job's defaults differ


def test_batching_and_resource_hints():
    vllm_handler = EngineModelHandler(EngineConfig(engine="vllm"),
                                      accelerator="type:nvidia-tesla-t4;count:1;install-nvidia-driver")
    assert vllm_handler.get_resource_hints() == {"accelerator": "type:nvidia-tesla-t4;count:1;install-nvidia-driver"}
    assert vllm_handler.batch_elements_kwargs() == {"min_batch_size": 64, "max_batch_size": 256}
    cpu_handler = EngineModelHandler(EngineConfig(engine="transformers"), max_batch_size=4)
    assert cpu_handler.get_resource_hints() == {}
    kwargs = cpu_handler.batch_elements_kwargs()
    assert kwargs["max_batch_size"] == 4 and kwargs["length_fn"] is request_length
    request = ScoreRequest(prompt="abc", token_ids=(1,))
    assert request_length(request) == request_length(("id", request)) == 3


def test_request_seed_is_stable_and_distinct():
    assert request_seed("rec-1", 0, 7) == request_seed("rec-1", 0, 7)
    seeds = {request_seed(f"rec-{i}", c, 7) for i in range(50) for c in range(10)}
    assert len(seeds) == 500
    assert request_seed("rec-1", 0, 7) != request_seed("rec-1", 0, 8)
    assert all(0 <= s < 2**31 for s in seeds)
    # A fixed value: the seed must not change between releases, or re-runs stop being reproducible.
    assert request_seed("rec-1", 3, 42) == int.from_bytes(
        __import__("hashlib").sha256(b"42\x1frec-1\x1f3").digest()[:8], "big") % (2**31 - 1)


@pytest.mark.engine
def test_run_inference_mixes_both_request_kinds_in_one_batch(transformers_engine):  # noqa: F811
    handler = EngineModelHandler(EngineConfig(engine="transformers", max_model_len=2048))
    handler.load_model()
    yes = transformers_engine.tokenizer("Yes").input_ids[0]
    batch = [ScoreRequest("Is water wet? Answer:", (yes,)),
             GenerateRequest("def f(x):", SamplingSpec(max_tokens=4, seed=3)),
             ScoreRequest("Is fire cold? Answer:", (yes,))]
    results = list(handler.run_inference(batch, model=None))
    assert [type(r.inference) for r in results] == [ScoreResult, GenerateResult, ScoreResult]
    assert [r.example for r in results] == batch
    direct = transformers_engine.next_token_logprobs([batch[0].prompt], [(yes,)])[0]
    assert results[0].inference.logprobs[yes] == pytest.approx(direct.logprobs[yes], abs=1e-4)
    with pytest.raises(TypeError, match="GenerateRequest or ScoreRequest"):
        handler.run_inference(["not a request"], model=None)


@pytest.mark.engine
def test_seeded_pipeline_reruns_are_byte_identical(tmp_path):
    """In-process DirectRunner, transformers engine: two runs of the same config write the same bytes."""
    runs = []
    for attempt in ("first", "second"):
        output = tmp_path / f"{attempt}.jsonl"
        run("transformers", records=4, workers=1, output=str(output), load_log=str(tmp_path / "loads"), max_tokens=8,
            run_seed=3)
        runs.append(output.read_bytes())
    assert runs[0] == runs[1]
    assert len(runs[0].splitlines()) == 4
    # The engine is shared across the two pipelines of this process: loaded once.
    assert len((tmp_path / "loads").read_text().splitlines()) == 1
    other_seed = tmp_path / "other.jsonl"
    run("transformers", records=4, workers=1, output=str(other_seed), load_log=str(tmp_path / "loads"), max_tokens=8,
        run_seed=4)
    assert other_seed.read_bytes() != runs[0]


# ------------------------------------------------------------------------------------------------ multi-process

def _root_cause(stderr: str) -> str:
    """The error lines of a failed run (an engine's root cause comes long before the last traceback)."""
    errors = [line for line in stderr.splitlines() if "Error" in line and not line.lstrip().startswith("File ")]
    return "\n".join(errors[:20]) + "\n...\n" + stderr[-2000:]


@pytest.mark.engine
def test_two_stages_two_workers_load_the_vllm_engine_exactly_once(tmp_path):
    command, output, load_log = pipeline_command(tmp_path, "vllm", records=6, workers=2, max_tokens=12)
    before = {p.pid for p in engine_processes(set())}
    completed = subprocess.run(command + ["--run-seed", "5"], env=subprocess_env(), cwd=REPO, capture_output=True,
                               text=True, timeout=900)
    assert completed.returncode == 0, _root_cause(completed.stderr)
    loads = load_log.read_text().splitlines()
    assert len(loads) == 1, loads
    results = read_output(str(output))
    assert [r["id"] for r in results] == [f"rec-{i:04d}" for i in range(6)]
    assert all(len(r["logprobs"]) == 2 and all(v < 0 for v in r["logprobs"].values()) for r in results)
    # Both stages ran in SDK worker processes, not in this test process, and left no engine behind.
    assert int(loads[0].split("\t")[0]) != os.getpid()
    time.sleep(2)
    assert [p.pid for p in engine_processes(before)] == []


@pytest.mark.engine
def test_killing_the_pipeline_leaves_no_engine_process(tmp_path):
    """SIGKILL the SDK worker that hosts the engine (no Python cleanup runs there: the engine's watchdog must
    stop the engine server), then SIGKILL the pipeline's parent: nothing may survive either."""
    import psutil

    command, _, load_log = pipeline_command(tmp_path, "vllm", records=64, workers=2, max_tokens=64, tag="killed")
    before = {p.pid for p in engine_processes(set())}
    proc = subprocess.Popen(command + ["--run-seed", "1"], env=subprocess_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 600
        while not (load_log.exists() and load_log.read_text().strip()):
            assert proc.poll() is None, "pipeline exited before the engine was loaded"
            assert time.time() < deadline, "engine did not load in time"
            time.sleep(1)
        time.sleep(3)  # let it serve some requests
        tree = psutil.Process(proc.pid).children(recursive=True)
        host = psutil.Process(int(load_log.read_text().split("\t")[0]))
        engine = [p for p in host.children(recursive=True) if p.pid in {e.pid for e in engine_processes(before)}]
        assert engine, "no engine process to kill"

        host.kill()
        _wait_until(lambda: not any(_alive(p) for p in engine), timeout=30)
        assert [p.pid for p in engine if _alive(p)] == [], "engine outlived the process that owned it"

        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        _wait_until(lambda: not engine_processes(before) and not any(_alive(p) for p in tree), timeout=60)
        assert [p.pid for p in engine_processes(before)] == []
        assert [p.pid for p in tree if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()


def _wait_until(condition, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not condition():
        time.sleep(0.5)


def _alive(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


from tests.engine_fixtures import smollm2_dir, transformers_engine  # noqa: E402,F401  (fixtures)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Two-stage RunInference pipeline used by the tests above.")
    parser.add_argument("--engine", default="vllm")
    parser.add_argument("--records", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", required=True)
    parser.add_argument("--load-log", required=True)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--run-seed", type=int, default=0)
    args = parser.parse_args()
    run(args.engine, args.records, args.workers, args.output, args.load_log, args.max_tokens, args.run_seed)
