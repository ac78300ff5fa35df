"""``dtype: auto``: bf16 only where the hardware computes it natively, float32 on other CPUs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from runners import hardware
from runners.engines import EngineConfig, build_engine
from runners.engines.config import resolve_dtype
from runners.options import engine_config_from_options, engine_identity, result_settings


def kernel_says_fast_bf16() -> bool:
    """Read independently of runners.hardware: any AMX or AVX-512 BF16 flag in /proc/cpuinfo."""
    text = Path("/proc/cpuinfo").read_text()
    flags = {word for line in text.splitlines() if line.startswith("flags") for word in line.split(":", 1)[1].split()}
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def test_explicit_dtypes_pass_through_and_unknown_ones_fail():
    for dtype in ("bfloat16", "float16", "float32"):
        assert resolve_dtype(dtype, gpu=False) == dtype
        assert resolve_dtype(dtype, gpu=True) == dtype
    with pytest.raises(ValueError, match="dtype must be one of"):
        resolve_dtype("bf16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        EngineConfig(dtype="fp8")


def test_auto_follows_the_hardware(monkeypatch):
    assert resolve_dtype("auto", gpu=True) == "bfloat16"
    for feature, expected in (("amx_bf16", "bfloat16"), ("avx512_bf16", "bfloat16"), (None, "float32")):
        monkeypatch.setattr(hardware, "cpu_bf16_feature", lambda feature=feature: feature)
        assert resolve_dtype("auto", gpu=False) == expected, feature


def test_auto_on_this_machine_matches_its_cpu_flags():
    assert resolve_dtype("auto", gpu=False) == ("bfloat16" if kernel_says_fast_bf16() else "float32")


def test_options_make_auto_concrete_for_the_workers(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_bf16_feature", lambda: None)
    local = engine_config_from_options(PipelineOptions(["--engine=vllm"]))
    assert local.dtype == "float32"  # the local runners' workers are this (here: AVX2-like) machine
    gpu = engine_config_from_options(PipelineOptions(["--engine=vllm", "--accelerator=type:nvidia-l4;count:1"]))
    assert gpu.dtype == "bfloat16"  # GPU workers, whatever the launching machine is
    # a T4 (compute capability 7.5) has no bfloat16, and vLLM refuses it there: auto is float16
    t4 = engine_config_from_options(PipelineOptions(
        ["--engine=vllm", "--accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"]))
    assert t4.dtype == "float16"
    told = engine_config_from_options(PipelineOptions(
        ["--engine=vllm", "--dtype=float32", "--accelerator=type:nvidia-tesla-t4;count:1"]))
    assert told.dtype == "float32"  # an explicit dtype is kept
    explicit = engine_config_from_options(PipelineOptions(["--engine=vllm", "--dtype=bfloat16"]))
    assert explicit.dtype == "bfloat16"
    # The inference cache keys on the concrete dtype, so results computed in bf16 are never served to fp32.
    assert '"dtype": "float32"' in engine_identity(EngineConfig(engine="fake", dtype="float32"))
    assert '"dtype": "bfloat16"' in engine_identity(EngineConfig(engine="fake", dtype="bfloat16"))



def test_the_cache_keys_on_every_setting_that_changes_answers():
    def identity(*args):
        return engine_identity(engine_config_from_options(PipelineOptions(["--engine=fake", *args])))

    default = identity()
    assert identity("--cpu-runtime-preload") == default  # speed only
    changed = {
        "quantization": identity('--vllm-engine-args={"quantization": "fp8"}'),
        "kv_cache_dtype": identity('--vllm-engine-args={"kv_cache_dtype": "fp8"}'),
        "score_method": identity("--vllm-score-method=prompt_logprobs"),
        "dtype": identity("--dtype=bfloat16"),
        "seed": identity("--engine-seed=7"),
    }
    assert len(set(changed.values()) | {default}) == len(changed) + 1, changed
    # The transformers engine's scoring batch pads prompts together, which changes its rounding.
    transformers = EngineConfig(engine="transformers", dtype="float32")
    assert "score_batch_size" not in result_settings(transformers)
    assert result_settings(dataclasses.replace(transformers, score_batch_size=8))["score_batch_size"] == 8
    vllm = EngineConfig(engine="vllm", dtype="float32")
    assert result_settings(dataclasses.replace(vllm, score_batch_size=8)) == result_settings(vllm)  # unused there


def test_the_fake_engine_needs_no_resolution():
    config = engine_config_from_options(PipelineOptions(["--engine=fake"]))
    assert config.dtype == "auto"
    assert build_engine(config).config.dtype == "auto"
