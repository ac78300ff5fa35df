"""Eager or compiled vLLM on a CPU from the job's size: the rule (runners.engines.compile_choice), the options'
choice (runners.options.choose_compilation) and the main job's launch (run.json records a compiled choice)."""
import json

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from runners.engines.compile_choice import COMPILE_PAYS_FROM, compile_threshold, compiles
from transforms.instruct.workload import AT_LEAST, AT_MOST, RequestEstimate


def test_compiling_pays_only_where_it_was_measured_to():
    assert compile_threshold("amx_bf16", "bfloat16", "invariant") == COMPILE_PAYS_FROM["instruct"]["amx_bf16"]
    for cpu, dtype, amx in (("avx512_bf16", "bfloat16", "invariant"), (None, "float32", "invariant"),
                            ("amx_bf16", "float32", "invariant"), ("amx_bf16", "bfloat16", "full"),
                            ("amx_bf16", "bfloat16", "off")):
        assert compile_threshold(cpu, dtype, amx) is None, (cpu, dtype, amx)
    # the measured break-even on the AMX machine with the tile kernel: 1,250-1,600 requests (README); the rule sits
    # at its upper end
    assert 1_250 <= COMPILE_PAYS_FROM["instruct"]["amx_bf16"] <= 1_600
    assert compiles(3_300, 3_300) and not compiles(3_299, 3_300) and not compiles(10**9, None)


def test_p3_solve_attempts_compile_from_their_own_measured_break_even():
    """The P3 solve workload's threshold is its own (attempts, not the main job's requests), at or just above the
    largest break-even the bench measured for it (bench/results/compile_choice_p3_solve_*.json), and only on AMX."""
    from pathlib import Path

    threshold = compile_threshold("amx_bf16", "bfloat16", "invariant", "p3_solve")
    assert threshold == COMPILE_PAYS_FROM["p3_solve"]["amx_bf16"] != COMPILE_PAYS_FROM["instruct"]["amx_bf16"]
    runs = [json.loads(path.read_text()) for path in
            (Path(__file__).parents[3] / "bench" / "results").glob("compile_choice_p3_solve_*.json")]
    assert len(runs) >= 2
    assert all(r["workload"] == "p3-solve" and r["machine"]["bf16_feature"] == "amx_bf16" for r in runs)
    largest = max(r["server_break_even_samples"] for r in runs)
    assert largest <= threshold <= 1.25 * largest
    assert compile_threshold("avx512_bf16", "bfloat16", "invariant", "p3_solve") is None
    assert compile_threshold("amx_bf16", "float32", "invariant", "p3_solve") is None
    with pytest.raises(ValueError, match="unknown workload"):
        compile_threshold("amx_bf16", "bfloat16", "invariant", "humaneval")


@pytest.fixture
def amx_cpu(monkeypatch):
    """This process sees an AMX CPU without a GPU, whatever the machine running the tests has."""
    import runners.engines.common as common
    import runners.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_bf16_feature", lambda *a, **k: "amx_bf16")
    monkeypatch.setattr(common, "cuda_available", lambda: False)


