"""report.html in a real headless browser (Debian's chromium): it renders, is not blank, every image loads, and
the funnel numbers on the page are the manifest's."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import pytest

from beam_pipelines.inverse_instruct import run as run_main
from tests.beam_pipelines.test_plumbing_fake_engine import CORPUS

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: `make system-packages` installs it (Debian package chromium)")
        pytest.skip("browser test: chromium is not installed (`make system-packages` installs it)")
    return path


def _browser(tmp_path, page, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                           *args, page.as_uri()], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report_run")
    corpus = out / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in CORPUS))
    run_main(["--engine=fake", f"--input={corpus}", "--num-candidates=3", "--max-new-tokens=16", "--quiet",
              f"--output={out / 'run'}"])
    return out / "run"


def test_the_report_renders_with_every_image_and_the_manifests_funnel(main_run, tmp_path):
    page = main_run / "report.html"
    assert page.exists()
    dom = _browser(tmp_path, page, "--dump-dom").stdout
    images = len(re.findall(r"<img\b", dom))
    assert images >= 4
    assert f'data-images-loaded="{images}/{images}"' in dom, re.findall(r"data-images-loaded=\"[^\"]*\"", dom)
    manifest = json.loads((main_run / "manifest.json").read_text())
    shown = {(m[0], m[1]): int(m[2].replace(",", "")) for m in
             re.findall(r'data-stage="([^"]+)" data-field="([a-z_]+)">([\d,]+)</span>', dom)}
    assert shown, "the funnel table is missing"
    expected = {(name, field): stage[field] for name, stage in manifest["stages"].items()
                for field in ("records_in", "records_out", "rejected_total")}
    assert shown == expected


def test_the_rendered_page_is_not_blank(main_run, tmp_path):
    from PIL import Image, ImageStat

    shot = tmp_path / "shot.png"
    result = _browser(tmp_path, main_run / "report.html", f"--screenshot={shot}", "--window-size=1200,1600")
    assert shot.exists(), result.stderr[-2000:]
    image = Image.open(shot).convert("L")
    stddev = ImageStat.Stat(image).stddev[0]
    assert image.size == (1200, 1600) and stddev > 20  # text, tables and figures, not a white page
    dark = sum(1 for v in image.tobytes() if v < 128)  # mode L: one byte per pixel
    assert dark > 0.01 * image.size[0] * image.size[1]


def test_the_loop_figure_leaves_out_a_missing_pass_at_k(monkeypatch):
    from transforms.stats import report

    figures = []

    def keep(fig):
        figures.append(fig)
        return "data:image/png;base64,"

    monkeypatch.setattr(report, "_png", keep)
    rows = [{"round": "base", "model": "m", "p3": {"pass@1": 1.0, "pass@10": 5.0}},
            {"round": "0", "model": "m0", "p3": {"pass@1": 2.0, "pass@10": None}, "verified_pairs": 3},
            {"round": "1", "model": "m1", "p3": {"pass@1": 3.0, "pass@10": 7.0}, "verified_pairs": 4}]
    page = report.loop_report({"rows": rows, "ks": [1, 10], "base_model": "m", "rounds": 2})
    lines = {line.get_label(): line for line in figures[0].axes[0].get_lines()}
    assert list(lines["P3 pass@1"].get_ydata()) == [1.0, 2.0, 3.0]
    assert list(lines["P3 pass@10"].get_xdata()) == [0, 2] and list(lines["P3 pass@10"].get_ydata()) == [5.0, 7.0]
    assert [t.get_text() for t in figures[0].axes[0].get_xticklabels()] == ["base", "0", "1"]
    assert "None" not in page


def _stage(records_in, records_out, **rejected):
    return {"records_in": records_in, "records_out": records_out, "rejected": rejected,
            "rejected_total": sum(rejected.values()), "balanced": True}


# The clean-clone `make demo` run's funnel: 18,200 records not sampled under --limit 20, then tens per stage.
DEMO_STAGES = {"read": _stage(18220, 18220), "limit": _stage(18220, 20, not_sampled=18200),
               "extract": _stage(20, 20), "dedup": _stage(20, 20), "summarize": _stage(20, 99, refusal=1),
               "self_evaluate": _stage(99, 99), "select": _stage(99, 20, not_best=79), "shards": _stage(20, 20)}


def test_the_funnel_shows_every_stage_next_to_thousands_not_sampled(monkeypatch):
    from transforms.stats import report

    figures = []
    monkeypatch.setattr(report, "_png", lambda fig: figures.append(fig) or "data:image/png;base64,")
    report.funnel_section(DEMO_STAGES, list(DEMO_STAGES))
    ax = figures[0].axes[0]
    figures[0].canvas.draw()
    left, right = ax.get_xlim()
    bars = [bar for bar in ax.patches if bar.get_width() > 0]
    assert len(bars) == 8 + 3  # every stage's records out, and the three stages that rejected some
    for bar in bars:
        x0, x1 = ax.transData.transform([(max(bar.get_x(), left), 0), (bar.get_x() + bar.get_width(), 0)])[:, 0]
        # On the old linear axis the 20 records of every stage after `limit` were 0.1% of it: invisible.
        assert (x1 - x0) / ax.bbox.width > (0.05 if bar.get_width() == 1 else 0.2), bar.get_width()
    labels = {t.get_text() for t in ax.texts}
    assert {"18,220", "18,200", "99", "79", "20", "1"} <= labels  # each bar carries its count


def test_long_instructions_and_code_wrap_inside_a_1200px_window(monkeypatch, tmp_path):
    from transforms.stats import report

    long_word = "XZ74ADR/88/1C3A1EB6F9DBC8B0-" + "CHLUCANDAVM5NAAABPJ2" * 12  # no space to break at
    code = "def f():\n    return " + " + ".join(f"value_{i}" for i in range(60)) + "  # " + "x" * 150
    selected = [{"id": f"s{i}", "score": 0.5 + i / 100, "instruction": f"Build a class. {long_word}", "code": code,
                 "language": "python", "snippet_id": f"p{i}"} for i in range(6)]
    tables = {"selected": selected, "scored": selected}
    monkeypatch.setattr(report, "_rows", lambda output, name, columns, *_, **__: tables.get(name, []))
    text = report.main_job_report(str(tmp_path), {"stages": DEMO_STAGES, "stage_order": list(DEMO_STAGES)})
    probe = ("<script>window.addEventListener('load', function () { document.body.setAttribute('data-overflow', "
             "document.documentElement.scrollWidth - window.innerWidth); });</script></body>")
    page = tmp_path / "report.html"
    page.write_text(text.replace("</body>", probe))
    dom = _browser(tmp_path, page, "--dump-dom", "--window-size=1200,2000").stdout
    overflow = re.search(r'data-overflow="(-?\d+)"', dom)
    assert overflow, dom[-2000:]
    assert int(overflow.group(1)) <= 0, f"the page is {overflow.group(1)} px wider than the window"


def test_the_paper_report_shows_templates_caveat_unchecked_benchmarks_and_step_links():
    from transforms.stats.report import paper_report

    summary = {"model": "smollm2", "base_model": "smollm2", "generated_pairs": 22, "original_pairs": 59,
               "profile": "paper", "unit": "percent", "train_prompt_format": "paper",
               "caveat": "Caveat: M was evaluated with the `paper` prompt template.",
               "fine_tune_note": "Fine-tune: generated 3 steps. Shorter than its warm-up: generated (at most 13%).",
               "decontam_benchmarks": {"checked": ["humaneval"], "paper_not_checked": ["mbpp", "apps"]},
               "reports": {"data": "data/report.html", "eval": {"m": {"humaneval": "eval/m/humaneval/report.html"}},
                           "train": ["train/config.json"]},
               "rows": [{"model": "M: smollm2", "data": "not fine-tuned in this run", "prompt_template": "paper",
                         "pass@1": {"humaneval": 0.61}},
                        {"model": "InverseCoder: smollm2", "data": "generated + original", "prompt_template": "paper",
                         "pass@1": {"humaneval": 4.88}}]}
    page = paper_report(summary)
    assert "<td>paper</td>" in page and "4.88" in page
    assert summary["caveat"] in page
    assert summary["fine_tune_note"] in page
    assert "mbpp, apps" in page
    for link in ("data/report.html", "eval/m/humaneval/report.html", "train/config.json"):
        assert f'href="{link}"' in page


def test_the_paper_report_names_what_was_measured_and_flags_a_cut_evaluation():
    """Only base HumanEval ran, on 5 of its 164 problems: no "(+)" or HumanEval+ column, each row says what its
    score rests on, and the note says the numbers are not comparable to the paper's."""
    from transforms.stats.report import paper_report

    evaluation = {"problems": 5, "benchmark_problems": 164, "samples_per_problem": 1, "temperature": 0.0,
                  "max_tokens": 128, "problem_limit": 5,
                  "not_paper_setting": ["HumanEval ran on 5 of its 164 problems"]}
    note = "NOT comparable to the paper's numbers (greedy pass@1): HumanEval ran on 5 of its 164 problems."
    summary = {"model": "smollm2", "unit": "percent", "not_comparable": note,
               "rows": [{"model": f"row {i}", "data": "d", "prompt_template": "paper",
                         "pass@1": {"humaneval": 0.0, "mbpp": None}, "evaluations": {"humaneval": evaluation}}
                        for i in range(2)]}
    page = paper_report(summary)
    assert "<th>HumanEval</th>" in page and "(+)" not in page and "HumanEval+" not in page
    assert "humaneval" not in page  # the benchmarks' labels, not their keys
    assert "MBPP" not in page  # not measured: no column
    assert page.count("<td>HumanEval: 5 of 164 problems x 1 sample, cut: not comparable</td>") == 2
    assert "<th>evaluated on (problems x samples per problem)</th>" in page
    assert f"<b>{html.escape(note)}</b>" in page


