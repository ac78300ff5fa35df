"""Two attention paths inside the Trainer, alternated per optimizer step, in a crossover over two runs.

    python bench/train_attention_crossover.py [--paths length_aware,sdpa] [--runs 2] [--steps 12]
        [--global-batch 32] [--per-device-batch 16] [--unpad-max-padding 0.2] [--compile-layers on]
        [--json-out FILE]

Why: whole ``bench/train.py`` runs of ``length_aware`` against ``sdpa`` disagreed from one afternoon to the next
(0.82x in a paired A/B, 1.13x in a profiled pair, single runs of one setting 200-294 tokens per CPU-second on a
noisy host), and the one-process probe (``bench/train_attention_probe.py``) is not the Trainer. Here the real job
(``bench/train.py``'s ``bench_run``: ``training.finetune.run``, its Trainer, unpadded groups, compiled layers) runs
with an attention that takes one path for a whole optimizer step and the other for the next, so the two paths
share the host's state minute by minute. Run ``i`` starts with path ``i mod 2``: each step's examples go through
path A in one run and path B in the other, so the data's differences cancel when both runs are pooled.

Reported, over the steady steps (after the first, ``compiled_graphs`` unchanged; the first flips compile each
path's graphs): per run and pooled, each path's tokens per CPU-second; and per step that is steady in two runs
with different paths, the CPU-time ratio of the same examples (median).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

PATHS = ("length_aware", "sdpa")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default=",".join(PATHS), help="two of: " + ", ".join(PATHS))
    parser.add_argument("--runs", type=int, default=2, help="runs, the first path alternating (even: balanced)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--per-device-batch", type=int, default=16)
    parser.add_argument("--unpad-max-padding", default="0.2")
    parser.add_argument("--compile-layers", default="on", choices=("auto", "on", "off"))
    parser.add_argument("--first-path", default=None, help=argparse.SUPPRESS)  # a child run
    parser.add_argument("--json-out", default=None)
    return parser.parse_args(argv)


def paths_of(setting: str) -> tuple[str, str]:
    paths = tuple(setting.split(","))
    if len(paths) != 2 or len(set(paths)) != 2 or not set(paths) <= set(PATHS):
        raise SystemExit(f"--paths takes two different paths of {PATHS}, got {setting!r}")
    return paths


def steady_indices(compiled_graphs: list[int | None] | None, steps: int) -> list[int]:
    """0-based indices of ``bench/train.py``'s steady steps (``steady_steps``: after the first, no graph compiled)."""
    from train import steady_steps

    graphs = compiled_graphs if compiled_graphs is not None else [None] * steps
    return [step["index"] for step in steady_steps([{"index": i, "compiled_graphs": graphs[i]} for i in range(steps)])]


def crossover(runs: list[dict], paths: tuple[str, str]) -> dict:
    """Each of ``paths``' tokens per CPU-second over the runs' steady steps, per run and pooled, and the median
    CPU-time ratio of the same step (same examples) run through the second path over the first.

    A run: ``step_paths`` (the path of each step), ``step_cpu_seconds``, ``step_real_tokens`` and
    ``compiled_graphs`` (None when eager), as ``bench/train.py`` reports them plus the paths."""
    if not runs:
        raise ValueError("no runs")
    unknown = {path for run in runs for path in run["step_paths"]} - set(paths)
    if unknown:
        raise ValueError(f"steps ran paths {sorted(unknown)} outside {paths}")
    tokens = {path: 0 for path in paths}
    cpu = {path: 0.0 for path in paths}
    per_run = []
    by_step: dict[int, dict[str, list[float]]] = {}
    for run in runs:
        count = len(run["step_paths"])
        if not (count == len(run["step_cpu_seconds"]) == len(run["step_real_tokens"])):
            raise ValueError(f"a run's per-step lists differ in length: {count} paths, "
                             f"{len(run['step_cpu_seconds'])} CPU times, {len(run['step_real_tokens'])} token counts")
        steady = steady_indices(run.get("compiled_graphs"), count)
        run_tokens = {path: 0 for path in paths}
        run_cpu = {path: 0.0 for path in paths}
        for i in steady:
            path = run["step_paths"][i]
            run_tokens[path] += run["step_real_tokens"][i]
            run_cpu[path] += run["step_cpu_seconds"][i]
            by_step.setdefault(i, {}).setdefault(path, []).append(run["step_cpu_seconds"][i])
        for path in paths:
            tokens[path] += run_tokens[path]
            cpu[path] += run_cpu[path]
        per_run.append({"first_path": run["step_paths"][0], "steady_steps": len(steady),
                        "tokens_per_cpu_second": {p: round(run_tokens[p] / run_cpu[p], 1) if run_cpu[p] else None
                                                  for p in paths}})
    pooled = {p: round(tokens[p] / cpu[p], 1) if cpu[p] else None for p in paths}
    first, second = paths
    ratios = [statistics.mean(seen[second]) / statistics.mean(seen[first])
              for seen in by_step.values() if first in seen and second in seen]
    return {"paths": paths, "per_run": per_run, "pooled_tokens_per_cpu_second": pooled,
            "pooled_steady_tokens": tokens,
            f"pooled_{first}_over_{second}": (round(pooled[first] / pooled[second], 3)
                                              if pooled[first] and pooled[second] else None),
            "paired_steps": len(ratios),
            f"paired_median_cpu_{second}_over_{first}": round(statistics.median(ratios), 3) if ratios else None}


