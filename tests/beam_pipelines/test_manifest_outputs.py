"""The manifest vouches only for outputs that were written: the step that writes it waits for every writer of the
job (a writer that fails leaves no manifest), and a run removes the previous run's manifest (and summary) before
its pipeline runs, so a re-run that fails part way leaves none that looks complete."""
from __future__ import annotations

import json
import shutil

import apache_beam as beam
import pytest

from beam_pipelines.inverse_instruct import JOB
from beam_pipelines.inverse_instruct import run as run_main
from beam_pipelines.launch import pipeline_options
from beam_pipelines.report import main as report_main
from transforms.stats.accounting import WriteManifest

LINES = [json.dumps({"instruction": "Add.", "output": "```python\ndef add(a, b):\n    return a + b\n```"}),
         "{not json",
         json.dumps({"instruction": "Sub.", "output": "```python\ndef sub(a, b):\n    return a - b\n```"})]


def _extract_args(tmp_path, output):
    corpus = tmp_path / "pairs.jsonl"
    corpus.write_text("\n".join(LINES) + "\n")
    return [f"--input={corpus}", "--instruction-column=instruction", "--response-column=output",
            "--stages=extract", f"--output={output}", "--quiet"]


def test_write_manifest_waits_for_every_writer_and_a_failing_one_leaves_none(tmp_path):
    def fail(_):
        raise OSError("the writer failed")

    with pytest.raises(Exception, match="the writer failed"):
        with beam.Pipeline() as p:
            ok = p | "Ok" >> beam.Create([1])
            failing = p | "Bad" >> beam.Create([1]) | "Fail" >> beam.Map(fail)
            _ = (p | "Manifest" >> beam.Create([{"balanced": True}])
                 | WriteManifest(str(tmp_path / "manifest.json"), [ok, failing]))
    assert not (tmp_path / "manifest.json").exists()

    with beam.Pipeline() as p:
        writers = [p | f"W{i}" >> beam.Create([i]) for i in range(2)]
        _ = p | "Manifest" >> beam.Create([{"balanced": True}]) | WriteManifest(str(tmp_path / "manifest.json"),
                                                                               writers)
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"balanced": True}


def test_a_main_job_whose_rejected_writer_fails_leaves_no_manifest(tmp_path, capsys):
    out = tmp_path / "out"
    args = _extract_args(tmp_path, out)
    pipeline_options(args, JOB)  # the run.json of an earlier try of this run: the directory is this run's
    (out / "rejected").touch()  # a file where the rejected/ directory goes: its writer fails
    with pytest.raises(Exception, match="WriteRejected"):
        run_main(args)
    assert not (out / "manifest.json").exists()
    assert report_main([str(out)]) == 1  # no finished run: the failure's own report
    assert "run failed" in (out / "report.html").read_text()


def test_a_failed_rerun_removes_the_previous_runs_manifest(tmp_path, capsys):
    out = tmp_path / "out"
    args = _extract_args(tmp_path, out)
    manifest = run_main(args)
    assert (out / "manifest.json").exists() and manifest["stages"]["read"]["rejected_total"] == 1
    shutil.rmtree(out / "rejected")
    (out / "rejected").touch()  # the same command now fails while it runs
    assert (out / "report.html").exists()
    with pytest.raises(Exception, match="WriteRejected"):
        run_main(args)
    assert not (out / "manifest.json").exists()
    assert "run failed" in (out / "report.html").read_text()  # the old report replaced by the failure's
    assert report_main([str(out)]) == 1
    (out / "rejected").unlink()
    assert run_main(args)["balanced"] and (out / "manifest.json").exists()  # and the next re-run completes it


@pytest.mark.heavy
def test_a_self_play_job_whose_writer_fails_leaves_no_manifest_nor_summary(tmp_path, capsys):
    from beam_pipelines.self_play import run as run_self_play
    from tests.beam_pipelines.test_plumbing_fake_engine import SCRIPT

    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    out = tmp_path / "out"
    args = ["--engine=fake", f"--model={script}", "--puzzle-preset=seed", "--num-prompts=2",
            "--samples-per-prompt=3", "--solve-attempts=2", "--trivial-reject-rate=1.0", f"--output={out}", "--quiet"]
    run_self_play(args)
    assert (out / "manifest.json").exists() and (out / "summary.json").exists()
    shutil.rmtree(out / "rejected")
    (out / "rejected").touch()
    with pytest.raises(Exception, match="WriteRejected"):
        run_self_play(args)
    assert not (out / "manifest.json").exists() and not (out / "summary.json").exists()
    assert report_main([str(out)]) == 1 and "run failed" in (out / "report.html").read_text()


def test_a_failed_evaluate_rerun_removes_the_previous_summary(tmp_path, monkeypatch, capsys):
    import beam_pipelines.evaluate as evaluate

    out = tmp_path / "out"
    args = ["--reference-solutions", f"--output={out}", "--quiet"]
    pipeline_options(args, evaluate.JOB)  # the earlier run's run.json: its outputs are this run's
    (out / "summary.json").write_text(json.dumps({"balanced": True, "pass@1": 1.0}))
    (out / "report.html").write_text("<html>pass@1 1.0</html>")

    def fail(*args, **kwargs):
        raise RuntimeError("the pipeline failed")

    monkeypatch.setattr(evaluate, "run_timed", fail)
    with pytest.raises(RuntimeError, match="the pipeline failed"):
        evaluate.run(args)
    assert not (out / "summary.json").exists() and not (out / "report.html").exists()


@pytest.mark.parametrize("decontam_source", [False, True])
def test_the_manifest_and_report_name_benchmarks_only_when_a_stage_checked_them(tmp_path, capsys, decontam_source):
    out = tmp_path / "out"
    manifest = run_main([*_extract_args(tmp_path, out), *(["--decontam-source"] if decontam_source else [])])
    report = (out / "report.html").read_text()
    if decontam_source:
        assert "decontam_source" in manifest["stage_order"]
        assert manifest["decontam_benchmarks"]["checked"] == ["humaneval"] and "Decontamination hits" in report
    else:
        assert not any(name.startswith("decontam") for name in manifest["stage_order"])
        assert manifest["decontam_benchmarks"]["checked"] == [] and "Decontamination hits" not in report
