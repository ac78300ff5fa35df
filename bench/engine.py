"""Engine throughput, called directly and through Beam RunInference, on the same prompts.

    python bench/engine.py                      # both engines, SmolLM2, CPU
    python bench/engine.py --engines vllm --prompts 64 --max-tokens 128
    python bench/engine.py --engines vllm --prompts 1000 --compiled --repeats 2

For each engine it prints generate tokens/s and exact-judging prompts/s called directly, the same work through a
Beam pipeline (``RunInference`` with ``runners.model_handler``), and the ratio pipeline / direct (target >= 0.9).
For vLLM it adds a ``raw`` path: ``vllm.LLM.generate`` on the same prompts and sampling, built with the engine's
own ``vllm.LLM`` arguments, worker cores and CPU libraries (``llm_kwargs``, ``worker_cpu_runtime``: the settings
chosen for this CPU) and vLLM's own processes (``--raw-in-process``: its engine core in this process), judging as one
``max_tokens=1`` request per prompt with ``logprob_token_ids``; raw vLLM uses all its AMX kernels wherever the CPU
has them (as a user of vLLM gets it), the engine as ``--cpu-amx`` says (default ``invariant``: AMX matmuls in
blocks of rows, batch-invariant; ``full``: all, as raw). It reports the engine over raw (target >= 0.95)
and times the three exact scoring methods (``--vllm-score-method``).

The numbers exclude engine start-up: one-element warm-up calls (pipelines, for the pipeline path) load and warm
each path's engine first. Each path runs alone, in a fresh process of its own per round, as a job has one engine:
the paths take turns for ``--repeats`` rounds (which one goes first rotates), and the report gives medians and the
median of the per-round ratios. ``--together`` keeps every path's engine loaded in this process for all rounds
(the bench's design before 2026-12-05): on a 2-core machine the idle engines slow the working one, unevenly.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runners.api import GenerateRequest, SamplingSpec, ScoreRequest, request_seed  # noqa: E402
from runners.engines import VLLM_HOSTS, VLLM_SCORE_METHODS, EngineConfig, build_engine, resolve_dtype  # noqa: E402
from runners.engines.cleanup import close_all_engines  # noqa: E402
from runners.engines.common import eos_ids  # noqa: E402
from runners.engines.config import DTYPES  # noqa: E402
from runners.engines.cpu_runtime import runtime_libraries  # noqa: E402
from runners.engines.vllm_plugin import CPU_AMX_MODES, amx_tiles_usable  # noqa: E402
from runners.hardware import describe_machine  # noqa: E402

CODE = [
    "def add(a, b):\n    return a + b",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
    "    def push(self, x):\n        self.items.append(x)\n\n"
    "    def pop(self):\n        return self.items.pop()",
    "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 3;",
    "fn main() {\n    let v: Vec<i32> = (1..10).filter(|x| x % 2 == 0).collect();\n    println!(\"{:?}\", v);\n}",
    "function debounce(fn, ms) {\n  let t;\n  return (...args) => {\n    clearTimeout(t);\n"
    "    t = setTimeout(() => fn(...args), ms);\n  };\n}",
]
SYSTEM = ("You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable "
          "responses to user instructions.\n\n")


def summarize_prompt(i: int) -> str:
    code = CODE[i % len(CODE)] + f"\n# variant {i}"
    return (f"{SYSTEM}@@ Instruction\nThis is a response code snippet to a programming problem, please give the "
            f"problem description:\n```\n{code}\n```\n\n@@ Response\nWrite a")


def judge_prompt(i: int) -> str:
    code = CODE[i % len(CODE)] + f"\n# variant {i}"
    return (f"{SYSTEM}@@ Instruction\nHere is a programming problem:\nWrite a function for task {i}.\n\n"
            f"Here is the answer code to the problem:\n```\n{code}\n```\n"
            "Is the answer correct? Your reply should begin with Yes or No.\n\n@@ Response\n")


def yes_no_ids(model: str) -> tuple[int, int]:
    """The judge's Yes and No token ids (first token of each word) in ``model``'s tokenizer."""
    from runners.engines import load_tokenizer
    from runners.model_resolution import resolve_model

    tokenizer = load_tokenizer(resolve_model(model))
    return tokenizer("Yes").input_ids[0], tokenizer("No").input_ids[0]


def workload(n_prompts: int, max_tokens: int, yes_no: tuple[int, int], fixed_length: bool = False):
    """``fixed_length``: no stop string and EOS banned, so that every generation runs to ``max_tokens`` whatever
    the kernels' rounding (it changes which token ends a sampled text, and so how many tokens each path makes)."""
    generate = [GenerateRequest(summarize_prompt(i), SamplingSpec(
        n=1, temperature=0.8, top_p=1.0, repetition_penalty=1.1, max_tokens=max_tokens,
        stop=() if fixed_length else ("```",), ban_eos=fixed_length,
        seed=request_seed(f"bench-{i}", 0, 0))) for i in range(n_prompts)]
    # top_n=0: the default (exact) judging mode asks only the Yes/No ids
    score = [ScoreRequest(judge_prompt(i), yes_no, top_n=0) for i in range(n_prompts)]
    return generate, score