def child(args: argparse.Namespace) -> dict:
    """One run: ``bench/train.py``'s job with the attention switched after every optimizer step."""
    from torch.optim.optimizer import register_optimizer_step_post_hook
    from train import bench_run
    from train import parse_args as bench_args

    import training.attention as attention

    first, second = paths_of(args.paths)
    state = {"path": args.first_path}
    attention.length_aware_attention = attention.switchable_attention(lambda: state["path"])
    step_paths: list[str] = []

    def after_optimizer_step(optimizer, hook_args, hook_kwargs):
        step_paths.append(state["path"])
        state["path"] = second if state["path"] == first else first

    handle = register_optimizer_step_post_hook(after_optimizer_step)
    try:
        report = bench_run(bench_args([
            "--steps", str(args.steps), "--global-batch", str(args.global_batch),
            "--per-device-batch", str(args.per_device_batch), "--unpad-max-padding", args.unpad_max_padding,
            "--compile-layers", args.compile_layers, "--attention", attention.LENGTH_AWARE, "--precision", "bf16",
            "--pack-rows", "off", "--no-peaks"]))  # the switch replaces the unpacked kernel
    finally:
        handle.remove()
    if len(step_paths) != report["steps"]:
        raise SystemExit(f"{len(step_paths)} optimizer steps for {report['steps']} logged steps")
    report["step_paths"] = step_paths
    return report


def main(argv=None) -> dict:
    args = parse_args(argv)
    paths = paths_of(args.paths)
    if args.first_path is not None:
        report = child(args)
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return report
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-crossover-") as tmp:
        for index in range(args.runs):
            out = Path(tmp) / f"run-{index}.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--paths", args.paths, "--steps",
                       str(args.steps), "--global-batch", str(args.global_batch), "--per-device-batch",
                       str(args.per_device_batch), "--unpad-max-padding", args.unpad_max_padding, "--compile-layers",
                       args.compile_layers, "--first-path", paths[index % 2], "--json-out", str(out)]
            print(f"[crossover] run {index + 1}: {' '.join(command)}", file=sys.stderr, flush=True)
            subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
            runs.append(json.loads(out.read_text()))
    keep = ("step_paths", "step_cpu_seconds", "step_real_tokens", "compiled_graphs", "tokens_per_cpu_second",
            "allocator", "torch_threads", "host_before", "host_after")
    result = {"settings": {k: v for k, v in vars(args).items() if k not in ("first_path", "json_out")},
              **crossover(runs, paths), "runs": [{k: run.get(k) for k in keep} for run in runs],
              "machine": runs[0].get("machine")}
    print(json.dumps(result, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    from training.allocator import restart_with_tcmalloc

    restart_with_tcmalloc()  # as the training job's entry points do
    main()