def _choose(argv, requests, bound=AT_LEAST, recorded=None):
    from runners.options import EngineOptions, choose_compilation

    options = PipelineOptions(argv)
    asked = []

    def estimate(enough):
        asked.append(enough)
        return RequestEstimate(requests, bound, 100, requests // 10)

    note = choose_compilation(options, estimate, recorded=recorded)
    return note, options.view_as(EngineOptions).enforce_eager, asked


def test_a_large_job_compiles_and_a_small_one_stays_eager(amx_cpu):
    note, eager, asked = _choose([], 5_000)
    assert eager is False and asked == [COMPILE_PAYS_FROM["instruct"]["amx_bf16"]]
    assert "compiled" in note and "at least 5,000 requests" in note and "--enforce-eager keeps it eager" in note
    note, eager, _ = _choose([], 100, AT_MOST)
    assert eager is None and note.startswith("engine: eager") and "at most 100 requests" in note


@pytest.mark.parametrize("argv", [["--enforce-eager"], ["--no-enforce-eager"], ["--engine=fake"],
                                  ["--engine=transformers"], ["--dtype=float32"], ["--cpu-amx=full"],
                                  ["--accelerator=type:nvidia-l4;count:1"]])
def test_no_choice_is_made_over_an_explicit_one_or_where_compiling_was_not_measured_to_pay(amx_cpu, argv):
    from runners.options import EngineOptions

    note, eager, asked = _choose(argv, 10**6)
    assert note is None and asked == [] and eager == PipelineOptions(argv).view_as(EngineOptions).enforce_eager


def test_other_cpus_stay_eager_without_reading_the_corpus(monkeypatch):
    import runners.engines.common as common
    import runners.hardware as hardware

    monkeypatch.setattr(common, "cuda_available", lambda: False)
    for feature in (None, "avx512_bf16"):
        monkeypatch.setattr(hardware, "cpu_bf16_feature", lambda *a, f=feature, **k: f)
        assert _choose(["--dtype=bfloat16"], 10**6) == (None, None, [])


def test_a_resumed_run_keeps_its_compiled_choice_without_estimating(amx_cpu):
    note, eager, asked = _choose([], 10, recorded=False)
    assert eager is False and asked == [] and "as the run being resumed chose" in note


def _write_corpus(path, functions):
    """A JSONL corpus of fenced Python answers, one distinct function per record."""
    with open(path, "w") as f:
        for i in range(functions):
            code = f"def add_{i}(a, b):\n    total = a + b + {i}\n    return total * {i + 1}\n"
            f.write(json.dumps({"instruction": f"Task {i}", "response": f"Here:\n```python\n{code}```\n"}) + "\n")


def test_the_main_job_records_a_compiled_choice_in_run_json_and_keeps_it_on_resume(amx_cpu, monkeypatch, tmp_path,
                                                                                    capsys):
    import runners.engines.compile_choice as rule
    from beam_pipelines.inverse_instruct import JOB
    from beam_pipelines.launch import RUN_FILE, pipeline_options
    from runners.options import EngineOptions, engine_identity

    monkeypatch.setitem(rule.COMPILE_PAYS_FROM, "instruct", {"amx_bf16": 100})
    corpus = tmp_path / "corpus.jsonl"
    _write_corpus(corpus, 30)  # 30 snippets x 5 candidates = 150 requests
    common = [f"--input={corpus}", "--num-candidates=5", "--dtype=bfloat16"]

    small = pipeline_options([f"--output={tmp_path / 'small'}", *common, "--limit=12"], JOB)  # 60 requests
    assert small.view_as(EngineOptions).enforce_eager is None
    assert json.loads((tmp_path / "small" / RUN_FILE).read_text())["arguments"]["enforce_eager"] is None
    assert "engine: eager" in capsys.readouterr().err

    large = pipeline_options([f"--output={tmp_path / 'large'}", *common], JOB)
    assert large.view_as(EngineOptions).enforce_eager is False
    assert json.loads((tmp_path / "large" / RUN_FILE).read_text())["arguments"]["enforce_eager"] is False
    err = capsys.readouterr().err
    assert "compiled" in err and "at least 100 requests (20 snippets in the first 20 records)" in err
    # the inference cache keys compiled answers apart from eager ones
    from runners.options import engine_config_from_options

    compiled_key = json.loads(engine_identity(engine_config_from_options(large)))
    assert compiled_key["enforce_eager"] is False and "enforce_eager" not in json.loads(
        engine_identity(engine_config_from_options(small)))

    # the corpus shrinks below the threshold, but a re-run into the compiled run's directory keeps its choice
    (tmp_path / "large" / "cache").mkdir()
    (tmp_path / "large" / "cache" / "part-0.jsonl").write_text("{}\n")
    _write_corpus(corpus, 10)
    resumed = pipeline_options([f"--output={tmp_path / 'large'}", *common], JOB)
    assert resumed.view_as(EngineOptions).enforce_eager is False
    assert "as the run being resumed chose" in capsys.readouterr().err

    extract_only = pipeline_options([f"--output={tmp_path / 'extract'}", *common, "--stages=extract"], JOB)
    assert extract_only.view_as(EngineOptions).enforce_eager is None


def test_on_code_alpaca_the_estimate_counts_the_snippets_the_pipeline_keeps(shared_data):
    """Read whole, Code Alpaca 2k gives the estimate the snippets the Beam pipeline extracted and deduplicated
    (tests/golden/extract_code_alpaca_2k.json, written from a pipeline run)."""
    from pathlib import Path

    from beam_pipelines.inverse_instruct import estimated_requests
    from transforms.instruct.workload import EXACT

    golden = json.loads((Path(__file__).parents[2] / "golden" / "extract_code_alpaca_2k.json").read_text())
    corpus = [f"--input={shared_data / 'code_alpaca_2k.json'}", "--input-column=input", "--response-column=output",
              "--num-candidates=3"]
    estimate = estimated_requests(PipelineOptions(corpus), 10**9)
    assert estimate.bound == EXACT and estimate.records_read == golden["stages"]["read"]["records_out"]
    assert estimate.requests == 3 * golden["parquet"]["snippets"]["rows"] == 3 * 1547
    undeduplicated = estimated_requests(PipelineOptions([*corpus, "--no-dedup"]), 10**9)
    assert undeduplicated.requests == 3 * golden["stages"]["extract"]["records_out"]
    # a threshold of 3,300 (1,100 snippets at 3 candidates) is reached before the end, and reading stops there
    early = estimated_requests(PipelineOptions(corpus), 3_300)
    assert early.bound == AT_LEAST and early.requests == 3_300 and 1_100 < early.records_read < 2017


def test_the_p3_evaluation_compiles_at_the_papers_attempts_and_stays_eager_below(amx_cpu, shared_data, tmp_path,
                                                                               capsys):
    """228 test puzzles x 100 attempts (the default) compile; x 10 stay eager; a code benchmark is not measured, so
    no choice is made for it."""
    from beam_pipelines.evaluate import JOB
    from beam_pipelines.launch import RUN_FILE, pipeline_options
    from runners.options import EngineOptions
    from transforms.selfplay.p3 import load_p3

    p3 = shared_data / "p3"
    tests = load_p3(p3).test
    assert len(tests) == 228
    common = [f"--benchmark=p3={p3}", "--dtype=bfloat16"]
    paper = pipeline_options([f"--output={tmp_path / 'paper'}", *common], JOB)
    assert paper.view_as(EngineOptions).enforce_eager is False
    assert json.loads((tmp_path / "paper" / RUN_FILE).read_text())["arguments"]["enforce_eager"] is False
    err = capsys.readouterr().err
    shown = int(err.split(" P3 test puzzles x 100 samples")[0].rsplit("(", 1)[1])
    assert shown == 228 and "22,800 attempts" in err and "compiled" in err, err  # every test puzzle can be attempted
    assert "pays from about 7,500 attempts" in err

    small = pipeline_options([f"--output={tmp_path / 'small'}", *common, "--samples-per-problem=10"], JOB)
    assert small.view_as(EngineOptions).enforce_eager is None
    err = capsys.readouterr().err
    assert "engine: eager" in err and f"{shown * 10:,} attempts ({shown} P3 test puzzles x 10 samples)" in err

    code = pipeline_options([f"--output={tmp_path / 'code'}", "--dtype=bfloat16"], JOB)  # HumanEval
    assert code.view_as(EngineOptions).enforce_eager is None and "engine:" not in capsys.readouterr().err


def test_self_play_compiles_when_its_puzzle_samples_alone_reach_the_threshold(amx_cpu, shared_data, tmp_path,
                                                                             capsys):
    from beam_pipelines.launch import pipeline_options
    from beam_pipelines.self_play import JOB
    from runners.options import EngineOptions

    common = [f"--p3-dir={shared_data / 'p3'}", "--dtype=bfloat16"]
    default = pipeline_options([f"--output={tmp_path / 'default'}", *common], JOB)
    assert default.view_as(EngineOptions).enforce_eager is None
    err = capsys.readouterr().err
    assert "engine: eager: the job makes at least 64 attempts (4 prompts x 16 puzzle samples" in err, err
    large = pipeline_options([f"--output={tmp_path / 'large'}", *common, "--num-prompts=118",
                              "--samples-per-prompt=64"], JOB)
    assert large.view_as(EngineOptions).enforce_eager is False
    assert "at least 7,552 attempts" in capsys.readouterr().err