# ------------------------------------------------------------------------------------------------ direct

class Direct:
    """The engine called directly, in this process."""

    def __init__(self, config: EngineConfig, generate, score):
        self.config, self.generate_requests, self.score_requests = config, generate, score
        self.engine = build_engine(config)
        self.warm()

    def warm(self) -> None:
        self.engine.generate([self.generate_requests[0].prompt], [self.generate_requests[0].spec])
        self.engine.next_token_logprobs([self.score_requests[0].prompt], [self.score_requests[0].token_ids], [0])

    def generate(self) -> tuple[float, int]:
        """(seconds, generated tokens)."""
        started = time.perf_counter()
        results = self.engine.generate([r.prompt for r in self.generate_requests],
                                       [r.spec for r in self.generate_requests])
        return time.perf_counter() - started, sum(r.n_generated_tokens for r in results)

    def score(self, method: str | None = None) -> float:
        kwargs = {"method": method} if method else {}
        started = time.perf_counter()
        self.engine.next_token_logprobs([r.prompt for r in self.score_requests],
                                        [r.token_ids for r in self.score_requests],
                                        [r.top_n for r in self.score_requests], **kwargs)
        return time.perf_counter() - started

    def close(self) -> None:
        self.engine.close()


class Raw:
    """``vllm.LLM`` itself, with the engine's arguments, on the same prompts and sampling."""

    def __init__(self, config: EngineConfig, generate, score, in_process: bool = False):
        from vllm import LLM, SamplingParams

        from runners.engines.cpu_runtime import environment_while
        from runners.engines.vllm_engine import llm_kwargs, worker_cpu_runtime
        from runners.model_resolution import resolve_model

        # vLLM's own processes, as a user of vllm.LLM gets them; --raw-in-process puts the engine core in this
        # process instead. It measured slower here than in a fresh process (README), likely because this process
        # has set up torch before vLLM binds its threads; bench/compile_choice.py compares fresh processes.
        self.in_process = in_process
        multiprocessing = "0" if self.in_process else (os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") or "1")
        with environment_while("VLLM_ENABLE_V1_MULTIPROCESSING", multiprocessing), worker_cpu_runtime(config):
            # worker_cpu_runtime: the engine's worker cores and CPU libraries too
            model_dir = str(resolve_model(config.model))
            self.llm = LLM(**llm_kwargs(config, model_dir))
        self.prompts = [r.prompt for r in generate]
        banned = {token: -100.0 for token in eos_ids(self.llm.get_tokenizer(), model_dir)}
        self.params = [SamplingParams(n=r.spec.n, temperature=r.spec.temperature, top_p=r.spec.top_p,
                                      repetition_penalty=r.spec.repetition_penalty, seed=r.spec.seed,
                                      stop=list(r.spec.stop) or None, max_tokens=r.spec.max_tokens,
                                      logit_bias=banned if r.spec.ban_eos else None) for r in generate]
        self.judge_prompts = [r.prompt for r in score]
        self.judge_params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(r.token_ids),
                                            detokenize=False) for r in score]
        self.warm()

    def warm(self) -> None:
        self.llm.generate(self.prompts[:1], self.params[:1], use_tqdm=False)
        self.llm.generate(self.judge_prompts[:1], self.judge_params[:1], use_tqdm=False)

    def generate(self) -> tuple[float, int]:
        started = time.perf_counter()
        outputs = self.llm.generate(self.prompts, self.params, use_tqdm=False)
        return time.perf_counter() - started, sum(len(s.token_ids) for o in outputs for s in o.outputs)

    def score(self) -> float:
        started = time.perf_counter()
        self.llm.generate(self.judge_prompts, self.judge_params, use_tqdm=False)
        return time.perf_counter() - started

    def close(self) -> None:
        import gc

        del self.llm
        gc.collect()


