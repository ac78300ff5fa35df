"""The InverseCoder paper in one command: the main job under ``--profile paper``, the two-stage fine-tune from the
base model (1 epoch on the generated pairs, then 2 on the original corpus), and the evaluation of the model M
that generated the data against the fine-tuned one, ending in a table shaped like the paper's Table 3.

    inverse-instruct paper --output runs/paper --input ../shared/data/code_alpaca_2k.json \\
        --generate-args "--instruction-column instruction --input-column input --response-column output \\
                         --limit 60 --num-candidates 4 --max-new-tokens 128" \\
        --train-args "--set global_batch_size=8 --set per_device_batch_size=4"          # CPU, small
    inverse-instruct paper --output runs/paper-ds-6.7b --input 'gs://b/evol/*.parquet' \\
        --model ise-uiuc/WizardCoder-GPT4-DS-6.7B --base-model deepseek-ai/deepseek-coder-6.7b-base \\
        --generate-args "--response-column output" \\
        --train-launcher "torchrun --nproc_per_node 8" \\
        --benchmark humaneval_plus=data/HumanEvalPlus.jsonl --benchmark mbpp_plus=data/MbppPlus.jsonl

Steps, each in its own directory and skipped when already finished (a re-run after a stop continues):
``data/`` (the main job), ``train/`` (``training/configs/inversecoder.yaml``), ``eval/<model>/<benchmark>/``.
``summary.json``, ``summary.md`` and ``report.html`` hold the table (pass@1 in percent): its score columns are the
benchmarks that ran (``HumanEval (+)`` only when HumanEval+ ran too), and each row names the problems (of the
benchmark's) and samples per problem its scores rest on. An evaluation cut by ``--eval-args`` (``--problem-limit``,
sampling instead of greedy decoding, fewer ``--eval-max-tokens`` than the default) is flagged as not comparable to
the paper's numbers, which are greedy pass@1 on every problem. ``summary.json`` and ``summary.md`` also record the
prompt template each evaluation used, the benchmarks the data's decontamination did not check, and where the steps'
own reports are.
``--output`` is a local directory (it holds the steps' state); the steps' jobs run on this machine's runner (every
step writes under ``--output``).
"""
from __future__ import annotations

import argparse
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
from runners.model_resolution import EMBEDDED_MODELS
from transforms.stats.report import (
    PAPER_BENCHMARK_LABELS,
    PAPER_COLUMNS,
    paper_cell,
    paper_columns,
    paper_evaluation_cell,
)

