"""What a training output directory (``inverse-instruct train``) holds, as text and as ``report.html``: its stages
in config order, each with its state (done, stopped, not started), steps, examples, mean loss, precision and
throughput, and the loss curve of each stage from ``metrics.jsonl``. Read while the job runs too: a long run can be
watched with ``inverse-instruct report DIR``."""
from __future__ import annotations

import html
import json
import statistics
from typing import Any, Mapping, Sequence

from transforms.stats.report import REPORT_NAME, _figure, _img, _png, _table, page

CONFIG_NAME = "config.json"
COMPLETE_NAME = "COMPLETE.json"
METRICS_NAME = "metrics.jsonl"


def read_text(path: str) -> str:
    """fsspec, not ``transforms.io.filesystems``: the training processes keep Apache Beam out of their imports."""
    import fsspec

    with fsspec.open(path, "rt", encoding="utf-8") as f:
        return f.read()


def _json(path: str) -> Any:
    try:
        return json.loads(read_text(path))
    except (FileNotFoundError, OSError, ValueError):
        return None


def step_metrics(text: str) -> list[dict[str, Any]]:
    """The per-step lines of ``metrics.jsonl``, one per step: a resumed run logs the steps after its checkpoint
    again, and the later line is the one that counts. A line cut short by a kill is skipped."""
    by_step: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and isinstance(row.get("loss"), (int, float)):
            by_step[row["step"]] = row
    return [by_step[step] for step in sorted(by_step)]


def training_stages(output: str) -> list[dict[str, Any]] | None:
    """Each stage of the training run in ``output``, or None when ``output`` holds no training run (no
    ``config.json`` with stages)."""
    config = _json(f"{output}/{CONFIG_NAME}")
    if not isinstance(config, dict) or not isinstance(config.get("stages"), list) or "output_dir" not in config:
        return None
    stages = []
    for index, stage in enumerate(config["stages"]):
        name = stage.get("name") if isinstance(stage, dict) else None
        directory = f"{output}/stage-{index}-{name}"
        complete = _json(f"{directory}/{COMPLETE_NAME}")
        try:
            metrics = step_metrics(read_text(f"{directory}/{METRICS_NAME}"))
        except (FileNotFoundError, OSError):
            metrics = []
        state = "done" if isinstance(complete, dict) else ("stopped or running" if metrics else "not started")
        stages.append({"index": index, "name": name, "state": state, "complete": complete or {},
                       "metrics": metrics})
    return stages


def examples_cell(complete: Mapping[str, Any]) -> str:
    """The examples a finished stage trained on: ``max_steps`` can stop it before its planned epochs, and then its
    ``examples`` (planned) are more than ``examples_trained``."""
    planned, trained = complete.get("examples"), complete.get("examples_trained")
    if not isinstance(trained, (int, float)) or isinstance(trained, bool):
        return "" if planned is None else str(planned)
    trained = int(trained)
    return f"{trained} of {planned}" if isinstance(planned, int) and planned != trained else str(trained)


def nothing_learned(stage: Mapping[str, Any]) -> str | None:
    """A warning when every logged step has a loss and a gradient norm of exactly 0: no update changed the model.
    The trainer logs no count of label (response) tokens, so this is the evidence there is; with truncated
    examples it means no response token survived ``max_length``."""
    if stage["complete"].get("peak_lr_fraction") == 0:  # one step inside its warm-up: the rate was 0 throughout
        planned = stage["complete"].get("planned_steps")
        return (f"stage {stage['index']}: {stage['name']} learned nothing: its learning rate was 0 at every step "
                f"({planned if planned is not None else 'its'} step(s), all inside the warm-up; lower warmup_steps or "
                "train more steps)")
    metrics = stage["metrics"]
    norms = [m["grad_norm"] for m in metrics if isinstance(m.get("grad_norm"), (int, float))]
    if not metrics or not norms or any(m["loss"] != 0 for m in metrics) or any(n != 0 for n in norms):
        return None
    truncated = stage["complete"].get("truncated_examples")
    why = (f"; truncated examples: {truncated}, so most likely none of their response tokens (the labels) was "
           "left within max_length" if isinstance(truncated, int) and truncated else "")
    return (f"stage {stage['index']}: {stage['name']} learned nothing: its loss and gradient norm were exactly 0 at "
            f"every logged step{why}")