# ------------------------------------------------------------------------------------------------ pipeline

def run_pipeline(handler, requests, runner_flags: list[str]) -> tuple[float, int]:
    """(seconds, generated tokens) of ``requests`` through ``RunInference``. The pipeline holds nothing but the
    inference; the token count is the handler's own ``engine.generated_tokens`` counter."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.launch import counter_totals, local_runner
    from runners.model_handler import ENGINE_STAGE, run_inference

    started = time.perf_counter()
    options = PipelineOptions(runner_flags)
    pipeline = beam.Pipeline(runner=local_runner(options), options=options)  # as the jobs run: no Prism
    _ = run_inference(pipeline | beam.Create(requests), handler)
    result = pipeline.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - started
    return seconds, counter_totals(result, f"{ENGINE_STAGE}.").get("generated_tokens", 0)


class ThroughPipeline:
    """The same work through ``RunInference`` in a Beam pipeline (the shared engine stays loaded between runs)."""

    def __init__(self, config: EngineConfig, generate, score, runner_flags: list[str], min_batch: int | None):
        from runners.model_handler import EngineModelHandler

        self.generate_requests, self.score_requests, self.runner_flags = generate, score, runner_flags
        self.handler = EngineModelHandler(config, min_batch_size=min_batch, max_batch_size=max(len(generate), 256))
        self.warm()  # the first time, this also loads the shared engine

    def warm(self) -> None:
        """Both paths, as ``Direct.warm`` does."""
        run_pipeline(self.handler, self.generate_requests[:1], self.runner_flags)
        run_pipeline(self.handler, self.score_requests[:1], self.runner_flags)

    def generate(self) -> tuple[float, int]:
        return run_pipeline(self.handler, self.generate_requests, self.runner_flags)

    def score(self) -> float:
        return run_pipeline(self.handler, self.score_requests, self.runner_flags)[0]

    def close(self) -> None:
        pass


PATHS = ("direct", "pipeline", "raw")


def path_names(engine: str, with_raw: bool) -> list[str]:
    """The paths to time: raw vllm.LLM is vLLM's alone."""
    return [name for name in PATHS if name != "raw" or (engine == "vllm" and with_raw)]


def in_turn(items: list, round_index: int) -> list:
    """``items`` rotated so that each goes first in turn, round after round."""
    shift = round_index % len(items)
    return items[shift:] + items[:shift]


def build_path(name: str, config: EngineConfig, generate, score, runner_flags: list[str], min_batch: int | None,
               raw_in_process: bool = False):
    if name == "direct":
        return Direct(config, generate, score)
    if name == "pipeline":
        return ThroughPipeline(config, generate, score, runner_flags, min_batch)
    if name == "raw":
        return Raw(config, generate, score, raw_in_process)
    raise ValueError(f"unknown path {name!r}: one of {', '.join(PATHS)}")


