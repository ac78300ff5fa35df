"""``inverse-instruct report DIR`` on a training output: the stages in config order with their state, steps and mean
loss over every step (a resumed run's repeated steps counted once, the later line kept), and report.html with the
loss curve; readable while the run is still going. The directory is written here by hand, not by the trainer."""
from __future__ import annotations

import json

from beam_pipelines.report import main as report_main


def _lines(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_a_training_directory_is_reported_stage_by_stage(tmp_path, capsys):
    out = tmp_path / "train"
    stage0, stage1 = out / "stage-0-generated", out / "stage-1-original"
    stage0.mkdir(parents=True)
    stage1.mkdir()
    (out / "config.json").write_text(json.dumps({"output_dir": str(out), "stages": [
        {"name": "generated", "data": "a"}, {"name": "original", "data": "b"}, {"name": "extra", "data": "c"}]}))
    # Stage 0 was killed after step 2 and resumed from its checkpoint at step 1: step 2 is logged twice.
    (stage0 / "metrics.jsonl").write_text(_lines([
        {"step": 1, "loss": 4.0, "tokens_per_second": 10.0}, {"step": 2, "loss": 9.0, "tokens_per_second": 10.0},
        {"step": 2, "loss": 3.0, "tokens_per_second": 12.0}, {"step": 3, "loss": 2.0, "tokens_per_second": 14.0}]))
    (stage0 / "COMPLETE.json").write_text(json.dumps({"examples": 6, "planned_steps": 3, "precision": "bf16",
                                                      "train_loss": 0.0}))
    (stage1 / "metrics.jsonl").write_text(_lines([{"step": 1, "loss": 5.0}]) + '{"step": 2, "lo')  # still running
    assert report_main([str(out)]) == 0
    text = capsys.readouterr().out
    lines = {line.split()[1]: line.split() for line in text.splitlines() if line.strip()[:2] in ("0:", "1:", "2:")}
    assert lines["generated"][2:6] == ["done", "3", "/", "3"] and "3.0000" in lines["generated"]  # (4+3+2)/3
    assert lines["original"][2:6] == ["stopped", "or", "running", "1"]
    assert lines["extra"][2:4] == ["not", "started"]
    report = (out / "report.html").read_text()
    assert "<img" in report and "training loss" in report and "generated" in report


def test_a_directory_that_is_no_run_is_still_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model": "x"}))  # no stages: not a training run
    assert report_main([str(tmp_path)]) == 2


def test_a_complete_json_with_the_whole_stage_mean_is_taken_over_the_logged_lines(tmp_path, capsys):
    """Since train_loss counts every step (train_loss_this_session beside it), it beats the mean of the logged
    lines, which are only every logging_steps."""
    out = tmp_path / "train"
    (out / "stage-0-only").mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"output_dir": str(out), "stages": [{"name": "only", "data": "a"}]}))
    (out / "stage-0-only" / "metrics.jsonl").write_text(_lines([{"step": 4, "loss": 1.0}, {"step": 8, "loss": 2.0}]))
    (out / "stage-0-only" / "COMPLETE.json").write_text(json.dumps({"train_loss": 1.25,
                                                                    "train_loss_this_session": 2.0}))
    assert report_main([str(out)]) == 0
    assert "1.2500" in capsys.readouterr().out