def _row(stage: Mapping[str, Any]) -> list[Any]:
    metrics, complete = stage["metrics"], stage["complete"]
    losses = [m["loss"] for m in metrics]
    planned = complete.get("planned_steps") or (metrics[-1].get("planned_steps") if metrics else None)
    speeds = [m["tokens_per_second"] for m in metrics if isinstance(m.get("tokens_per_second"), (int, float))]
    # A COMPLETE.json that has train_loss_this_session holds the mean over every step (older ones: one session's).
    mean = complete["train_loss"] if "train_loss_this_session" in complete else (
        statistics.fmean(losses) if losses else None)
    return [
        f"{stage['index']}: {stage['name']}", stage["state"],
        f"{len(metrics)}" + (f" / {planned}" if planned else ""),
        examples_cell(complete),
        truncated_cell(stage),
        f"{mean:.4f}" if isinstance(mean, (int, float)) else "",
        f"{losses[-1]:.4f}" if losses else "",
        complete.get("precision", ""),
        f"{statistics.median(speeds):.1f}" if speeds else "",
    ]


HEAD = ["stage", "state", "logged steps", "examples", "truncated", "mean loss", "last loss", "precision",
        "tokens/s (median)"]


def truncated_cell(stage: Mapping[str, Any]) -> str:
    """Examples cut at ``max_length`` (their response tokens past it are not trained): the finished stage's count,
    else the sum over its logged steps so far."""
    count = stage["complete"].get("truncated_examples")
    if not isinstance(count, int) or isinstance(count, bool):
        logged = [m.get("truncated") for m in stage["metrics"]]
        if not any(isinstance(n, int) for n in logged):
            return ""
        count = sum(n for n in logged if isinstance(n, int))
    return f"{count:,}"


def training_summary_text(output: str, stages: Sequence[Mapping[str, Any]]) -> str:
    rows = [[str(cell) for cell in _row(stage)] for stage in stages]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEAD)]
    lines = [f"training run {output}", "  " + "  ".join(h.ljust(w) for h, w in zip(HEAD, widths))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines += [f"  warning: {warning}" for warning in map(nothing_learned, stages) if warning]
    return "\n".join(line.rstrip() for line in lines)


def _loss_figure(stages: Sequence[Mapping[str, Any]]) -> str | None:
    drawn = [s for s in stages if s["metrics"]]
    if not drawn:
        return None
    fig, ax = _figure()
    for stage in drawn:
        ax.plot([m["step"] for m in stage["metrics"]], [m["loss"] for m in stage["metrics"]],
                marker="o", markersize=3, label=f"{stage['index']}: {stage['name']}")
    ax.set_xlabel("optimizer step (of the stage)")
    ax.set_ylabel("training loss")
    ax.legend()
    return _img(_png(fig), "training loss per step, one line per stage")


def training_report(output: str, stages: Sequence[Mapping[str, Any]]) -> str:
    sections = ["<h2>Stages</h2>" + _table(HEAD, [_row(s) for s in stages],
                                           [False, False, False, True, True, True, True, False, True])]
    sections += [f"<p class=bad>warning: {html.escape(w)}</p>" for w in map(nothing_learned, stages) if w]
    figure = _loss_figure(stages)
    if figure:
        sections.append("<h2>Loss</h2>" + figure)
    meta = html.escape(f"training run {output}")
    return page("inverse-instruct: training", meta, sections)


def write_training_report(output: str) -> str | None:
    """Render ``<output>/report.html`` for the training run in ``output`` (atomically: a temp file renamed); its
    path, or None when ``output`` holds no training run."""
    import uuid

    import fsspec

    stages = training_stages(output)
    if stages is None:
        return None
    fs, local = fsspec.core.url_to_fs(f"{output.rstrip('/')}/{REPORT_NAME}")
    tmp = f"{local}.tmp-{uuid.uuid4().hex}"
    with fs.open(tmp, "wb") as f:
        f.write(training_report(output, stages).encode("utf-8"))
    fs.mv(tmp, local)
    return f"{output.rstrip('/')}/{REPORT_NAME}"