def time_round(name: str, path, n_score: int, round_label: str) -> dict:
    """One timed round of ``path``: warm, generate, judge."""
    path.warm()
    gen_seconds, tokens = path.generate()
    score_seconds = path.score()
    run = {"generate_tokens_per_s": tokens / gen_seconds, "generated_tokens": tokens,
           "score_prompts_per_s": n_score / score_seconds}
    # a long run (1k prompts: about 20 minutes a round here) shows where it is
    print(f"[{round_label}] {name:8s}: generate {tokens / gen_seconds:8.1f} tokens/s ({tokens} tokens, "
          f"{gen_seconds:.1f} s)   score {n_score / score_seconds:6.2f} prompts/s ({score_seconds:.1f} s)", flush=True)
    return run


def score_methods(direct: "Direct", n_score: int, repeats: int) -> dict:
    return {method: statistics.median(n_score / direct.score(method) for _ in range(repeats))
            for method in VLLM_SCORE_METHODS}


def engine_libraries(config: EngineConfig, direct: "Direct") -> dict:
    """What --cpu-runtime-preload changes: the libraries each engine process has loaded."""
    if config.engine != "vllm":
        return {}
    return {str(pid): runtime_libraries(pid) for pid in direct.engine.engine_pids()}


def measure(config: EngineConfig, generate, score, runner_flags: list[str], min_batch: int | None,
            repeats: int, compare_methods: bool = True, with_raw: bool = True, raw_in_process: bool = False) -> dict:
    """``--together``: every path's engine loaded in this process for all rounds; the paths alternate (and which
    goes first rotates), so a change in the machine's load hits them alike; medians over the repeats. Each timed
    run follows a warm-up call on its own engine, so that it does not pay for waking its engine's threads after
    another engine ran."""
    paths = [(name, build_path(name, config, generate, score, runner_flags, min_batch, raw_in_process))
             for name in path_names(config.engine, with_raw)]
    direct = paths[0][1]
    libraries = engine_libraries(config, direct)
    runs = {name: [] for name, _ in paths}
    methods = {}
    try:
        for r in range(repeats):
            for name, path in in_turn(paths, r):
                time.sleep(2)  # let the other engines' threads stop spinning
                runs[name].append(time_round(name, path, len(score), f"round {r + 1}/{repeats}"))
        if config.engine == "vllm" and compare_methods:
            methods = score_methods(direct, len(score), repeats)
    finally:
        for _, path in paths:
            path.close()
    return report_runs(runs, methods, libraries, raw_in_process, together=True)


def measure_alone(args: argparse.Namespace, engine: str) -> dict:
    """Each path alone: one fresh process per path and round (``--one-path``), so no other engine is loaded while
    a path is timed. The paths take turns, and which goes first rotates. Score methods are timed in the direct
    path's last round."""
    names = path_names(engine, not args.no_raw)
    runs = {name: [] for name in names}
    methods, libraries = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as scratch:
        for r in range(args.repeats):
            for name in in_turn(names, r):
                out = Path(scratch) / f"{name}-{r}.json"
                command = [sys.executable, str(Path(__file__).resolve()), *child_arguments(args, engine),
                           "--one-path", name, "--one-path-out", str(out), "--round-label",
                           f"round {r + 1}/{args.repeats}"]
                if name == "direct" and r == args.repeats - 1 and engine == "vllm" and not args.no_methods:
                    command.append("--one-path-methods")
                subprocess.run(command, check=True)
                result = json.loads(out.read_text())
                runs[name].append(result["run"])
                methods = result.get("score_methods") or methods
                libraries = result.get("engine_process_libraries") or libraries
    return report_runs(runs, methods, libraries, args.raw_in_process, together=False)


def child_arguments(args: argparse.Namespace, engine: str) -> list[str]:
    """The options of this run that decide a path's work, for a ``--one-path`` process."""
    arguments = ["--engines", engine, "--model", args.model, "--prompts", str(args.prompts),
                 "--max-tokens", str(args.max_tokens), "--max-model-len", str(args.max_model_len),
                 "--multi-process", str(args.multi_process), "--dtype", args.dtype, "--vllm-host", args.vllm_host,
                 "--cpu-amx", args.cpu_amx]
    if args.min_batch_size is not None:
        arguments += ["--min-batch-size", str(args.min_batch_size)]
    arguments += [flag for flag, on in (("--compiled", args.compiled), ("--fixed-length", args.fixed_length),
                                        ("--cpu-runtime-preload", args.cpu_runtime_preload),
                                        ("--raw-in-process", args.raw_in_process)) if on]
    return arguments


