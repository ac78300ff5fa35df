"""The self-play loop (babysit.sh of the ICLR 2023 reference): R rounds of generate -> filter -> solve -> verify ->
shards -> merge with the earlier rounds -> fine-tune -> evaluate on the P3 test puzzles.

    inverse-instruct self-play-loop --p3-dir ../shared/data/p3 --rounds 1 --output runs/sp-loop \\
        --self-play-args "--num-prompts 4 --samples-per-prompt 32 --solve-attempts 32" \\
        --eval-args "--samples-per-problem 2 --problem-limit 20" --pass-k 1,2 --eval-epochs last   # CPU, small
    inverse-instruct self-play-loop --p3-dir data/p3 --rounds 3 --output runs/sp-neo --model EleutherAI/gpt-neo-125M \\
        --self-play-args "--num-prompts 1563 --samples-per-prompt 64 --solve-attempts 128" \\
        --eval-args "--samples-per-problem 100"      # fine-tunes on one GPU at batch 4, as the reference

Round r generates and solves with model M_r (M_0 = ``--model``), then fine-tunes the BASE model on the verified
pairs of rounds 0..r (the reference fine-tunes from the base each round, ``TRAIN_INCREMENTAL=0``) in one-epoch
stages (``--train-epochs``, 4: babysit.sh's ``EPOCHS_MAX``; each stage continues from the previous one's weights
with a fresh warm-up, as fine_tune1.sh's steps do) and evaluates each epoch's model on the 228 P3 test puzzles, as
fine_tune1.sh does (``--eval-epochs last``: the last only). M_{r+1} is the last epoch's model, as gen.sh takes
``epoch_$EPOCHS_MAX``. The base model is evaluated once, as row 0. The default
evaluation (all 228 test puzzles, n=10) takes hours on a CPU: on a small machine cut it with ``--eval-args``
(``--problem-limit``, ``--samples-per-problem``); every row records the problems and n its evaluation used. Each
k of ``--pass-k`` must be one the evaluation computes (k <= its ``--samples-per-problem``), checked before any work.
A round whose merged training set is empty trains nothing: its row says so (``trained: false`` and why) and its
pass@k is the previous model's evaluation, reused.

Round r's training set is one merged set (``beam_pipelines.self_play_merge``, the reference's preprocess.py over
every iteration's data): per puzzle text, up to 8 (the self-play job's ``--max-solutions``) distinct solutions
across rounds 0..r, shortest first; equal examples once; shuffled by a hash seeded with ``--run-seed`` and cut to
round r's cap (25,000 at round 0, 1,000,000 later; an ``--example-cap`` in ``--self-play-args`` holds for the merge
too). Round 0 goes through the merge as well, so its training set is the same whatever the number of rounds.

Each step writes its own directory (``base-eval/``, ``round-<r>/self-play/``, ``round-<r>/training-merged/``,
``round-<r>/train/``, ``round-<r>/eval-epoch-<e>/``) and a step that already finished is not redone, so a re-run
after a stop continues. Every step runs as its own process (its engine starts and stops with it). ``summary.json`` and
``summary.md`` hold the table across rounds: verified pairs, the examples of the merged training set, whether the
round fine-tuned, P3 pass@k and the problems x samples per problem of that evaluation.
``--output`` is a local directory (it holds the steps' state). Round r's self-play runs with its own run seed,
derived from ``--run-seed`` and r (``round_seed``), so rounds draw other prompts and samples; the summary records
each.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from beam_pipelines.steps import (
    DriverParser,
    check_step_command,
    check_train_batch,
    refusals_exit_2,
    require_local_output,
    run_step,
    train_resume_arguments,
    write_text_atomic,
)

DEFAULT_KS = (1, 10)
MERGED = "training-merged"  # round r's directory of its training set, the merged pairs of rounds 0..r


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = DriverParser(prog="inverse-instruct self-play-loop",  # the docstring is the epilog
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--output", required=True, help="The loop's directory (a local path).")
    parser.add_argument("--p3-dir", required=True, help="P3's puzzles.json and split.json.")
    parser.add_argument("--rounds", type=int, default=1,
                        help="Self-play rounds after the base evaluation (0: the base evaluation only).")
    parser.add_argument("--model", default="smollm2", help="M_0: the model of round 0's generate and solve steps.")
    parser.add_argument("--train-model", default=None,
                        help="The base model every round fine-tunes (default: --model, as the reference).")
    parser.add_argument("--engine", default="vllm", help="Engine of the generate, solve and evaluate steps.")
    parser.add_argument("--train-config", default=str(Path(__file__).resolve().parents[1] / "training" / "configs"
                                                      / "self_play.yaml"))
    parser.add_argument("--train-epochs", type=float, default=4.0,
                        help="Epochs per round's fine-tune, trained as one-epoch stages (babysit.sh stops at 4; a "
                             "fraction makes a last, shorter stage).")
    parser.add_argument("--eval-epochs", choices=("each", "last"), default="each",
                        help="Evaluate every epoch's model on the P3 test puzzles, as the reference does (each), "
                             "or only the last one, M_{r+1} (last: a quarter of the evaluation time at 4 epochs).")
    parser.add_argument("--train-launcher", default="",
                        help='e.g. "torchrun --nproc_per_node 8"; default: one process.')
    parser.add_argument("--self-play-args", default="", help="Extra options of every round's self-play job.")
    parser.add_argument("--train-args", default="",
                        help='Extra training overrides, e.g. "--set per_device_batch_size=2".')
    parser.add_argument("--eval-args", default="--samples-per-problem 10",
                        help="Extra options of every P3 evaluation (default: n=10 at the paper's T 0.8).")
    parser.add_argument("--pass-k", default="1,10",
                        help="The k of the summary table; each at most the evaluation's --samples-per-problem "
                             "(refused before any work otherwise).")
    parser.add_argument("--run-seed", type=int, default=0,
                        help="Base seed: round r's self-play job runs with --run-seed round_seed(this, r).")
    args = parser.parse_args(argv)
    require_local_output(parser, args.output)
    if args.rounds < 0:
        parser.error(f"--rounds must be 0 (the base evaluation only) or more, got {args.rounds}")
    if not args.train_epochs > 0:
        parser.error(f"--train-epochs must be more than 0, got {args.train_epochs:g}")
    if any(w == "--run-seed" or w.startswith("--run-seed=") for w in shlex.split(args.self_play_args)):
        parser.error("--self-play-args must not set --run-seed: each round derives its own from the loop's --run-seed")
    try:
        args.ks = tuple(int(k) for k in args.pass_k.split(","))
    except ValueError:
        parser.error(f"--pass-k must be comma-separated integers, got {args.pass_k!r}")
    if any(k < 1 for k in args.ks):
        parser.error(f"--pass-k {args.pass_k}: every k must be at least 1")
    from beam_pipelines import evaluate, self_play
    from transforms.selfplay.solve import check_p3_folder

    try:  # the loop's own option, before the steps' checks (which read it too) would name their pass-through args
        check_p3_folder(args.p3_dir)
    except ValueError as err:
        parser.error(f"--p3-dir: {err}")
    # Round 0's self-play and the base evaluation, as the loop will run them (later rounds differ in the model).
    output = Path(args.output)
    round_0 = output / "round-0" / "self-play"
    self_play_0 = _self_play_command(args, args.model, 0, round_seed(args.run_seed, 0), round_0)
    check_step_command(parser, "the self-play step (--self-play-args)", self_play_0[3:], self_play.JOB)
    evaluate_base = _eval_command(args, args.model, output / "base-eval")[3:]
    check_step_command(parser, "the evaluate step (--eval-args)", evaluate_base, evaluate.JOB)
    check_pass_k(parser, args)
    return args


def _self_play_command(args, model: str, r: int, seed: int, out: Path) -> list[str]:
    return [sys.executable, "-m", "beam_pipelines.self_play", f"--p3-dir={args.p3_dir}", f"--model={model}",
            f"--engine={args.engine}", f"--iteration={r}", f"--run-seed={seed}", f"--output={out}",
            *shlex.split(args.self_play_args)]


def _eval_command(args, model: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "beam_pipelines.evaluate", f"--benchmark=p3={args.p3_dir}", f"--model={model}",
            f"--engine={args.engine}", f"--output={out}", *shlex.split(args.eval_args)]


def eval_settings_of(args):
    """The settings every evaluation of the loop runs with: its command's options (``--eval-args``, with the
    evaluation job's profile) read by the evaluation job's own parser."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.evaluate import JOB
    from beam_pipelines.launch import with_profile
    from transforms.execute.options import eval_settings

    return eval_settings(PipelineOptions(with_profile(_eval_command(args, args.model, Path(args.output))[3:], JOB)))


