"""The paper driver's plumbing: the main job under --profile paper, the two-stage fine-tune, both models evaluated,
the Table-3 summary, and a re-run that redoes nothing. Fake engine, tiny random Llama for the fine-tune."""
from __future__ import annotations

import json

import pytest

from beam_pipelines.paper import main as paper_main
from beam_pipelines.paper import model_rows, summary_markdown
from tests.beam_pipelines.test_plumbing_fake_engine import CORPUS
from tests.training.test_training import tiny_model_dir, tokenizer, tokenizer_dir  # noqa: F401  (fixtures)


@pytest.mark.heavy
def test_the_paper_in_one_command(tmp_path, tiny_model_dir, capsys):  # noqa: F811
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in CORPUS))
    out = tmp_path / "paper"
    argv = [f"--output={out}", f"--input={corpus}", "--engine=fake", f"--base-model={tiny_model_dir}",
            "--generate-args=--num-candidates 2 --max-new-tokens 16",
            "--train-args=--set global_batch_size=4 --set per_device_batch_size=4 --set precision=fp32 "
            "--set max_length=256",
            "--eval-args=--problem-limit 2"]
    assert paper_main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["model"] for r in summary["rows"]] == [
        "M: SmolLM2-135M-Instruct (smollm2), generated the data", f"InverseCoder: {tiny_model_dir}, fine-tuned here"]
    assert summary["rows"][0]["data"] == "not fine-tuned in this run"
    assert all(r["pass@1"]["humaneval"] is not None for r in summary["rows"])
    assert summary["unit"] == "percent"
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    templates = [json.loads((out / "eval" / key / "humaneval" / "run.json").read_text())["arguments"]["preset"]
                 for key in ("m", "inversecoder")]
    assert [r["prompt_template"] for r in summary["rows"]] == templates == ["paper", "paper"]
    assert summary["train_prompt_format"] == "paper"
    assert summary["decontam_benchmarks"] == {k: manifest["decontam_benchmarks"][k]
                                              for k in ("checked", "paper_not_checked")}
    assert summary["decontam_benchmarks"]["paper_not_checked"]  # only HumanEval was given
    reports = summary["reports"]
    listed = [reports["data"], reports["eval"]["m"]["humaneval"], reports["eval"]["inversecoder"]["humaneval"],
              *reports["train"]]
    assert listed[:3] == ["data/report.html", "eval/m/humaneval/report.html",
                          "eval/inversecoder/humaneval/report.html"]
    assert "train/stage-1-original/metrics.jsonl" in reports["train"]
    assert all((out / path).exists() for path in listed)
    markdown = (out / "summary.md").read_text()
    assert ", ".join(summary["decontam_benchmarks"]["paper_not_checked"]) in markdown
    assert all(path in markdown for path in listed) and "Caveat: M" in markdown
    assert manifest["profile"] == "paper" and manifest["switches"]["emit_original"] == "all"
    generated = json.loads((out / "data" / "training" / "generated" / "shards.json").read_text())["total_rows"]
    original = json.loads((out / "data" / "training" / "original" / "shards.json").read_text())["total_rows"]
    assert summary["generated_pairs"] == generated and summary["original_pairs"] == original
    assert generated < manifest["stages"]["shards"]["records_out"]  # what it reported: originals counted too
    assert (out / "train" / "stage-0-generated" / "COMPLETE.json").exists()
    assert (out / "train" / "stage-1-original" / "COMPLETE.json").exists()
    completes = [json.loads((out / "train" / d / "COMPLETE.json").read_text())
                 for d in ("stage-0-generated", "stage-1-original")]
    assert [(s["stage"], s["steps"], s["peak_lr_fraction"]) for s in summary["fine_tune"]] == [
        (c["stage"], c["global_steps"], c["peak_lr_fraction"]) for c in completes]
    assert [c["stage"] for c in completes] == ["generated", "original"]
    assert all(c["global_steps"] >= 1 for c in completes)
    assert summary["fine_tune_note"] in markdown
    assert "Fine-tune: generated " in markdown and "never reached its configured value" in markdown  # 15-step warm-up
    assert f"| InverseCoder: {tiny_model_dir}, fine-tuned here | generated + original | `paper` |" in markdown
    assert (out / "report.html").exists()
    capsys.readouterr()
    assert paper_main(argv) == 0
    assert capsys.readouterr().err.count("already done") == 4  # generate, fine-tune, two evaluations


