"""``report.html``: one self-contained page per run (figures embedded as PNG data), written next to its manifest.

What it shows depends on the job, read from its output directory:

* the main job: the stage funnel with rejection reasons, snippets per language, the judge scores of all candidates
  against the selected ones, the candidates' lengths, decontamination hits with their evidence, and the best and
  worst scored examples;
* evaluate: pass@k, statuses, and pass@1 per problem group;
* self-play: the stage funnel, the filter's reasons, attempts by status; the loop: verified pairs and P3 pass@k
  per round.

Figures are drawn with matplotlib (Agg). Every number in the funnel table carries ``data-stage``/``data-field``
attributes, so a test can compare the rendered page with the manifest; a small script records how many images
loaded in ``<body data-images-loaded="n/m">``.
"""
from __future__ import annotations

import base64
import collections
import html
import io
import json
import re
from typing import Any, Iterable, Mapping, Sequence

REPORT_NAME = "report.html"
# Written by a job whose pipeline failed or was stopped (Ctrl-C): what it had done, and its error.
FAILED_NAME = "failed.json"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em;max-width:100%}td,th{border:1px solid #ccc;
padding:.25em .6em;vertical-align:top;overflow-wrap:anywhere}th{background:#f3f3f3;overflow-wrap:normal}
td.num{text-align:right;font-variant-numeric:tabular-nums;overflow-wrap:normal}
table.wide{width:100%;table-layout:fixed}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:0;font-size:.85em}
.meta{color:#555;font-size:.9em}.bad{color:#b00}
"""
_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
});
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float = 8, height: float = 3.6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] = (),
           widths: Sequence[str] | None = None) -> str:
    """A table; long cells wrap (anywhere, if a word is longer than its cell). ``widths`` (CSS, "" for an equal
    share of what is left) fixes the columns of a table as wide as the page, for cells of long text or code."""
    if widths:
        cols = "".join(f'<col style="width:{w}">' if w else "<col>" for w in widths)
        out = [f'<table class="wide"><colgroup>{cols}</colgroup><tr>']
    else:
        out = ["<table><tr>"]
    out[0] += "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>"
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i < len(numeric) and numeric[i] else ""
            cells.append(f"<td{cls}>{cell if isinstance(cell, _Raw) else html.escape(str(cell))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _pre(text: str, limit: int = 600) -> _Raw:
    text = text if len(text) <= limit else text[:limit] + " ..."
    return _Raw(f"<pre>{html.escape(text)}</pre>")


# ---------------------------------------------------------------------------------------------- sections

def funnel_section(stages: Mapping[str, Mapping[str, Any]], order: Sequence[str]) -> str:
    """The stage funnel: a table (numbers tagged for checking) and a bar chart of records out and rejected."""
    names = [n for n in order if n in stages] + [n for n in stages if n not in order]
    rows = []
    stages = {n: {**s, "rejected_total": s.get("rejected_total", sum(s.get("rejected", {}).values()))}
              for n, s in stages.items()}
    def cell(name: str, field: str) -> _Raw:
        value = stages[name][field]
        return _Raw(f'<span data-stage="{html.escape(name)}" data-field="{field}">{value:,}</span>')

    for name in names:
        s = stages[name]
        reasons = ", ".join(f"{k} {v:,}" for k, v in s.get("rejected", {}).items()) or "none"
        fanout = s.get("fanout", 1)
        rows.append([name, cell(name, "records_in"), f"x {fanout:,}" if fanout != 1 else "",
                     cell(name, "records_out"), cell(name, "rejected_total"), reasons,
                     "yes" if s.get("balanced", True) else _Raw('<span class="bad">NO</span>')])
    parts = ["<h2>Stage funnel</h2>",
             _table(["stage", "in", "fan-out", "out", "rejected", "rejected by reason", "balanced"], rows,
                    [False, True, True, True, True])]
    if any(stages[n].get("fanout", 1) != 1 for n in names):
        parts.append("<p class=meta>A stage with a fan-out makes that many outputs of each input (k candidates "
                     "per snippet, n attempts per puzzle): it balances when in x fan-out = out + rejected.</p>")
    if names:
        parts.append(_img(_png(_funnel_figure(names, stages)), "stage funnel"))
        parts.append("<p class=meta>Log scale, so that a stage of a few records stays visible next to one of "
                     "thousands (such as the records <code>--limit</code> leaves not sampled); each bar is labelled "
                     "with its count, and a count of 0 has no bar.</p>")
    return "\n".join(parts)


def _funnel_figure(names: Sequence[str], stages: Mapping[str, Mapping[str, Any]]):
    """Records out and rejected per stage on a log axis. The bars are side by side, not stacked: a stacked segment
    on a log axis would not show its own count."""
    fig, ax = _figure(8, 0.55 * len(names) + 1.2)
    ys = list(range(len(names)))[::-1]
    height = 0.4
    series = [("out", [stages[n]["records_out"] for n in names], "#4c78a8", height / 2),
              ("rejected", [stages[n].get("rejected_total", 0) for n in names], "#e45756", -height / 2)]
    for label, values, color, shift in series:
        ax.barh([y + shift for y in ys], values, height=height, color=color, label=label)
        for y, value in zip(ys, values):
            if value:
                ax.text(value * 1.15, y + shift, f"{value:,}", va="center", fontsize=8)
    top = max([1] + [v for _, values, _, _ in series for v in values])
    logarithmic = any(v > 0 for _, values, _, _ in series for v in values)  # else matplotlib warns (no positive)
    if logarithmic:
        ax.set_xscale("log")
    ax.set_xlim(0.4, top * 12)  # a count of 1 still shows as a bar; room for the largest count's label
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_yticks(ys, names)
    ax.set_xlabel("records (log scale)" if logarithmic else "records")
    ax.legend(loc="lower right")  # the small counts of the last stages leave that corner empty
    return fig


def bar_section(title: str, counts: Mapping[str, int], xlabel: str = "") -> str:
    if not counts:
        return f"<h2>{html.escape(title)}</h2><p class=meta>nothing to show</p>"
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = _figure(8, 0.35 * len(items) + 1)
    ys = range(len(items))[::-1]
    ax.barh(list(ys), [v for _, v in items], color="#72b7b2")
    ax.set_yticks(list(ys), [k for k, _ in items])
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no ticks at fractions of a record
    ax.set_xlabel(xlabel)
    return f"<h2>{html.escape(title)}</h2>" + _img(_png(fig), title) + _table(
        ["", "count"], items, [False, True])


def histogram_section(title: str, series: Mapping[str, Sequence[float]], xlabel: str, bins: int = 30) -> str:
    present = {k: v for k, v in series.items() if len(v)}
    if not present:
        return f"<h2>{html.escape(title)}</h2><p class=meta>nothing to show</p>"
    fig, ax = _figure()
    low = min(min(v) for v in present.values())
    high = max(max(v) for v in present.values())
    edges = [low + (high - low) * i / bins for i in range(bins + 1)] if high > low else bins
    for label, values in present.items():
        ax.hist(values, bins=edges, alpha=0.55, label=f"{label} ({len(values):,})", density=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend()
    return f"<h2>{html.escape(title)}</h2>" + _img(_png(fig), title)


def page(title: str, meta: str, sections: Sequence[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body data-images-loaded='pending'><h1>{html.escape(title)}</h1>"
            f"<p class=meta>{meta}</p>" + "\n".join(sections) + f"<script>{_SCRIPT}</script></body></html>\n")


# ------------------------------------------------------------------------------------------------- jobs

class ReportInputError(ValueError):
    """A run's manifest.json or summary.json that is not what its job writes (edited, or from another tool); the
    message names the file and what is wrong."""


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_manifest(manifest: Any, path: str) -> None:
    """ReportInputError unless ``manifest`` has what the summary and the page read: ``stages`` of counts, and the
    optional sections of the right types."""
    if not isinstance(manifest, dict):
        raise ReportInputError(f"{path} holds no JSON object")
    stages = manifest.get("stages")
    if not isinstance(stages, dict):
        raise ReportInputError(f"{path} has no 'stages' object (a job's manifest lists its stages' counts there)")
    for name, stage in stages.items():
        if not isinstance(stage, dict):
            raise ReportInputError(f"{path}: stage {name!r} is not an object")
        bad = [field for field in ("records_in", "records_out") if not _is_count(stage.get(field))]
        rejected = stage.get("rejected", {})
        if not (isinstance(rejected, dict) and all(_is_count(n) for n in rejected.values())):
            bad.append("rejected")
        if not isinstance(stage.get("balanced", True), bool):
            bad.append("balanced")
        if bad:
            raise ReportInputError(f"{path}: stage {name!r}: {', '.join(bad)} missing or of the wrong type")
    order = manifest.get("stage_order", [])
    if not (isinstance(order, list) and all(isinstance(n, str) and n in stages for n in order)):
        raise ReportInputError(f"{path}: 'stage_order' is not a list of the stages in 'stages'")
    for section in ("outputs", "selected_scores", "inference_cache", "decontam_benchmarks"):
        if not isinstance(manifest.get(section, {}), dict):
            raise ReportInputError(f"{path}: {section!r} is not an object")


def check_summary(summary: Any, path: str) -> None:
    """ReportInputError unless ``summary`` (a summary.json without a manifest: evaluate, the paper and self-play-loop
    drivers) holds results: pass@k, or the drivers' rows."""
    if not isinstance(summary, dict):
        raise ReportInputError(f"{path} holds no JSON object")
    if "rows" in summary:
        if not (isinstance(summary["rows"], list) and all(isinstance(r, dict) for r in summary["rows"])):
            raise ReportInputError(f"{path}: 'rows' is not a list of objects")
        if "ks" in summary and not (isinstance(summary["ks"], list) and all(_is_count(k) for k in summary["ks"])):
            raise ReportInputError(f"{path}: 'ks' is not a list of whole numbers")
        return
    if not any(k.startswith("pass@") for k in summary):
        raise ReportInputError(f"{path} holds no results (no pass@k and no rows): it is not the summary of a "
                               "finished run")


def _rows(output: str, name: str, columns: Sequence[str], problems: list[str],
          expected: bool = False) -> list[dict[str, Any]]:
    """The rows of the output ``name`` that can be read. Each file that cannot is left out and said in
    ``problems``, and so is a missing output the run should have written (``expected``)."""
    import pyarrow as pa

    from transforms.io.parquet import INDEX_NAME, read_index, read_shard_rows, shard_urls

    directory = f"{output}/{name}"
    try:
        urls = shard_urls(directory, read_index(directory))
    except FileNotFoundError:
        if expected:
            problems.append(f"{directory}/ is missing (the manifest lists it)")
        return []
    except (OSError, ValueError, KeyError, TypeError) as err:
        problems.append(f"{directory}/{INDEX_NAME} cannot be read ({type(err).__name__}: {err})")
        return []
    rows: list[dict[str, Any]] = []
    for url in urls:
        try:
            rows.extend(read_shard_rows(url, columns))
        except (OSError, ValueError, pa.ArrowException) as err:  # ArrowInvalid: not Parquet, cut short
            problems.append(f"{url} cannot be read ({type(err).__name__}: {' '.join(str(err).split())})")
    return rows


def problems_section(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    return ("<h2 class=bad>Outputs left out of this report</h2><ul>"
            + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>")


def _meta(data: Mapping[str, Any], keys: Sequence[str]) -> str:
    return " · ".join(f"{k}: {html.escape(str(data[k]))}" for k in keys if k in data)


def main_job_report(output: str, manifest: Mapping[str, Any], problems: list[str] | None = None) -> str:
    problems = [] if problems is None else problems
    written = manifest.get("outputs", {})

    def rows(name: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        return _rows(output, name, columns, problems, expected=name in written)

    sections = [funnel_section(manifest["stages"], manifest.get("stage_order", []))]
    if manifest.get("stages_run") == "extract":
        sections.append("<p class=meta>--stages extract: no model ran (no candidates, scores or selection); the "
                        "snippets are what the model stages would read.</p>")
    snippets = rows("snippets", ["language"])
    sections.append(bar_section("Snippets per language", collections.Counter(r["language"] for r in snippets),
                                "snippets"))
    scored = rows("scored", ["id", "score", "instruction"])
    selected = rows("selected", ["id", "score", "instruction", "code", "language", "snippet_id"])
    if scored:
        sections.append(histogram_section("Judge scores: every candidate and the selected ones", {
            "all candidates": [r["score"] for r in scored if r["score"] is not None],
            "selected": [r["score"] for r in selected if r["score"] is not None]}, "p(Yes) / (p(Yes) + p(No))"))
        sections.append(histogram_section("Candidate instruction lengths", {
            "all candidates": [len(r["instruction"] or "") for r in scored],
            "selected": [len(r["instruction"] or "") for r in selected]}, "characters"))
    rejected = rows("rejected", ["stage", "reason", "detail", "source_uri", "source_row"])
    hits = [r for r in rejected if r["reason"] == "contaminated"]
    rows = []
    for r in hits[:200]:
        try:
            detail = json.loads(r["detail"])
        except (TypeError, ValueError):
            detail = {}
        evidence = (detail.get("evidence") or [{}])[0]
        rows.append([r["stage"], detail.get("benchmark", ""), detail.get("task_id", ""), detail.get("method", ""),
                     _pre(str(evidence.get("matched_text") or evidence.get("span") or evidence), 300),
                     f"{r['source_uri']}:{r['source_row']}"])
    examples: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for r in rejected:
        if r["reason"] != "contaminated" and len(examples[(r["stage"], r["reason"])]) < 3:
            examples[(r["stage"], r["reason"])].append(r)
    if examples:
        sections.append("<h2>Rejected records: up to 3 of each reason (all in rejected/)</h2>" + _table(
            ["stage", "reason", "detail", "record"],
            [[stage, reason, _pre(str(r["detail"] or ""), 300), f"{r['source_uri']}:{r['source_row']}"]
             for (stage, reason), rs in sorted(examples.items()) for r in rs],
            widths=["7em", "10em", "", "16em"]))
    decontaminated = any(name.startswith("decontam") for name in manifest.get("stage_order", manifest["stages"]))
    if decontaminated or hits:  # "no record matched" would claim a check that an extract-only run never made
        sections.append(f"<h2>Decontamination hits ({len(hits):,})</h2>" + (
            _table(["stage", "benchmark", "task", "method", "evidence", "record"], rows,
                   widths=["9em", "8em", "9em", "6em", "", "14em"]) if rows
            else "<p class=meta>no record matched a benchmark</p>"))
    if selected:
        ranked = sorted(selected, key=lambda r: (-(r["score"] or 0), r["id"]))
        table = lambda rs: _table(["score", "language", "instruction", "code"], [  # noqa: E731
            [f"{r['score']:.3f}", r["language"], _pre(r["instruction"] or "", 400), _pre(r["code"] or "", 400)]
            for r in rs], [True], widths=["4.5em", "6.5em", "", ""])
        sections.append("<h2>Best scored examples</h2>" + table(ranked[:5]))
        sections.append("<h2>Worst scored examples</h2>" + table(ranked[-5:][::-1]))
    outputs = [[name, f"{output.rstrip('/')}/{path}"] for name, path in sorted(written.items())
               if isinstance(path, str)]
    if outputs:
        sections.append("<h2>Where the outputs are</h2>" + _table(["output", "path"], outputs, widths=["9em", ""]))
    cache = manifest.get("inference_cache")
    if isinstance(cache, dict) and {"hits", "misses"} <= set(cache):
        sections.append(f"<p class=meta>inference cache: {cache['hits']:,} answers reused, {cache['misses']:,} "
                        "computed</p>")
    engine = manifest["engine"].get("engine") if isinstance(manifest.get("engine"), dict) else None
    meta = _meta({**manifest, **({"engine": engine} if engine else {})},
                 ["model", "engine", "preset", "stages_run", "wall_seconds", "engine_seconds"])
    return page("inverse-instruct: main job", meta, [problems_section(problems), *sections])


def evaluation_report(output: str, summary: Mapping[str, Any], samples: Sequence[Mapping[str, Any]]) -> str:
    ks = sorted(int(k.split("@")[1]) for k in summary if k.startswith("pass@"))
    rows = [[f"pass@{k}", f"{summary[f'pass@{k}']:.2f}"] for k in ks]
    omitted = summary.get("pass_k_omitted") or []
    rows += [[f"pass@{k}", "not reported: fewer than k samples per problem"] for k in omitted]
    sections = ["<h2>pass@k (%)</h2>" + _table(["metric", "value"], rows, [False, True])]
    if len(ks) > 1:
        fig, ax = _figure()
        ax.plot(ks, [summary[f"pass@{k}"] for k in ks], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (%)")
        sections.append(_img(_png(fig), "pass@k"))
    sections.append(bar_section("Samples by status", summary.get("statuses", {}), "samples"))
    by_group: dict[str, list[bool]] = collections.defaultdict(list)
    for s in samples:
        by_group[s.get("group") or "all"].append(s["status"] == "passed")
    group_rows = sorted(((g, 100.0 * sum(v) / len(v), len(v)) for g, v in by_group.items()),
                        key=lambda r: _natural(r[0]))
    if group_rows:
        fig, ax = _figure(8, 0.3 * len(group_rows) + 1)
        ys = range(len(group_rows))[::-1]
        ax.barh(list(ys), [r[1] for r in group_rows], color="#54a24b")
        ax.set_yticks(list(ys), [r[0] for r in group_rows])
        ax.set_xlabel("share of samples passed (%)")
        sections.append("<h2>Per problem group</h2>" + _img(_png(fig), "per problem group") + _table(
            ["group", "passed (%)", "samples"], [[g, f"{p:.1f}", n] for g, p, n in group_rows], [False, True, True]))
    not_passed = sorted((s for s in samples if s["status"] != "passed"),
                        key=lambda s: (_natural(str(s["task_id"])), s.get("sample_index") or 0))
    if not_passed:
        sections.append(f"<h2>Samples not passed ({len(not_passed):,}; every one in samples.jsonl)</h2>" + _table(
            ["task", "sample", "status", "reason"],
            [[s["task_id"], s.get("sample_index", ""), s["status"], _pre(str(s.get("reason") or ""), 300)]
             for s in not_passed[:200]], widths=["10em", "5em", "6em", ""]) + (
            f"<p class=meta>the first 200 of {len(not_passed):,}</p>" if len(not_passed) > 200 else ""))
    meta = _meta(summary, ["benchmark", "problems_file", "model", "samples_per_problem", "temperature", "problems",
                           "wall_seconds"])
    return page("inverse-instruct: evaluation", meta, sections)


def _natural(text: str) -> list:
    """Sort key that orders the numbers inside a name by value: 20-39 before 100-119, HumanEval/2 before /10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def self_play_report(output: str, manifest: Mapping[str, Any], summary: Mapping[str, Any],
                     problems: list[str] | None = None) -> str:
    problems = [] if problems is None else problems
    sections = [funnel_section(manifest["stages"], manifest.get("stage_order", []))]
    if manifest.get("stages_run") == "extract":
        sections.append("<p class=meta>--stages extract: no model ran (no candidates, scores or selection); the "
                        "snippets are what the model stages would read.</p>")
    sections.append(bar_section("Generated samples rejected by the filters, by reason",
                                manifest["stages"].get("filter", {}).get("rejected", {}), "samples"))
    sections.append(bar_section("Solve attempts not kept, by reason",
                                manifest["stages"].get("solve", {}).get("rejected", {}), "attempts"))
    solved = _rows(output, "puzzles", ["name", "sat", "sol", "verified_attempts", "attempts"], problems)
    if solved:
        sections.append("<h2>Solved puzzles</h2>" + _table(["puzzle", "f", "shortest g", "verified / attempts"], [
            [r["name"], _pre(r["sat"], 400), _pre(r["sol"] or "", 300), f"{r['verified_attempts']}/{r['attempts']}"]
            for r in solved[:50]]))
    meta = _meta(summary, ["model", "puzzle_preset", "prompts", "samples", "verified_pairs", "wall_seconds"])
    return page("inverse-instruct: self-play", meta, [problems_section(problems), *sections])


def loop_fine_tune_cell(row: Mapping[str, Any]) -> str:
    """A loop row's "fine-tuned" cell: "" for the base row, the reason a round fine-tuned nothing (its evaluated
    model is then the previous one), else "yes" with the stage's steps, and the learning rate's peak when the stage
    was shorter than its warm-up."""
    if "trained" not in row:
        return ""
    if not row["trained"]:
        return row.get("not_trained", "not trained")
    steps = row.get("fine_tune_steps")
    cell = "yes" if steps is None else f"yes, {steps} step{'' if steps == 1 else 's'}"
    peak = row.get("peak_lr_fraction")
    if isinstance(peak, (int, float)) and peak < 1:
        cell += f" (still in warm-up: lr at most {peak:.0%} of its value)"
    return cell


def loop_round_label(row: Mapping[str, Any]) -> str:
    """A loop row's round, with the epoch of the fine-tune it evaluated when the round evaluated several."""
    if row.get("epochs", 1) > 1:
        return f"{row['round']}, epoch {row['epoch']}/{row['epochs']}"
    return str(row["round"])


def loop_evaluation_cell(row: Mapping[str, Any]) -> str:
    """A loop row's evaluation size: "<problems> x n=<samples per problem>" (--eval-args may have cut it)."""
    problems, n = row.get("p3_problems"), row.get("p3_samples_per_problem")
    return "" if problems is None and n is None else f"{problems} x n={n}"


def loop_report(summary: Mapping[str, Any]) -> str:
    rows = summary["rows"]
    ks = summary["ks"]
    sections = []
    # A round's counts come from the model it self-played with (M_r); its pass@k from the model it trained (M_r+1).
    head = ["round", "self-play with", "verified pairs", "training examples so far", "fine-tuned", "evaluated model",
            "P3 problems x samples", *(f"P3 pass@{k}" for k in ks)]
    sections.append("<h2>Rounds</h2>" + _table(head, [
        [loop_round_label(r), r.get("generated_by", ""), r.get("verified_pairs", ""),
         r.get("training_examples_so_far", ""),
         loop_fine_tune_cell(r), r["model"], loop_evaluation_cell(r),
         *("" if r["p3"].get(f"pass@{k}") is None else r["p3"][f"pass@{k}"] for k in ks)]
        for r in rows]))
    fig, ax = _figure()
    labels = [loop_round_label(r).replace(", epoch ", "\ne") for r in rows]
    for k in ks:
        # A round without this pass@k (no evaluation, or not this k) is left out, not drawn as 0.
        points = [(i, r["p3"].get(f"pass@{k}")) for i, r in enumerate(rows)]
        points = [(i, v) for i, v in points if v is not None]
        ax.plot([i for i, _ in points], [v for _, v in points], marker="o", label=f"P3 pass@{k}")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("round, and epoch of its fine-tune (base = the untuned model)")
    ax.set_ylabel("%")
    ax.legend()
    sections.append(_img(_png(fig), "P3 pass@k per round"))
    # One bar per round: its epochs' rows repeat the round's pairs.
    pairs = [(str(r["round"]), r.get("verified_pairs") or 0) for r in rows
             if r["round"] != "base" and r.get("epoch", 1) == r.get("epochs", 1)]
    if pairs:
        sections.append(bar_section("Verified pairs per round", dict(pairs), "pairs"))
    return page("inverse-instruct: self-play loop", _meta(summary, ["base_model", "rounds"]), sections)


def paper_step_paths(summary: Mapping[str, Any]) -> list[str]:
    """The paper summary's ``reports`` as one list of relative paths (data, each evaluation, the fine-tune's
    records), those that exist."""
    reports = summary.get("reports") or {}
    paths = [reports.get("data"), *(p for by in (reports.get("eval") or {}).values() for p in by.values()),
             *(reports.get("train") or [])]
    return [p for p in paths if p]


# The paper's Table 3: a benchmark and its plus version side by side, as their evaluations name them.
PAPER_COLUMNS = (("HumanEval", "humaneval", "humaneval_plus"), ("MBPP", "mbpp", "mbpp_plus"))
PAPER_BENCHMARK_LABELS = {"humaneval": "HumanEval", "humaneval_plus": "HumanEval+", "mbpp": "MBPP",
                          "mbpp_plus": "MBPP+"}


def paper_columns(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    """The paper table's score columns this run measured, as (header, base benchmark, plus benchmark): "HumanEval
    (+)" only when both HumanEval and HumanEval+ ran, "HumanEval" (or "HumanEval+") when one did; a pair neither
    ran has no column."""
    measured = {name for row in rows for name, value in (row.get("pass@1") or {}).items() if value is not None}
    columns: list[tuple[str, str | None, str | None]] = []
    for label, base, plus in PAPER_COLUMNS:
        if base in measured and plus in measured:
            columns.append((f"{label} (+)", base, plus))
        elif base in measured:
            columns.append((label, base, None))
        elif plus in measured:
            columns.append((f"{label}+", None, plus))
    return columns


def paper_cell(row: Mapping[str, Any], base: str | None, plus: str | None) -> str:
    """A row's score in one column: "72.60 (68.90)" for a benchmark and its plus version, one number for one."""
    scores = row.get("pass@1") or {}

    def shown(name: str | None) -> str:
        value = scores.get(name) if name else None
        return "?" if value is None else f"{value:.2f}"

    if base and plus:
        return "" if scores.get(base) is None and scores.get(plus) is None else f"{shown(base)} ({shown(plus)})"
    return "" if scores.get(base or plus) is None else shown(base or plus)


def paper_evaluation_cell(row: Mapping[str, Any]) -> str:
    """What a row's scores rest on, per benchmark: "HumanEval: 5 of 164 problems x 1 sample", and ", cut: not
    comparable" when that evaluation is not the paper's setting (the summary's note says how)."""
    parts = []
    for name, ev in (row.get("evaluations") or {}).items():
        problems, total, n = ev.get("problems"), ev.get("benchmark_problems"), ev.get("samples_per_problem")
        text = (f"{PAPER_BENCHMARK_LABELS.get(name, name)}: {'?' if problems is None else problems}"
                + ("" if total is None else f" of {total}") + " problems x "
                + ("?" if n is None else f"{n} sample{'' if n == 1 else 's'}"))
        parts.append(text + (", cut: not comparable" if ev.get("not_paper_setting") else ""))
    return "; ".join(parts)


def paper_report(summary: Mapping[str, Any]) -> str:
    """The paper driver's table, shaped like the paper's Table 3 (pass@1 %), with the prompt template of each row,
    the problems and samples per problem each row's scores rest on, the note when the evaluation was cut (not
    comparable to the paper's numbers), the caveat, the benchmarks decontamination did not check and links to the
    steps' own reports."""
    columns = paper_columns(summary["rows"])
    evaluated = any(r.get("evaluations") for r in summary["rows"])
    rows = [[r["model"], r["data"], r.get("prompt_template") or "",
             *(paper_cell(r, base, plus) for _, base, plus in columns),
             *([paper_evaluation_cell(r)] if evaluated else [])]
            for r in summary["rows"]]
    head = ["model", "data", "prompt template", *(label for label, _, _ in columns),
            *(["evaluated on (problems x samples per problem)"] if evaluated else [])]
    sections = ["<h2>pass@1 (%)</h2>" + _table(head, rows, [False, False, False, *(True for _ in columns),
                                                           *([False] if evaluated else [])])]
    if summary.get("not_comparable"):
        sections.append(f"<p><b>{html.escape(summary['not_comparable'])}</b></p>")
    if summary.get("caveat"):
        sections.append(f"<p>{html.escape(summary['caveat'])}</p>")
    if summary.get("fine_tune_note"):
        sections.append(f"<p>{html.escape(summary['fine_tune_note'])}</p>")
    decontam = summary.get("decontam_benchmarks") or {}
    if decontam:
        checked, missing = decontam.get("checked"), decontam.get("paper_not_checked")
        sections.append("<h2>Decontamination</h2><p>checked: " + html.escape(", ".join(checked or []) or "none")
                        + "; the paper's benchmarks <b>not</b> checked: "
                        + html.escape(", ".join(missing or []) or "none") + "</p>")
    paths = paper_step_paths(summary)
    if paths:
        sections.append("<h2>The steps' own reports and records</h2><ul>" + "".join(
            f'<li><a href="{html.escape(p)}">{html.escape(p)}</a></li>' for p in paths) + "</ul>")
    return page("inverse-instruct: the paper's Table 3", _meta(summary, [
        "model", "base_model", "generated_pairs", "original_pairs", "profile", "unit", "train_prompt_format"]),
        sections)


def failure_report(output: str, failure: Mapping[str, Any]) -> str:
    """The page of a run that did not finish: its error, each stage's counts when it stopped (the live progress
    counters, so records in flight are not in them), and how to resume."""
    stopped = failure.get("status") == "stopped"
    stages = [s for s in failure.get("stages") or [] if isinstance(s, Mapping)]
    sections = [f"<h2>{'Stopped' if stopped else 'Failed'}</h2>"
                + _pre(str(failure.get("error") or "no error recorded"), 2000)]
    if failure.get("engine_traceback"):
        sections.append("<details><summary>The engine's traceback (from its own process)</summary>"
                        + _pre(str(failure["engine_traceback"]), 20000) + "</details>")
    if stages:
        sections.append("<h2>Records when it stopped</h2><p class=meta>The live counters of every process, last "
                        "written about a second before the end: records in flight are not in them, and the "
                        "outputs are incomplete.</p>" + _table(
                            ["stage", "in", "out", "rejected"],
                            [[s.get("stage", ""), s.get("in", 0), s.get("out", 0), s.get("rejected", 0)]
                             for s in stages], [False, True, True, True]))
    else:
        sections.append("<p>No stage had counted a record.</p>")
    if failure.get("engine"):
        sections.append(f"<p>{html.escape(str(failure['engine']))}</p>")
    advice = failure.get("resume") or ("Run the same command into the same directory: every engine answer saved in "
                                       f"the inference cache ({output}/cache unless --inference-cache or --no-cache "
                                       "said otherwise) is reused, and the rest is asked again.")
    sections.append(f"<h2>Resuming</h2><p>{html.escape(str(advice))}</p>")
    title = "inverse-instruct: run stopped" if stopped else "inverse-instruct: run failed"
    return page(title, _meta(failure, ["job", "status", "wall_seconds"]), sections)


def write_failure_report(output: str, failure: Mapping[str, Any]) -> str:
    """``<output>/failed.json`` and the failure page (``report.html``); the page's path."""
    from transforms.io.filesystems import atomic_write

    atomic_write(f"{output}/{FAILED_NAME}", lambda f: f.write((json.dumps(failure, indent=2) + "\n").encode()))
    path = f"{output}/{REPORT_NAME}"
    atomic_write(path, lambda f: f.write(failure_report(output, failure).encode("utf-8")))
    return path


def write_report(output: str, problems: list[str] | None = None) -> str | None:
    """Render ``<output>/report.html`` for whatever job wrote ``output``; its path, or None when the directory holds
    no finished run. An output that cannot be read (a corrupt file, a deleted directory) is left out, said on the
    page and appended to ``problems``."""
    problems = [] if problems is None else problems
    from transforms.io.filesystems import atomic_write, read_text

    def load(name: str) -> dict[str, Any] | None:
        try:
            return json.loads(read_text(f"{output}/{name}"))
        except (FileNotFoundError, OSError, ValueError):
            return None

    manifest, summary = load("manifest.json"), load("summary.json")
    if summary is not None and "rows" in summary and "ks" in summary:
        text = loop_report(summary)
    elif summary is not None and "rows" in summary:
        text = paper_report(summary)
    elif manifest is not None and manifest.get("job") == "self-play":
        text = self_play_report(output, manifest, summary or {}, problems)
    elif manifest is not None:
        text = main_job_report(output, manifest, problems)
    elif summary is not None:
        try:
            samples = [json.loads(line) for line in read_text(f"{output}/samples.jsonl").splitlines() if line]
        except (FileNotFoundError, OSError):
            samples = []
        text = evaluation_report(output, summary, samples)
    elif (failure := load(FAILED_NAME)) is not None:
        text = failure_report(output, failure)
    else:
        return None
    path = f"{output}/{REPORT_NAME}"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
    return path