def run_one_path(args: argparse.Namespace, config: EngineConfig, generate, score, runner_flags: list[str]) -> None:
    """``--one-path``: build one path, time one round, write it to ``--one-path-out``."""
    path = build_path(args.one_path, config, generate, score, runner_flags, args.min_batch_size,
                      args.raw_in_process)
    try:
        result = {"run": time_round(args.one_path, path, len(score), args.round_label)}
        if args.one_path == "direct":
            result["engine_process_libraries"] = engine_libraries(config, path)
            if args.one_path_methods:
                result["score_methods"] = score_methods(path, len(score), 1)
    finally:
        path.close()
        close_all_engines()
    Path(args.one_path_out).write_text(json.dumps(result))


def report_runs(runs: dict[str, list[dict]], methods: dict, libraries: dict, raw_in_process: bool,
                together: bool) -> dict:
    report = {"paths_together": together}
    for name, numbers in runs.items():
        report[name] = {key: statistics.median(run[key] for run in numbers)
                        for key in ("generate_tokens_per_s", "score_prompts_per_s")}
        report[name]["generated_tokens"] = [run["generated_tokens"] for run in numbers]
        report[name]["runs"] = numbers
    if methods:
        report["direct"]["score_methods_prompts_per_s"] = methods
    report["ratio"] = _ratios(runs["pipeline"], runs["direct"])
    if libraries:
        report["engine_process_libraries"] = libraries  # what --cpu-runtime-preload changes
    if "raw" in runs:
        report["engine_over_raw"] = _ratios(runs["direct"], runs["raw"])
        report["raw_in_process"] = raw_in_process
    return report