def test_report_command_prints_the_jobs_closing_summary_scores_in_order_and_examples(main_run, capsys):
    from beam_pipelines.report import main as report_main

    assert report_main([str(main_run)]) == 0
    text = capsys.readouterr().out
    scores = next(line for line in text.splitlines() if "selected scores:" in line)
    keys = [part.split("=")[0].strip() for part in scores.split(":", 1)[1].split(",")]
    assert keys == ["n", "mean", "min", "p25", "median", "p75", "max"]
    assert "example (score " in text


def test_the_evaluation_page_names_each_sample_not_passed_and_orders_groups_by_number(monkeypatch):
    """A probe's page gave pass@1 25% but never said which problems failed or why; groups ran 0-19, 100-119, 20-39;
    the status chart's axis had ticks at fractions of a sample; a --problems file was shown as 'humaneval'."""
    from transforms.stats import report

    figures = []
    monkeypatch.setattr(report, "_png", lambda fig: figures.append(fig) or "data:image/png;base64,")
    samples = [{"task_id": "U/3", "sample_index": 0, "status": "failed", "group": "100-119",
                "reason": "candidate raised ZeroDivisionError: division by zero"},
               {"task_id": "T/1", "sample_index": 0, "status": "failed", "group": "20-39",
                "reason": "test failed at: assert candidate(5, 2) == 3"},
               {"task_id": "U/2", "sample_index": 0, "status": "timeout", "group": "0-19", "reason": "timeout"},
               {"task_id": "T/0", "sample_index": 0, "status": "passed", "group": "0-19", "reason": ""}]
    summary = {"benchmark": "humaneval", "problems_file": "/data/mine.jsonl", "pass@1": 25.0, "problems": 4,
               "statuses": {"failed": 2, "passed": 1, "timeout": 1}}
    page = report.evaluation_report("out", summary, samples)
    failures = page[page.index("Samples not passed"):]
    assert failures.index("T/1") < failures.index("U/2") < failures.index("U/3")
    assert "assert candidate(5, 2) == 3" in failures and "ZeroDivisionError" in failures and "T/0" not in failures
    groups = page[page.index("Per problem group"):page.index("Samples not passed")]
    assert groups.index("0-19") < groups.index("20-39") < groups.index("100-119")
    assert "problems_file: /data/mine.jsonl" in page
    status_axis = figures[0].axes[0]
    figures[0].canvas.draw()
    assert all(float(t).is_integer() for t in status_axis.get_xticks())