def check_pass_k(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (before any work) a k of ``--pass-k`` that the evaluations will not compute, which would leave its
    column empty: k above ``--samples-per-problem`` (n), or outside the evaluation's own ``--pass-k``."""
    try:
        settings = eval_settings_of(args)
    except Exception as error:  # noqa: BLE001  (the evaluation would refuse the same options)
        parser.error(f"--eval-args: {error}")
    missing = [k for k in args.ks if k not in settings.ks]
    if not missing:
        return
    over = [k for k in missing if k > settings.samples]
    if over:
        parser.error(f"--pass-k {args.pass_k} asks for pass@{','.join(map(str, over))} but each evaluation draws "
                     f"n={settings.samples} sample(s) per problem (--eval-args {args.eval_args!r}): give --pass-k "
                     f"with every k <= {settings.samples}, or a larger --samples-per-problem in --eval-args")
    parser.error(f"--pass-k {args.pass_k}: the evaluation computes only pass@{','.join(map(str, settings.ks))} "
                 f"(--eval-args {args.eval_args!r}), not pass@{','.join(map(str, missing))}")


def round_seed(base: int, round_index: int) -> int:
    """Round ``round_index``'s run seed: a deterministic function of the base seed and the round (the reference
    draws each iteration unseeded), so no two rounds regenerate the same prompts and samples."""
    digest = hashlib.sha256(f"self-play-loop/{base}/{round_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def epoch_stages(epochs: float) -> list[tuple[str, float]]:
    """A round's fine-tune as the reference's one-epoch steps: (stage name, its epochs); a fraction of an epoch
    is a last, shorter stage (``2.5`` -> 1, 1, 0.5)."""
    whole, part = int(epochs), round(epochs - int(epochs), 6)
    sizes = [1.0] * whole + ([part] if part > 0 else [])
    return [(f"epoch_{i + 1}", size) for i, size in enumerate(sizes)]


def _step(name: str, command: list[str], log: Path, done: Path, **kwargs) -> None:
    run_step("self-play-loop", name, command, log, done, **kwargs)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _evaluate(args, model: str, out: Path, upstream: Sequence[Path] = ()) -> None:
    _step(f"evaluate {model}", _eval_command(args, model, out), out.with_suffix(".log"), out / "summary.json",
          upstream=upstream)


def _merge(args, r: int, rounds: Sequence[Path], round_dir: Path) -> dict[str, Any]:
    """Round ``r``'s training set: the verified pairs of ``rounds`` (0..r) merged, at round r's own cap (the one
    its self-play job recorded, so an ``--example-cap`` of ``--self-play-args`` holds here too). Returns the merge's
    summary."""
    merged = round_dir / MERGED
    cap = _read(rounds[-1] / "manifest.json").get("settings", {}).get("example_cap")
    command = [sys.executable, "-m", "beam_pipelines.self_play_merge", *(f"--round={sp}" for sp in rounds),
               f"--iteration={r}", *([f"--example-cap={cap}"] if cap is not None else []),
               f"--run-seed={args.run_seed}", f"--output={merged}"]
    _step(f"round {r}: merge the verified pairs of rounds 0..{r}", command, round_dir / f"{MERGED}.log",
          merged / "summary.json", upstream=[sp / "summary.json" for sp in rounds])
    return _read(merged / "summary.json")


def _why_empty(merged: dict[str, Any], r: int) -> str:
    """Why round ``r``'s merged set is empty, from the merge's summary: no verified pair in rounds 0..r, or the
    cap (an ``--example-cap`` of 0) dropped every example."""
    pairs = merged.get("pairs_in") or 0
    if not pairs:
        return f"no verified pair in rounds 0..{r} yet"
    return (f"the merged set is empty after the cap: {pairs} verified pair(s) in rounds 0..{r}, "
            f"{merged.get('over_example_cap') or 0} example(s) over the example cap of {merged.get('example_cap')}")


def _row(label: str, model: str, eval_dir: Path, ks: Sequence[int], generated: dict | None = None,
         examples: int | None = None, run_seed: int | None = None, generated_by: str | None = None,
         not_trained: str | None = None, trained_marker: Path | None = None,
         epoch: tuple[int, int] | None = None) -> dict[str, Any]:
    """One table row. ``model`` is the model evaluated (M_{r+1} for round r); ``generated_by`` the one whose
    puzzles and solutions the round's counts are (M_r). ``not_trained``: why the round fine-tuned nothing (its
    ``model`` is then the previous one, its evaluation reused). ``epoch``: (epoch, epochs) of the fine-tune's stage
    evaluated. The problems and samples per problem are the evaluation's own (its summary.json)."""
    evaluation = _read(eval_dir / "summary.json")
    row = {"round": label, "model": model, "p3": {f"pass@{k}": evaluation.get(f"pass@{k}") for k in ks},
           "p3_solved": len(evaluation.get("solved", [])) if evaluation else None,
           "p3_problems": evaluation.get("problems"), "p3_samples_per_problem": evaluation.get("samples_per_problem"),
           "evaluation": eval_dir.parent.name + "/" + eval_dir.name if eval_dir.parent.name.startswith("round-")
           else eval_dir.name}
    if label != "base":
        row["trained"] = not_trained is None
        if not_trained is not None:
            row["not_trained"] = f"not trained: {not_trained}; evaluated model = previous ({model})"
    if epoch is not None:
        row["epoch"], row["epochs"] = epoch
    if trained_marker is not None:
        stage = _read(trained_marker)
        row["fine_tune_steps"] = stage.get("global_steps")
        row["peak_lr_fraction"] = stage.get("peak_lr_fraction")
    if generated_by is not None:
        row["generated_by"] = generated_by
    if generated is not None:
        row.update({key: generated.get(key) for key in (
            "samples", "kept_by_filter", "distinct_puzzles", "solved_puzzles", "verified_pairs")})
        row["training_examples_so_far"] = examples
        row["run_seed"] = run_seed
    return row


def table(rows: list[dict[str, Any]], ks: Sequence[int]) -> str:
    from transforms.stats.report import (  # the report's cells too
        loop_evaluation_cell,
        loop_fine_tune_cell,
        loop_round_label,
    )

    head = ["round", "self-play with", "samples", "kept by filters", "solved puzzles", "verified pairs",
            "training examples (rounds so far)", "fine-tuned", "evaluated model", "P3 problems x samples",
            *(f"P3 pass@{k}" for k in ks)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [loop_round_label(r), r.get("generated_by", ""), r.get("samples", ""), r.get("kept_by_filter", ""),
                 r.get("solved_puzzles", ""), r.get("verified_pairs", ""), r.get("training_examples_so_far", ""),
                 loop_fine_tune_cell(r), r["model"], loop_evaluation_cell(r), *(r["p3"][f"pass@{k}"] for k in ks)]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


@refusals_exit_2
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.output)
    check_train_batch("self-play-loop", args.train_config, [], args.train_args, args.train_launcher)
    out.mkdir(parents=True, exist_ok=True)
    ks = args.ks
    _evaluate(args, args.model, out / "base-eval")
    rows = [_row("base", args.model, out / "base-eval", ks)]
    model, model_eval = args.model, out / "base-eval"  # the current model and its evaluation
    model_step: list[Path] = []  # the fine-tune that made ``model`` (none for the base model)
    rounds_so_far: list[Path] = []
    for r in range(args.rounds):
        round_dir = out / f"round-{r}"
        sp = round_dir / "self-play"
        seed = round_seed(args.run_seed, r)
        _step(f"round {r}: self-play with {model}", _self_play_command(args, model, r, seed, sp),
              round_dir / "self-play.log", sp / "summary.json", upstream=model_step)
        generated = _read(sp / "summary.json")
        rounds_so_far.append(sp)
        merged = _merge(args, r, rounds_so_far, round_dir)
        examples_so_far = merged.get("training_examples") or 0
        if not examples_so_far:
            why = _why_empty(merged, r)
            print(f"[self-play-loop] round {r}: {why}, so no fine-tune; M_{r + 1} = M_{r}",
                  file=sys.stderr, flush=True)
            rows.append(_row(f"{r}", model, model_eval, ks, generated, examples_so_far, seed, model,
                             not_trained=why))
            continue
        train = round_dir / "train"
        stages = epoch_stages(args.train_epochs)
        stage_dirs = [train / f"stage-{i}-{name}" for i, (name, _) in enumerate(stages)]
        trained = stage_dirs[-1] / "COMPLETE.json"
        launcher = shlex.split(args.train_launcher or sys.executable)
        data = round_dir / MERGED / "training" / "puzzles"  # the merged set only, never the rounds' own shards
        command = [*launcher,
                   "-m", "training.finetune", "--config", args.train_config, "--output-dir", str(train),
                   "--set", f"model={args.train_model or args.model}",
                   "--set", "stages=" + json.dumps([{"name": name, "data": str(data), "epochs": epochs}
                                                     for name, epochs in stages]),
                   *shlex.split(args.train_args)]
        _step(f"round {r}: fine-tune {args.train_model or args.model} on the merged pairs of rounds 0..{r}", command,
              round_dir / "train.log", trained, directory=train, prefix=len(launcher),
              upstream=[round_dir / MERGED / "summary.json"],
              prepare=lambda train=train: train_resume_arguments("self-play-loop", train))
        generated_by = model
        evaluated = range(len(stages)) if args.eval_epochs == "each" else [len(stages) - 1]
        for i in evaluated:
            stage_model, stage_done = str(stage_dirs[i] / "final"), stage_dirs[i] / "COMPLETE.json"
            model_eval = round_dir / f"eval-epoch-{i + 1}"
            _evaluate(args, stage_model, model_eval, upstream=[stage_done])
            rows.append(_row(f"{r}", stage_model, model_eval, ks, generated, examples_so_far, seed, generated_by,
                             trained_marker=stage_done, epoch=(i + 1, len(stages))))
        model, model_step = str(stage_dirs[-1] / "final"), [trained]  # M_{r+1}: the last epoch's model
    summary = {"rounds": args.rounds, "base_model": args.model, "p3_dir": args.p3_dir, "ks": list(ks),
               "run_seed": args.run_seed, "rows": rows}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "summary.md", table(rows, ks))
    print(table(rows, ks))
    from transforms.stats.report import write_report

    print(f"report: {write_report(str(out))}")
    return 0


if __name__ == "__main__":
    from beam_pipelines.cli import exit_process

    exit_process(main())
