"""The training report's stage table and warnings: a stage stopped by ``max_steps`` shows the examples it trained on,
and a stage whose every step had a loss and gradient of 0 (nothing to learn from) is warned about. The directory is
written here by hand, not by the trainer."""
from __future__ import annotations

import json

from beam_pipelines.report import main as report_main


def _lines(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)



def _one_stage_run(tmp_path, metrics, complete):
    out = tmp_path / "train"
    (out / "stage-0-only").mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"output_dir": str(out), "stages": [{"name": "only", "data": "a"}]}))
    (out / "stage-0-only" / "metrics.jsonl").write_text(_lines(metrics))
    (out / "stage-0-only" / "COMPLETE.json").write_text(json.dumps(complete))
    return out


def _stage_line(text):
    return next(line.split() for line in text.splitlines() if line.strip().startswith("0:"))


def test_a_stage_stopped_by_max_steps_shows_the_examples_it_trained_on(tmp_path, capsys):
    # 2 epochs of 6 examples planned (12), max_steps 2 at 2 per step: 4 trained.
    out = _one_stage_run(tmp_path, [{"step": 1, "loss": 3.0, "grad_norm": 9.0}, {"step": 2, "loss": 2.5,
                                                                                 "grad_norm": 8.0}],
                         {"examples": 12, "examples_trained": 4, "planned_steps": 2, "max_steps": 2})
    assert report_main([str(out)]) == 0
    text = capsys.readouterr().out
    line = _stage_line(text)
    assert line[3:7] == ["2", "/", "2", "4"] and "12" in line, line  # "4 of 12", never "12" alone
    assert "of" in line and "warning" not in text  # warnings print on lines of their own


def test_a_stage_whose_every_step_had_no_loss_and_no_gradient_is_warned_about(tmp_path, capsys):
    zero = [{"step": s, "loss": 0.0, "grad_norm": 0.0, "truncated": 1, "examples": 1} for s in (1, 2, 3)]
    out = _one_stage_run(tmp_path, zero, {"examples": 3, "examples_trained": 3, "truncated_examples": 3,
                                          "train_loss": 0.0, "train_loss_this_session": 0.0})
    assert report_main([str(out)]) == 0
    text = capsys.readouterr().out
    warning = next(line for line in text.splitlines() if "warning:" in line)
    assert "learned nothing" in warning and "max_length" in warning
    assert "learned nothing" in (out / "report.html").read_text()


def test_a_stage_that_learned_is_not_warned_about(tmp_path, capsys):
    # one step at loss 0 (a batch the model already knows) among others is no sign of missing labels
    out = _one_stage_run(tmp_path, [{"step": 1, "loss": 0.0, "grad_norm": 0.0}, {"step": 2, "loss": 1.0,
                                                                                 "grad_norm": 2.0}],
                         {"examples": 4, "examples_trained": 4})
    assert report_main([str(out)]) == 0
    text = capsys.readouterr().out
    assert _stage_line(text) and "warning" not in text, text  # the stage is reported, without a warning


def test_the_stage_table_counts_the_examples_cut_at_max_length(tmp_path, capsys):
    """metrics.jsonl and COMPLETE.json count truncated examples; the report showed neither (a probe's 3 truncated)."""
    done = _one_stage_run(tmp_path / "done", [{"step": 1, "loss": 3.0, "grad_norm": 9.0, "truncated": 2}],
                          {"examples": 8, "examples_trained": 8, "planned_steps": 1, "truncated_examples": 1234})
    assert report_main([str(done)]) == 0
    text = capsys.readouterr().out
    assert "truncated" in text.splitlines()[1] and "1,234" in _stage_line(text)
    running = tmp_path / "running" / "train"
    (running / "stage-0-only").mkdir(parents=True)
    (running / "config.json").write_text(json.dumps({"output_dir": str(running),
                                                     "stages": [{"name": "only", "data": "a"}]}))
    (running / "stage-0-only" / "metrics.jsonl").write_text(_lines(
        [{"step": 1, "loss": 3.0, "grad_norm": 9.0, "truncated": 2}, {"step": 2, "loss": 2.0, "grad_norm": 8.0,
                                                                       "truncated": 3}]))
    report_main([str(running)])
    assert "5" in _stage_line(capsys.readouterr().out)  # the logged steps' sum while the stage runs


def test_a_stage_that_trained_only_inside_its_warm_up_at_rate_0_is_warned_about(tmp_path, capsys):
    """A one-step stage with 15 warm-up steps trains at learning rate 0 (HF's warm-up is step/warmup at step 0):
    COMPLETE.json said peak_lr_fraction 0.0 and the report gave no warning (a user probe)."""
    out = _one_stage_run(tmp_path, [{"step": 1, "loss": 2.0, "grad_norm": 5.0}],
                         {"examples": 4, "examples_trained": 4, "planned_steps": 1, "peak_lr_fraction": 0.0})
    assert report_main([str(out)]) == 0
    warning = next(line for line in capsys.readouterr().out.splitlines() if "warning:" in line)
    assert "learned nothing: its learning rate was 0 at every step (1 step(s), all inside the warm-up" in warning