def test_the_main_page_says_which_engine_ran_and_each_stages_fan_out():
    from transforms.stats import report

    manifest = {"model": "smollm2", "engine": {"engine": "fake", "dtype": "float32"},
                "stages": {"extract": _stage(2017, 1553, no_code=464), "summarize": {**_stage(18, 180), "fanout": 10}},
                "stage_order": ["extract", "summarize"], "inference_cache": {"hits": 0, "misses": 360, "seconds": 0},
                "outputs": {"rejected": "rejected/"}}
    page = report.main_job_report("/nonexistent", manifest, [])
    assert "engine: fake" in page and "x 10" in page and "in x fan-out = out + rejected" in page
    assert "/nonexistent/rejected/" in page and "0 answers reused, 360 computed" in page
    assert ">2,017</span>" in page  # thousands separated, as the reasons and the chart are


def test_the_main_page_shows_rejected_records_of_each_reason(tmp_path):
    """The page gave reason codes and counts only; a user asking why records were dropped needs an example of each."""
    from schemas.records import RecordKind, rejected
    from transforms.io.parquet import write_shards
    from transforms.stats import report

    def dead(reason, detail, row):
        return rejected({"instruction": "x"}, record_kind=RecordKind.SOURCE_PAIR, reason=reason, stage="extract",
                        detail=detail, source_uri="c.json", source_row=row)

    rows = [dead("no_code", f"no fence in row {i}", i) for i in range(5)] + [
        dead("syntax_error", "line 2: invalid syntax", 9)]
    write_shards(rows, str(tmp_path / "rejected"), RecordKind.REJECTED_RECORD, seed=0, shard_records=100)
    manifest = {"stages": {"extract": _stage(10, 4, no_code=5, syntax_error=1)}, "stage_order": ["extract"],
                "stages_run": "extract", "outputs": {"rejected": "rejected/"}}
    page = report.main_job_report(str(tmp_path), manifest, [])
    shown = page[page.index("Rejected records"):]
    assert shown.count("no fence in row") == 3 and "line 2: invalid syntax" in shown and "c.json:9" in shown
    assert "no model ran" in page