def test_rows_say_what_they_are_in_this_run():
    """Only the paper's M (WizardCoder-GPT4-*) was fine-tuned on the original corpus; any other M only generated
    the data, and the embedded short name is shown as the model it is."""
    m, tuned = model_rows("smollm2", "smollm2", "runs/p/train/stage-1-original/final")
    assert m[2] == "M: SmolLM2-135M-Instruct (smollm2), generated the data"
    assert "original" not in m[3]
    assert tuned[1:] == ("runs/p/train/stage-1-original/final", "InverseCoder: SmolLM2-135M-Instruct (smollm2), "
                         "fine-tuned here", "generated + original")
    m, tuned = model_rows("ise-uiuc/WizardCoder-GPT4-DS-6.7B", "deepseek-ai/deepseek-coder-6.7b-base", "final")
    assert m[2] == "M: ise-uiuc/WizardCoder-GPT4-DS-6.7B, generated the data"
    assert m[3] == "original corpus (the paper's M)"
    assert tuned[2] == "InverseCoder: deepseek-ai/deepseek-coder-6.7b-base, fine-tuned here"


def _summary(model: str, paper_m: bool, template: str) -> dict:
    rows = [{"model": label, "data": data, "role": key, "path": path, "prompt_template": template,
             "pass@1": {"humaneval": score, "humaneval_plus": plus}}
            for (key, path, label, data), score, plus in zip(model_rows(model, model, "final"), [0.61, 4.875],
                                                               [0.0, 3.05])]
    return {"model": model, "base_model": model, "paper_m": paper_m, "unit": "percent", "train_prompt_format": "paper",
            "decontam_benchmarks": {"checked": ["humaneval"], "paper_not_checked": ["mbpp", "apps", "gsm8k", "ds1000"]},
            "reports": {"data": "data/report.html", "eval": {"m": {"humaneval": "eval/m/humaneval/report.html"}},
                        "train": ["train/config.json"]},
            "rows": rows}


def test_summary_md_two_decimals_templates_decontamination_and_reports():
    text = summary_markdown(_summary("smollm2", False, "paper"))
    assert "| `paper` | 0.61 (0.00) |" in text and "| `paper` | 4.88 (3.05) |" in text
    assert "pass@1 in percent" in text
    assert "NOT checked: mbpp, apps, gsm8k, ds1000" in text
    assert "data/report.html, eval/m/humaneval/report.html, train/config.json" in text
    assert "Caveat: M (SmolLM2-135M-Instruct (smollm2)) is not one of the paper's M" in text
    assert "`paper` prompt template" in text


def test_summary_md_says_when_a_stage_never_left_its_warm_up():
    summary = _summary("smollm2", False, "paper")
    summary["fine_tune"] = [{"stage": "generated", "steps": 4, "train_loss": 2.5, "peak_lr_fraction": 0.2},
                            {"stage": "original", "steps": 40, "train_loss": 1.25, "peak_lr_fraction": 1.0}]
    text = summary_markdown(summary)
    assert "Fine-tune: generated 4 steps (training loss 2.500), original 40 steps (training loss 1.250)" in text
    assert "never reached its configured value: generated (at most 20%)." in text
    summary["fine_tune"][0]["peak_lr_fraction"] = 1.0
    assert "never reached" not in summary_markdown(summary)


def test_no_caveat_for_the_papers_m_or_the_chat_template():
    assert "Caveat" not in summary_markdown(_summary("ise-uiuc/WizardCoder-GPT4-DS-6.7B", True, "paper"))
    assert "Caveat" not in summary_markdown(_summary("smollm2", False, "chat"))


@pytest.mark.parametrize("option, value, error", [
    ("--generate-args", "--limt 3", "the generate step (--generate-args): unknown option:\n  --limt"),
    ("--eval-args", "--samples-per-problem 0", "the evaluate steps (--eval-args): --samples-per-problem must be"),
])
def test_a_bad_pass_through_option_is_refused_before_the_first_step(tmp_path, capsys, option, value, error):
    out = tmp_path / "paper"
    with pytest.raises(SystemExit):
        paper_main([f"--output={out}", f"{option}={value}"])
    assert error in capsys.readouterr().err and not out.exists()
