"""The paper driver's plumbing: the main job under --profile paper, the two-stage fine-tune, both models evaluated,
the Table-3 summary, and a re-run that redoes nothing. Fake engine, tiny random Llama for the fine-tune."""
from __future__ import annotations

import json

import pytest

from beam_pipelines.paper import comparability, evaluation_record, model_rows, summary_markdown
from beam_pipelines.paper import main as paper_main
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
    # --problem-limit 2: each row says it rests on 2 of HumanEval's 164 problems, and the run is flagged as cut.
    for row in summary["rows"]:
        evaluated = json.loads((out / "eval" / row["role"] / "humaneval" / "summary.json").read_text())
        assert row["evaluations"]["humaneval"]["problems"] == evaluated["problems"] == 2
        assert row["evaluations"]["humaneval"]["benchmark_problems"] == 164
        assert row["evaluations"]["humaneval"]["samples_per_problem"] == evaluated["samples_per_problem"] == 1
        assert row["comparable_to_paper"] is False
    assert "humaneval_plus" not in summary["rows"][0]["pass@1"] and "(+)" not in markdown
    assert "| Model | Data | Prompt template | HumanEval | Evaluated on (problems x samples per problem) |" in markdown
    assert "HumanEval: 2 of 164 problems x 1 sample, cut: not comparable |" in markdown
    assert summary["not_comparable"].startswith("NOT comparable to the paper's numbers")
    assert "HumanEval ran on 2 of its 164 problems (--problem-limit 2)" in summary["not_comparable"]
    assert summary["not_comparable"] in markdown
    assert summary["not_comparable"] in (out / "report.html").read_text().replace("&#x27;", "'")
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


def _evaluation(problems: int, n: int = 1, temperature: float = 0.0, tokens: int = 512, limit: int | None = None):
    return {"problems": problems, "samples_per_problem": n, "temperature": temperature, "max_tokens": tokens,
            "pass@1": 0.0}, {"arguments": {"problem_limit": limit, "preset": "paper"}}


def test_a_cut_evaluation_is_flagged_and_each_row_says_what_its_number_rests_on():
    """The probe: --eval-args "--problem-limit 5 --eval-max-tokens 128" gave `HumanEval (+) | 0.00` with nothing
    saying the score rests on 5 of 164 problems, and a (+) column although HumanEval+ never ran."""
    summary = _summary("smollm2", False, "paper")
    for row in summary["rows"]:
        row["pass@1"] = {"humaneval": 0.0}
        row["evaluations"] = {"humaneval": evaluation_record("humaneval", *_evaluation(5, tokens=128, limit=5), 164)}
    summary["not_comparable"] = comparability(summary["rows"])
    text = summary_markdown(summary)
    assert "(+)" not in text
    assert "| Model | Data | Prompt template | HumanEval | Evaluated on (problems x samples per problem) |" in text
    assert "| `paper` | 0.00 | HumanEval: 5 of 164 problems x 1 sample, cut: not comparable |" in text
    note = summary["not_comparable"]
    assert note.startswith("NOT comparable to the paper's numbers (greedy pass@1: one sample per problem")
    assert "HumanEval ran on 5 of its 164 problems (--problem-limit 5)" in note
    assert "HumanEval allowed 128 new tokens per solution (--eval-max-tokens; the evaluation's default is 512)" in note
    assert note.count("HumanEval ran on") == 1  # both rows ran the same evaluation: said once
    assert "one problem is 20.0 points" in note
    assert f"**{note}**" in text


def test_the_papers_evaluation_setting_is_not_flagged_and_sampling_is():
    full = evaluation_record("humaneval", *_evaluation(164), 164)
    assert full["not_paper_setting"] == []
    rows = [{"pass@1": {"humaneval": 70.0, "humaneval_plus": 65.0},
             "evaluations": {"humaneval": full, "humaneval_plus": evaluation_record(
                 "humaneval_plus", *_evaluation(164), 164)}}]
    assert comparability(rows) is None
    text = summary_markdown({**_summary("smollm2", False, "chat"), "rows": [
        {**rows[0], "model": "M", "data": "d", "prompt_template": "chat"}]})
    assert "| Model | Data | Prompt template | HumanEval (+) |" in text and "70.00 (65.00)" in text
    assert "HumanEval: 164 of 164 problems x 1 sample; HumanEval+: 164 of 164 problems x 1 sample |" in text
    assert "NOT comparable" not in text and ", cut" not in text
    sampled = evaluation_record("humaneval", *_evaluation(164, n=10, temperature=0.8), 164)
    assert sampled["not_paper_setting"] == [
        "HumanEval drew 10 samples per problem at temperature 0.8 (the paper: greedy, one sample)"]
    unknown_size = evaluation_record("mbpp", *_evaluation(3, limit=3), None)
    assert unknown_size["not_paper_setting"] == ["MBPP ran on at most its first 3 problems (--problem-limit 3)"]


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