CONFIG = Path(__file__).resolve().parents[1] / "training" / "configs" / "inversecoder.yaml"
# Table 3's columns: a benchmark and its plus version side by side.
COLUMNS = PAPER_COLUMNS
# How the paper's Table 3 was evaluated: greedy pass@1 on every problem of each benchmark.
PAPER_EVALUATION = "greedy pass@1: one sample per problem at temperature 0, on every problem of each benchmark"
# The paper's M: WizardCoder-GPT4-{CL-7B,DS-6.7B,CL-13B}, fine-tuned on the original corpus (evol-codealpaca-v1)
# with the `paper` prompt template. Only for these does the M row mean what the paper's does.
PAPER_M_PREFIX = "wizardcoder-gpt4-"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = DriverParser(prog="inverse-instruct paper",  # the docstring is the epilog
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--output", required=True, help="The run's directory (a local path).")
    parser.add_argument("--input", default=None, help="The instruction corpus (default: the main job's default).")
    parser.add_argument("--model", default="smollm2", help="M: the model that writes and judges the instructions.")
    parser.add_argument("--base-model", default=None,
                        help="The pre-trained model the fine-tune starts from (default: --model).")
    parser.add_argument("--engine", default="vllm", help="Engine of the generate and evaluate steps.")
    parser.add_argument("--generate-args", default="", help="Extra options of the main job (corpus columns, scale).")
    parser.add_argument("--train-args", default="", help='Extra training overrides, e.g. "--set global_batch_size=64".')
    parser.add_argument("--train-launcher", default="", help='e.g. "torchrun --nproc_per_node 8"; default one process.')
    parser.add_argument("--eval-args", default="", help="Extra options of every evaluation.")
    parser.add_argument("--benchmark", action="append", default=[],
                        help="NAME=FILE of another benchmark to evaluate on (humaneval_plus, mbpp, mbpp_plus); "
                             "HumanEval always runs (it ships).")
    args = parser.parse_args(argv)
    require_local_output(parser, args.output)
    from beam_pipelines import evaluate, inverse_instruct

    out = Path(args.output)
    generate = _generate_command(args, out / "data")[3:]
    check_step_command(parser, "the generate step (--generate-args)", generate, inverse_instruct.JOB)
    evaluate_base = _eval_command(args, "humaneval", args.model, out / "eval" / "base")[3:]
    check_step_command(parser, "the evaluate steps (--eval-args)", evaluate_base, evaluate.JOB)
    args.benchmarks = extra_benchmarks(parser, args.benchmark)
    for name, path in args.benchmarks:  # each file there and loading, as its evaluate step will check it
        spec = f"{name}={path}"
        check_step_command(parser, f"the evaluate step on {name}",
                           _eval_command(args, spec, args.model, out / "eval" / "base")[3:], evaluate.JOB)
    return args


def extra_benchmarks(parser: argparse.ArgumentParser, specs: Sequence[str]) -> list[tuple[str, str]]:
    """(name, file) of each ``--benchmark NAME=FILE``, or ``parser.error`` before any step: the NAME=FILE form, a
    benchmark of Table 3 other than HumanEval (which always runs), each once."""
    known = [name for _, base, plus in COLUMNS for name in (base, plus) if name != "humaneval"]
    out: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not path:
            parser.error(f"--benchmark {spec}: give NAME=FILE (one of {', '.join(known)}, with its public file)")
        if name not in known:
            why = "always runs (it ships)" if name == "humaneval" else "is not a benchmark of the table"
            parser.error(f"--benchmark {spec}: {name!r} {why}; --benchmark takes {', '.join(known)}")
        if name in dict(out):
            parser.error(f"--benchmark {spec}: {name} is given twice")
        out.append((name, path))
    return out


def _generate_command(args, data: Path) -> list[str]:
    return [sys.executable, "-m", "beam_pipelines.inverse_instruct", "--profile", "paper", f"--model={args.model}",
            f"--engine={args.engine}", f"--output={data}", *([f"--input={args.input}"] if args.input else []),
            *shlex.split(args.generate_args)]


def _eval_command(args, spec: str, model: str, where: Path) -> list[str]:
    return [sys.executable, "-m", "beam_pipelines.evaluate", f"--benchmark={spec}", f"--model={model}",
            f"--engine={args.engine}", f"--output={where}", *shlex.split(args.eval_args)]


def _step(name: str, command: list[str], log: Path, done: Path, **kwargs) -> None:
    run_step("paper", name, command, log, done, **kwargs)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def pairs_written(data: Path, source: str) -> int | None:
    """Rows of the main job's training shards of one source (``generated``, ``original``), from their index."""
    return _read(data / "training" / source / "shards.json").get("total_rows")


def is_paper_m(model: str) -> bool:
    """Whether ``model`` is one of the paper's M (a hub id or a directory named after it)."""
    return Path(model.rstrip("/")).name.lower().startswith(PAPER_M_PREFIX)


def model_id(spec: str) -> str:
    """What ``--model``/``--base-model`` names: an embedded short name becomes its model's name."""
    embedded = EMBEDDED_MODELS.get(spec.lower())
    return f"{embedded.filename.split('.')[0]} ({spec})" if embedded else spec


def model_rows(model: str, base_model: str, final: str) -> list[tuple[str, str, str, str]]:
    """(key, model to evaluate, row label, data label) of the table's two rows, labelled by what they are in this
    run: the paper's M was fine-tuned on the original corpus, any other M only generated the data."""
    paper_m = is_paper_m(model)
    return [("m", model, f"M: {model_id(model)}, generated the data",
             "original corpus (the paper's M)" if paper_m else "not fine-tuned in this run"),
            ("inversecoder", final, f"InverseCoder: {model_id(base_model)}, fine-tuned here", "generated + original")]


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table: a score column for each benchmark pair that ran (``HumanEval (+)`` only when HumanEval+
    ran too), then what each row's scores rest on (problems of the benchmark's, samples per problem)."""
    columns = paper_columns(rows)
    evaluated = any(r.get("evaluations") for r in rows)
    head = ["Model", "Data", "Prompt template", *(label for label, _, _ in columns),
            *(["Evaluated on (problems x samples per problem)"] if evaluated else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        cells = [r["model"], r["data"], f"`{r['prompt_template']}`" if r.get("prompt_template") else "?",
                 *(paper_cell(r, base, plus) for _, base, plus in columns)]
        if evaluated:
            cells.append(paper_evaluation_cell(r))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def benchmark_size(name: str, path: str | None) -> int | None:
    """How many problems the benchmark holds (an evaluation with ``--problem-limit N`` ran the first N); None when
    its file does not load here."""
    from transforms.execute.problems import load_benchmark

    try:
        return len(load_benchmark(name, path))
    except (OSError, ValueError):
        return None


def evaluation_record(name: str, summary: dict[str, Any], run: dict[str, Any], total: int | None) -> dict[str, Any]:
    """What one evaluation's pass@1 rests on (its summary.json and run.json): the problems it scored, of the
    benchmark's, samples per problem, temperature, token budget, ``--problem-limit``, and ``not_paper_setting``:
    how it differs from the paper's evaluation (empty when it does not)."""
    record = {"problems": summary.get("problems"), "benchmark_problems": total,
              "samples_per_problem": summary.get("samples_per_problem"), "temperature": summary.get("temperature"),
              "max_tokens": summary.get("max_tokens"),
              "problem_limit": (run.get("arguments") or {}).get("problem_limit")}
    record["not_paper_setting"] = cut_reasons(name, record)
    return record


