"""The training config at load: every value has its field's type, or the load fails naming the key (no torch)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.config import TrainConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
STAGES = "stages=[{name: generated, data: /d/generated}, {name: original, data: /d/original}]"


def load(*overrides: str):
    return load_config(None, [STAGES, *overrides])


def test_numbers_written_as_strings_are_read_as_numbers(tmp_path):
    # PyYAML reads 1e-4 (no dot) as a string, and a quoted number is one.
    path = tmp_path / "c.yaml"
    path.write_text('optimizer: {lr: 1e-4}\nmax_length: "512"\nwarmup_steps: 1e1\nstages:\n'
                    '  - {name: g, data: /d/g, epochs: "2", lr: 3E-5}\n', encoding="utf-8")
    config = load_config(path)
    assert config.optimizer.lr == 0.0001 and type(config.optimizer.lr) is float
    assert config.stages[0].epochs == 2.0 and type(config.stages[0].epochs) is float
    assert config.stages[0].lr == 3e-5
    assert config.max_length == 512 and type(config.max_length) is int
    assert config.warmup_steps == 10 and type(config.warmup_steps) is int
    overridden = load_config(path, ["optimizer.lr=2e-5", "stages.0.epochs=3"])
    assert (overridden.optimizer.lr, overridden.stages[0].epochs) == (2e-5, 3.0)


@pytest.mark.parametrize("override, key, value, expected", [
    ("max_length=abc", "max_length", "'abc'", "an integer"),
    ("seed=1.5", "seed", "1.5", "an integer"),
    ("seed=true", "seed", "True", "an integer"),  # a bool is an int to Python, not to the config
    ("optimizer.lr=fast", "optimizer.lr", "'fast'", "a number"),
    ("optimizer.lr=.nan", "optimizer.lr", "nan", "a number"),
    ("stages.1.epochs=[2]", "stages.1.epochs", "[2]", "a number"),
    ("stages.0.max_steps=2.5", "stages.0.max_steps", "2.5", "an integer or null"),
    ("selected_logits=maybe", "selected_logits", "'maybe'", "true or false"),
    ("verify_shards=1", "verify_shards", "1", "true or false"),
    ("model=7", "model", "7", "a string"),
    ("fsdp_layer_cls=LlamaDecoderLayer", "fsdp_layer_cls", "'LlamaDecoderLayer'", "a list of strings or null"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_key_value_and_type(override, key, value, expected):
    with pytest.raises(TrainConfigError) as err:
        load(override)
    assert str(err.value) == f"{key}: expected {expected}, got {value}"


@pytest.mark.parametrize("override, words", [
    ("stages.0.epochs=0", "stages.0.epochs must be positive"),
    ("stages.1.max_steps=0", "stages.1.max_steps must be at least 1"),
    ("save_steps=0", "save_steps must be at least 1"),
    ("optimizer.lr=-1", "optimizer.lr must be at least 0"),
    ("precision=fp16", "precision must be one of"),
])
def test_a_value_out_of_range_is_refused(override, words):
    with pytest.raises(TrainConfigError, match=words):
        load(override)


@pytest.mark.parametrize("override, message", [
    ("lerning_rate=1", "unknown key lerning_rate (did you mean optimizer.lr?)"),
    ("warmup_step=3", "unknown key warmup_step (did you mean warmup_steps?)"),
    ("stages.0.epoch=2", "unknown key stages.0.epoch (did you mean stages.0.epochs?)"),
    ("optimizer.nme=adamw_torch", "unknown key optimizer.nme (did you mean optimizer.name?)"),
])
def test_an_unknown_key_is_refused_with_the_key_meant(override, message):
    with pytest.raises(TrainConfigError) as err:
        load(override)
    assert str(err.value).startswith(message + "; allowed: ")


@pytest.mark.parametrize("override, message", [
    ("stages.5.data=x", "--set stages.5.data: stages has 2 item(s), numbered from 0; no item '5'"),
    ("stages.first.data=x", "--set stages.first.data: stages has 2 item(s), numbered from 0; no item 'first'"),
    ("seed.value=1", "--set seed.value: seed is 42, which has no keys"),
    ("max_length", "--set 'max_length' is not key=value"),
])
def test_an_override_of_a_place_the_config_does_not_have_is_refused(override, message):
    with pytest.raises(TrainConfigError) as err:
        load_config(None, [STAGES, "seed=42", override])
    assert str(err.value) == message


def test_a_stage_without_its_data_and_a_config_that_is_no_mapping_are_refused(tmp_path):
    with pytest.raises(TrainConfigError, match=r"^stages\.0: missing data$"):
        load_config(None, ["stages=[{name: g}]"])
    with pytest.raises(TrainConfigError, match=r"^stages\.1: expected a mapping, got 'x'$"):
        load_config(None, ["stages=[{name: g, data: d}, x]"])
    with pytest.raises(TrainConfigError, match=r"^optimizer: expected a mapping, got 3$"):
        load("optimizer=3")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(TrainConfigError, match="a training config must be a mapping"):
        load_config(listed)


def test_a_config_file_that_is_missing_or_not_yaml_is_refused(tmp_path):
    with pytest.raises(TrainConfigError, match=r"cannot read the config .*nonexistent\.yaml"):
        load_config(tmp_path / "nonexistent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages: [\n", encoding="utf-8")
    with pytest.raises(TrainConfigError, match="broken.yaml is not valid YAML"):
        load_config(broken)


def test_the_prompt_format_is_checked_at_load(tmp_path):
    with pytest.raises(TrainConfigError, match=r"^prompt_format: unknown prompt preset 'chta'.*\(or raw: no prompt\)$"):
        load("prompt_format=chta")
    preset = tmp_path / "mine.yaml"
    shutil.copy(REPO / "transforms" / "presets" / "chat.yaml", preset)
    for name in ("paper", "chat", "raw", str(preset)):
        assert load(f"prompt_format={name}").prompt_format == name


def test_the_shipped_configs_still_load():
    for path in sorted((REPO / "training" / "configs").glob("*.yaml")):
        load_config(path)


@pytest.mark.parametrize("output_dir", ["''", "' '", "/", "/tmp/.."])
def test_an_output_dir_that_is_empty_or_the_root_is_refused(output_dir):
    # "" trained into the current directory, "/" into the file system's root
    with pytest.raises(TrainConfigError, match="output_dir .* names no directory of its own"):
        load(f"output_dir={output_dir}")
    assert load("output_dir=runs/x").output_dir == "runs/x"