def _ratios(numerators: list[dict], denominators: list[dict]) -> dict:
    """Per-round ratios of two paths and their medians."""
    ratios = [{key: n[key] / d[key] for key in ("generate_tokens_per_s", "score_prompts_per_s")}
              for n, d in zip(numerators, denominators)]
    return {"generate": statistics.median(r["generate_tokens_per_s"] for r in ratios),
            "score": statistics.median(r["score_prompts_per_s"] for r in ratios), "per_repeat": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="vllm,transformers")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--min-batch-size", type=int, default=None,
                        help="RunInference min batch (handler default if unset)")
    parser.add_argument("--multi-process", type=int, default=0,
                        help="DirectRunner multi_processing with this many workers")
    parser.add_argument("--repeats", type=int, default=4,
                        help="interleaved repeats (even: each path goes first equally often); the report gives medians")
    parser.add_argument("--compiled", action="store_true", help="vLLM with torch.compile (default on CPU: eager)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="the engines' dtype (default auto: bf16 only where the CPU computes it natively)")
    parser.add_argument("--cpu-runtime-preload", action="store_true",
                        help="vLLM on CPU: workers start with TCMalloc and Intel OpenMP preloaded")
    parser.add_argument("--vllm-host", default="auto", choices=VLLM_HOSTS,
                        help="where the engine runs vLLM (default auto: the engine server on CPU); raw vllm.LLM "
                             "always runs its own processes from this one")
    parser.add_argument("--cpu-amx", choices=CPU_AMX_MODES, nargs="?", const="full", default="invariant",
                        help="the engine's AMX mode (the pipeline's --cpu-amx; plain --cpu-amx is full). Raw vllm.LLM "
                             "uses all of vLLM's AMX kernels wherever the CPU has AMX, as a user of vLLM gets it")
    parser.add_argument("--fixed-length", action="store_true",
                        help="every generation runs to --max-tokens (no stop string, EOS banned), so that paths "
                             "whose rounding differs still generate the same number of tokens")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--no-methods", action="store_true", help="skip the comparison of vLLM's scoring methods")
    parser.add_argument("--raw-in-process", action="store_true",
                        help="raw vllm.LLM with its engine core in this process (default: vLLM's own processes)")
    parser.add_argument("--no-raw", action="store_true", help="skip raw vllm.LLM (pipeline over direct only)")
    parser.add_argument("--together", action="store_true",
                        help="keep every path's engine loaded in this process for all rounds (default: each path "
                             "alone, a fresh process per path and round)")
    # internal: one path, one round, in a process of its own (measure_alone)
    parser.add_argument("--one-path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--one-path-out", help=argparse.SUPPRESS)
    parser.add_argument("--one-path-methods", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--round-label", default="round 1/1", help=argparse.SUPPRESS)
    args = parser.parse_args()

    generate, score = workload(args.prompts, args.max_tokens, yes_no_ids(args.model), args.fixed_length)
    runner_flags = ["--runner=DirectRunner"]
    if args.multi_process > 1:
        runner_flags += ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.multi_process}"]
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

    report = {"machine": describe_machine(), "fixed_length": args.fixed_length}
    for engine in args.engines.split(","):
        config = EngineConfig(model=args.model, engine=engine, max_model_len=args.max_model_len,
                              enforce_eager=False if args.compiled else None, dtype=resolve_dtype(args.dtype),
                              cpu_runtime_preload=args.cpu_runtime_preload, vllm_host=args.vllm_host,
                              cpu_amx=args.cpu_amx)
        report[engine] = numbers = {"dtype": config.dtype, "cpu_runtime_preload": config.cpu_runtime_preload,
                                    "cpu_amx": config.cpu_amx, "cpu_has_amx": amx_tiles_usable()}
        if engine == "vllm":
            numbers["vllm_host"] = config.vllm_host_for()
        if args.one_path:
            run_one_path(args, config, generate, score, runner_flags)
            return
        if args.together:
            numbers |= measure(config, generate, score, runner_flags, args.min_batch_size, args.repeats,
                               compare_methods=not args.no_methods, with_raw=not args.no_raw,
                               raw_in_process=args.raw_in_process)
            close_all_engines()
        else:
            numbers |= measure_alone(args, engine)
        direct_numbers, pipeline_numbers = numbers["direct"], numbers["pipeline"]
        print(f"\n== {engine} ({args.prompts} prompts, max_tokens={args.max_tokens}, median of {args.repeats}) ==")
        print(f"direct   : generate {direct_numbers['generate_tokens_per_s']:8.1f} tokens/s "
              f"({direct_numbers['generated_tokens']} tokens)   "
              f"score {direct_numbers['score_prompts_per_s']:6.2f} prompts/s")
        if "score_methods_prompts_per_s" in direct_numbers:
            methods = ", ".join(f"{m} {r:.2f}" for m, r in direct_numbers["score_methods_prompts_per_s"].items())
            print(f"           score methods (prompts/s): {methods}")
        print(f"pipeline : generate {pipeline_numbers['generate_tokens_per_s']:8.1f} tokens/s "
              f"({pipeline_numbers['generated_tokens']} tokens)   "
              f"score {pipeline_numbers['score_prompts_per_s']:6.2f} prompts/s")
        per_repeat = "  ".join(f"{r['generate_tokens_per_s']:.2f}/{r['score_prompts_per_s']:.2f}"
                               for r in numbers["ratio"]["per_repeat"])
        print(f"ratio pipeline/direct (median): generate {numbers['ratio']['generate']:.2f}   "
              f"score {numbers['ratio']['score']:.2f}   (each repeat, generate/score: {per_repeat})", flush=True)
        if "raw" in numbers:
            raw, over = numbers["raw"], numbers["engine_over_raw"]
            print(f"raw vllm : generate {raw['generate_tokens_per_s']:8.1f} tokens/s "
                  f"({raw['generated_tokens']} tokens)   score {raw['score_prompts_per_s']:6.2f} prompts/s")
            per_repeat = "  ".join(f"{r['generate_tokens_per_s']:.2f}/{r['score_prompts_per_s']:.2f}"
                                   for r in over["per_repeat"])
            print(f"ratio engine/raw (median): generate {over['generate']:.2f}   score {over['score']:.2f}   "
                  f"(each repeat: {per_repeat})", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