def cut_reasons(name: str, record: dict[str, Any]) -> list[str]:
    """How an evaluation differs from the paper's (greedy pass@1 on every problem, with the evaluation's default
    token budget, since the paper states none): fewer problems, more samples or a temperature, fewer tokens."""
    from transforms.execute.options import EVAL_DEFAULTS

    label = PAPER_BENCHMARK_LABELS.get(name, name)
    problems, total, limit = record.get("problems"), record.get("benchmark_problems"), record.get("problem_limit")
    reasons = []
    if problems is not None and total is not None and problems < total:
        reasons.append(f"{label} ran on {problems} of its {total} problems"
                       + (f" (--problem-limit {limit})" if limit is not None else ""))
    elif total is None and limit is not None:
        reasons.append(f"{label} ran on at most its first {limit} problems (--problem-limit {limit})")
    n, temperature = record.get("samples_per_problem"), record.get("temperature")
    if (n is not None and n != 1) or (temperature is not None and temperature != 0):
        reasons.append(f"{label} drew {n} sample{'' if n == 1 else 's'} per problem at temperature {temperature} "
                       "(the paper: greedy, one sample)")
    default_tokens = EVAL_DEFAULTS[name][1] if name in EVAL_DEFAULTS else None
    tokens = record.get("max_tokens")
    if tokens is not None and default_tokens is not None and tokens < default_tokens:
        reasons.append(f"{label} allowed {tokens} new tokens per solution (--eval-max-tokens; the evaluation's "
                       f"default is {default_tokens}): a longer solution is cut off and fails")
    return reasons


def comparability(rows: Sequence[dict[str, Any]]) -> str | None:
    """One line when any row's evaluation is not the paper's setting: its scores are not comparable to the paper's
    numbers, and why (each reason once, though both rows ran the same evaluation)."""
    reasons = list(dict.fromkeys(reason for r in rows for ev in (r.get("evaluations") or {}).values()
                                 for reason in ev.get("not_paper_setting") or ()))
    if not reasons:
        return None
    few = sorted({ev["problems"] for r in rows for ev in (r.get("evaluations") or {}).values()
                  if ev.get("not_paper_setting") and isinstance(ev.get("problems"), int) and ev["problems"] > 0})
    step = (f" On {few[0]} problems one problem is {100 / few[0]:.1f} points of pass@1."
            if few and few[0] < 100 else "")
    return (f"NOT comparable to the paper's numbers ({PAPER_EVALUATION}): " + "; ".join(reasons) + "." + step)


