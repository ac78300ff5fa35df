"""The paper driver's plumbing: the main job under --profile paper, the two-stage fine-tune, both models evaluated,
the Table-3 summary, and a re-run that redoes nothing. Fake engine, tiny random Llama for the fine-tune."""
from __future__ import annotations

import json

import pytest

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
    assert [r["model"] for r in summary["rows"]] == ["smollm2 (M)", "InverseCoder"]
    assert all(r["pass@1"]["humaneval"] is not None for r in summary["rows"])
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["profile"] == "paper" and manifest["switches"]["emit_original"] == "all"
    generated = json.loads((out / "data" / "training" / "generated" / "shards.json").read_text())["total_rows"]
    original = json.loads((out / "data" / "training" / "original" / "shards.json").read_text())["total_rows"]
    assert summary["generated_pairs"] == generated and summary["original_pairs"] == original
    assert generated < manifest["stages"]["shards"]["records_out"]  # what it reported: originals counted too
    assert (out / "train" / "stage-0-generated" / "COMPLETE.json").exists()
    assert (out / "train" / "stage-1-original" / "COMPLETE.json").exists()
    assert "| InverseCoder | generated + original |" in (out / "summary.md").read_text()
    assert (out / "report.html").exists()
    capsys.readouterr()
    assert paper_main(argv) == 0
    assert capsys.readouterr().err.count("already done") == 4  # generate, fine-tune, two evaluations
