"""compile_layers: auto compiles only where it was measured to pay (training.compile_choice)."""
from __future__ import annotations

import pytest

from training.compile_choice import AUTO_MIN_EXAMPLES, choose_compile_layers
from training.config import load_config

BF16_CPU = dict(cuda=False, cpu_bf16="avx512_bf16", world_size=1, gradient_checkpointing=False,
                compiler="/usr/bin/g++")


def test_auto_compiles_a_long_single_process_run_on_a_native_bf16_cpu():
    choice = choose_compile_layers("auto", examples=5000, **BF16_CPU)
    assert choice.compile and "avx512_bf16" in choice.reason and "5000" in choice.reason


@pytest.mark.parametrize("change, words", [
    ({"cpu_bf16": None}, "without native bf16"),
    ({"cuda": True, "cpu_bf16": None}, "CUDA"),
    ({"world_size": 2}, "2 processes"),
    ({"gradient_checkpointing": True}, "gradient checkpointing"),
    ({"compiler": None}, "no C++ compiler"),
])
def test_auto_stays_eager_where_compiling_was_not_measured_to_pay(change, words):
    choice = choose_compile_layers("auto", examples=50_000, **{**BF16_CPU, **change})
    assert not choice.compile and words in choice.reason


def test_auto_keeps_short_runs_eager_up_to_the_threshold():
    assert not choose_compile_layers("auto", examples=AUTO_MIN_EXAMPLES - 1, **BF16_CPU).compile
    assert choose_compile_layers("auto", examples=AUTO_MIN_EXAMPLES, **BF16_CPU).compile


@pytest.mark.parametrize("setting", [True, False])
def test_true_and_false_force_either_way(setting):
    for context in (BF16_CPU, {**BF16_CPU, "cpu_bf16": None, "world_size": 4, "compiler": None}):
        assert choose_compile_layers(setting, examples=1, **context).compile is setting


def test_the_config_defaults_to_auto_and_refuses_other_values(tmp_path):
    assert load_config(None, ["stages=[{name: s, data: d}]"]).compile_layers == "auto"
    assert load_config(None, ["stages=[{name: s, data: d}]", "compile_layers=true"]).compile_layers is True
    for bad in ("yes_please", "1", "0", "1.0", "0.0", "'true'"):
        with pytest.raises(ValueError, match="compile_layers must be true, false or auto"):
            load_config(None, ["stages=[{name: s, data: d}]", f"compile_layers={bad}"])


def test_the_compiler_is_cxx_or_else_g_plus_plus_on_the_path(monkeypatch, tmp_path):
    from training.compile_choice import cpp_compiler

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    assert cpp_compiler() is None
    tool = tmp_path / "g++"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert cpp_compiler() == str(tool)
    monkeypatch.setenv("CXX", "my-cxx")
    assert cpp_compiler() is None