def caveat(summary: dict[str, Any]) -> str | None:
    """One line when M is not the paper's M and was evaluated with a template other than its chat template: the
    fine-tuned model learned the training template, M did not, so part of the gap may be the format."""
    m = next((r for r in summary["rows"] if r.get("role") == "m"), None)
    if m is None or summary.get("paper_m") or m.get("prompt_template") in (None, "chat"):
        return None
    return (f"Caveat: M ({model_id(summary['model'])}) is not one of the paper's M (WizardCoder-GPT4-*) and was "
            f"evaluated with the `{m['prompt_template']}` prompt template, which it is not known to have been trained "
            f"on; the fine-tuned model was trained with prompt_format `{summary.get('train_prompt_format')}`, so "
            "part of the difference may be the format rather than the data.")


def summary_markdown(summary: dict[str, Any]) -> str:
    """``summary.md``: the table, then its unit, the templates, decontamination and the steps' reports."""
    lines = [table(summary["rows"])]
    if summary.get("not_comparable"):
        lines.append(f"**{summary['not_comparable']}**")
    lines += ["pass@1 in percent. Prompt template: the evaluation's `--preset` "
             "(eval/<model>/<benchmark>/run.json); the fine-tune's prompt_format: "
             f"`{summary.get('train_prompt_format')}` (train/config.json)."]
    note = caveat(summary)
    if note:
        lines.append(note)
    tuned = fine_tune_line(summary.get("fine_tune") or [])
    if tuned:
        lines.append(tuned)
    decontam = summary.get("decontam_benchmarks") or {}
    checked, missing = decontam.get("checked"), decontam.get("paper_not_checked")
    lines.append("Decontamination checked: " + (", ".join(checked) if checked else "none recorded")
                 + "; the paper's benchmarks NOT checked: " + (", ".join(missing) if missing else "none")
                 + " (data/manifest.json decontam_benchmarks).")
    from transforms.stats.report import paper_step_paths

    lines.append("Steps' reports and records: " + ", ".join(paper_step_paths(summary)) + ".")
    return "\n".join(lines[:1]) + "\n" + "\n\n".join(lines[1:]) + "\n"


def fine_tune_stages(train: Path) -> list[dict[str, Any]]:
    """What each finished fine-tune stage did, from its COMPLETE.json: steps, loss, and the largest fraction of
    the configured learning rate it reached (below 1 when the stage is shorter than its warm-up)."""
    stages = []
    for marker in sorted(train.glob("stage-*/COMPLETE.json")):
        done = _read(marker)
        stages.append({"stage": done.get("stage"), "steps": done.get("global_steps"),
                       "train_loss": done.get("train_loss"), "peak_lr_fraction": done.get("peak_lr_fraction")})
    return stages


def fine_tune_line(stages: Sequence[dict[str, Any]]) -> str | None:
    if not stages:
        return None
    parts = [f"{s['stage']} {s['steps']} steps" + (f" (training loss {s['train_loss']:.3f})"
                                                   if isinstance(s.get("train_loss"), (int, float)) else "")
             for s in stages]
    line = "Fine-tune: " + ", ".join(parts) + " (train/stage-*/COMPLETE.json)."
    short = [s for s in stages if isinstance(s.get("peak_lr_fraction"), (int, float)) and s["peak_lr_fraction"] < 1]
    if short:
        line += (" Shorter than its warm-up, so the learning rate never reached its configured value: "
                 + ", ".join(f"{s['stage']} (at most {s['peak_lr_fraction']:.0%})" for s in short) + ".")
    return line


def step_reports(out: Path, keys: Sequence[str], benchmarks: Sequence[str]) -> dict[str, Any]:
    """Relative paths of the steps' own reports and records that exist under ``out``."""
    def rel(path: Path) -> str | None:
        return str(path.relative_to(out)) if path.exists() else None

    train = [rel(p) for p in [out / "train" / "config.json", *sorted((out / "train").glob("stage-*/metrics.jsonl"))]]
    return {"data": rel(out / "data" / "report.html"),
            "eval": {k: {b: rel(out / "eval" / k / b / "report.html") for b in benchmarks} for k in keys},
            "train": [p for p in train if p]}


@refusals_exit_2
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.output)
    data = out / "data"
    train = out / "train"
    base_model = args.base_model or args.model
    overrides = [f"model={base_model}", f"stages.0.data={data / 'training' / 'generated'}",
                 f"stages.1.data={data / 'training' / 'original'}"]
    check_train_batch("paper", CONFIG, overrides, args.train_args, args.train_launcher)
    out.mkdir(parents=True, exist_ok=True)
    _step("generate (the main job, --profile paper)", _generate_command(args, data), out / "generate.log",
          data / "manifest.json")
    manifest = _read(data / "manifest.json")

    final = train / "stage-1-original" / "final"
    trained = train / "stage-1-original" / "COMPLETE.json"
    launcher = shlex.split(args.train_launcher or sys.executable)
    command = [*launcher, "-m", "training.finetune", "--config", str(CONFIG), "--output-dir", str(train),
               *(word for item in overrides for word in ("--set", item)), *shlex.split(args.train_args)]
    _step("fine-tune (1 epoch generated, then 2 epochs original)", command, out / "train.log", trained,
          directory=train, prefix=len(launcher), upstream=[data / "manifest.json"],
          prepare=lambda: train_resume_arguments("paper", train))

    benchmarks = [("humaneval", None), *args.benchmarks]
    sizes = {name: benchmark_size(name, path) for name, path in benchmarks}
    models = model_rows(args.model, base_model, str(final))
    rows = []
    for key, model, label, data_label in models:
        row = {"model": label, "data": data_label, "role": key, "path": model, "prompt_template": None, "pass@1": {},
               "evaluations": {}}
        for name, path in benchmarks:
            where = out / "eval" / key / name
            spec = name + (f"={path}" if path else "")
            _step(f"evaluate {label} on {name}", _eval_command(args, spec, model, where),
                  out / "eval" / f"{key}-{name}.log", where / "summary.json",
                  upstream=[trained] if key == "inversecoder" else [])
            evaluated, run = _read(where / "summary.json"), _read(where / "run.json")
            row["pass@1"][name] = evaluated.get("pass@1")
            row["evaluations"][name] = evaluation_record(name, evaluated, run, sizes[name])
            template = (run.get("arguments") or {}).get("preset")
            row["prompt_template"] = row["prompt_template"] or template
            if template != row["prompt_template"]:  # the same --eval-args for every benchmark: not expected
                row.setdefault("prompt_templates", {})[name] = template
        row["comparable_to_paper"] = not any(ev["not_paper_setting"] for ev in row["evaluations"].values())
        rows.append(row)
    # The shards step's records_out counts the original pairs too (--emit-original): count each source's rows.
    decontam = manifest.get("decontam_benchmarks") or {}
    summary = {"model": args.model, "base_model": base_model, "paper_m": is_paper_m(args.model),
               "generated_pairs": pairs_written(data, "generated"), "original_pairs": pairs_written(data, "original"),
               "profile": manifest.get("profile"), "unit": "percent",
               "train_prompt_format": _read(train / "config.json").get("prompt_format"),
               "fine_tune": fine_tune_stages(train),
               "decontam_benchmarks": {"checked": decontam.get("checked"),
                                       "paper_not_checked": decontam.get("paper_not_checked")},
               "reports": step_reports(out, [key for key, *_ in models], [name for name, _ in benchmarks]),
               "rows": rows}
    summary["not_comparable"] = comparability(rows)  # also for the report, which reads summary.json alone
    summary["caveat"] = caveat(summary)
    summary["fine_tune_note"] = fine_tune_line(summary["fine_tune"])
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    markdown = summary_markdown(summary)
    write_text_atomic(out / "summary.md", markdown)
    print(markdown)
    from transforms.stats.report import write_report

    print(f"report: {write_report(str(out))}")
    return 0


if __name__ == "__main__":
    from beam_pipelines.cli import exit_process

    exit_process(main())
