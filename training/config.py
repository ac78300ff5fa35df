"""The fine-tuning job's configuration: one YAML file, overridable with ``--set key=value``.

Every knob of the recipe lives here (defaults follow the InverseCoder paper): Adafactor with a fixed lr of 5e-5
(no relative step, no parameter scaling, no warm-up init), 15 warm-up steps then linear decay per stage, global
batch 512 by gradient accumulation, max length 1024, bf16 where supported, no gradient clipping, response-only loss.

Every value is checked against its field's type when the config loads (a number may be written as a string:
PyYAML reads ``1e-4``, without a dot, as one), and so are the ranges and the prompt format: a mistake is a
``TrainConfigError`` naming the key, found before any model loads.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from training.attention import require_attention
from training.compile_choice import require_setting

PROMPT_FORMATS = ("paper", "chat", "raw")  # or a path to a transforms.instruct.prompts preset file
PRECISIONS = ("auto", "bf16", "fp32")
DISTRIBUTED = ("auto", "fsdp", "ddp")
# per_device_batch_size: auto. The micro-batch is a memory and speed setting (the global batch is the recipe's).
# In one CPU process a larger one spreads each micro-batch's fixed work (the layers' bf16 weight casts, the
# weight-gradient sums, one eager attention call per layer) over more tokens: packed, tokens per CPU-second rose
# 1.16x from 4 rows to 8 at global batch 8; at global batch 32, 16 rows beat 4 and 32 were no faster (README).
# Elsewhere auto keeps the paper's 4 per GPU.
AUTO_MICRO_BATCH_CPU, AUTO_MICRO_BATCH = 16, 4


class TrainConfigError(ValueError):
    """A mistake in the training config or in the data it names, found before any training: ``inverse-instruct
    train`` prints ``inverse-instruct train: error: <message>`` and exits 2, without a traceback. (Not
    ``beam_pipelines.launch.JobConfigError``: importing that module would load Beam into every training rank.)"""


@dataclasses.dataclass
class StageConfig:
    name: str
    data: str  # directory of shards (with shards.json) or a glob of Parquet files, any fsspec URL
    epochs: float = 1.0
    max_steps: int | None = None  # cap on optimizer steps (smoke runs), at most the epochs' steps; None = the epochs
    # Per-stage overrides (None = the top-level value).
    lr: float | None = None
    warmup_steps: int | None = None
    init_from: str | None = None  # None = the previous stage's final weights (the base model for the first)


@dataclasses.dataclass
class OptimizerConfig:
    name: str = "adafactor"  # any transformers OptimizerNames value; adafactor = the paper's
    lr: float = 5e-5
    weight_decay: float = 0.0
    # transformers.optimization.Adafactor with optim="adafactor" is built with scale_parameter=False,
    # relative_step=False, warmup_init=False (Trainer's fixed-lr mode); these fields document and assert that.
    scale_parameter: bool = False
    relative_step: bool = False
    warmup_init: bool = False


@dataclasses.dataclass
class TrainConfig:
    model: str = "smollm2"  # local dir, hub id, or "smollm2" (the embedded model, via runners.model_resolution)
    tokenizer: str | None = None  # default: the model's
    gguf_file: str | None = None  # when ``model`` is a directory holding only a GGUF file
    output_dir: str = "runs/train"
    seed: int = 42
    prompt_format: str = "paper"  # paper | chat | raw (no prompt, loss on every token) | a preset path
    max_length: int = 1024
    global_batch_size: int = 512
    # rows per forward on each process (gradient accumulation makes up the global batch); auto: micro_batch()
    per_device_batch_size: int | str = 4
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    lr_scheduler: str = "linear"
    warmup_steps: int = 15
    max_grad_norm: float = 0.0  # 0 = no clipping (the paper's setting)
    precision: str = "auto"  # auto = bf16 autocast on CUDA with bf16 or a CPU with AMX/AVX-512 BF16, else fp32
    sort_steps_by_length: bool = True  # order each optimizer step's examples longest first: less padding, same gradient
    # LM head and cross-entropy only at positions that predict a label (response + EOS): same loss, less compute
    selected_logits: bool = True
    # With selected_logits, in one process or under DDP (not FSDP): run each micro-batch as groups of rows trimmed
    # to their length, a group's padding fraction at most this (0: only equal lengths share a group; None: the
    # padded micro-batch).
    # Same examples, loss and gradient; fewer padded positions computed, more (smaller) forward calls.
    unpad_max_padding: float | None = 0.1
    # Pack each micro-batch's rows into one row instead (training.packing): every per-token layer runs once over all
    # its real tokens, attention per row. true, false, or auto (training.packing.choose_pack_rows: one process on
    # a CPU, unpadding on, micro-batches of at most 16 rows). Same loss and gradient.
    pack_rows: bool | str = "auto"
    # torch.compile each decoder layer (regional: the layers share one compiled graph, dynamic shapes): true, false,
    # or auto (training.compile_choice: single-process runs of >= 1000 examples on a CPU with native bf16).
    compile_layers: bool | str = "auto"
    # Attention kernel (training.attention): auto (length_aware in compiled CPU layers, else transformers' sdpa),
    # sdpa, eager, or length_aware (eager for short rows, sdpa for long).
    attention: str = "auto"
    distributed: str = "auto"  # auto = FSDP on CUDA, DDP (gloo on CPU) otherwise
    fsdp_layer_cls: list[str] | None = None  # default: the model's _no_split_modules
    gradient_checkpointing: bool = False
    save_steps: int = 50
    save_total_limit: int | None = 2
    logging_steps: int = 1
    verify_shards: bool = True  # check every shard's sha256 against shards.json before training
    dataloader_num_workers: int = 0
    stages: list[StageConfig] = dataclasses.field(default_factory=list)

    def validate(self) -> "TrainConfig":
        if not self.stages:
            raise TrainConfigError("the config lists no stages")
        if not str(self.output_dir).strip() or os.path.realpath(self.output_dir) == os.path.realpath(os.sep):
            raise TrainConfigError(f"output_dir {self.output_dir!r} names no directory of its own (stages, checkpoints "
                                   "and the model would land in the current directory or in /): give e.g. runs/train")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise TrainConfigError(f"stage names must be unique, got {names}")
        if self.precision not in PRECISIONS:
            raise TrainConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        try:
            require_setting(self.compile_layers)
        except ValueError as err:
            raise TrainConfigError(str(err)) from err
        try:
            require_attention(self.attention)
        except ValueError as err:
            raise TrainConfigError(str(err)) from err
        if self.distributed not in DISTRIBUTED:
            raise TrainConfigError(f"distributed must be one of {DISTRIBUTED}, got {self.distributed!r}")
        if self.optimizer.name == "adafactor" and (
            self.optimizer.scale_parameter or self.optimizer.relative_step or self.optimizer.warmup_init
        ):
            raise TrainConfigError(
                "adafactor runs in fixed-lr mode here (scale_parameter/relative_step/warmup_init false)")
        if self.pack_rows not in (True, False, "auto"):
            raise TrainConfigError(f"pack_rows must be true, false or auto, got {self.pack_rows!r}")
        if self.unpad_max_padding is not None and not 0 <= self.unpad_max_padding < 1:
            raise TrainConfigError("unpad_max_padding must be in [0, 1) or null")
        if self.per_device_batch_size != "auto" and (
                isinstance(self.per_device_batch_size, str) or self.per_device_batch_size < 1):
            raise TrainConfigError(f"per_device_batch_size must be a positive integer or auto, got "
                                   f"{self.per_device_batch_size!r}")
        if self.max_length < 2 or self.global_batch_size < 1:
            raise TrainConfigError("max_length and global_batch_size must be positive")
        _require_at_least({"optimizer.lr": (self.optimizer.lr, 0), "warmup_steps": (self.warmup_steps, 0),
                           "max_grad_norm": (self.max_grad_norm, 0), "save_steps": (self.save_steps, 1),
                           "logging_steps": (self.logging_steps, 1),
                           "dataloader_num_workers": (self.dataloader_num_workers, 0)})
        for index, stage in enumerate(self.stages):
            if not stage.epochs > 0:
                raise TrainConfigError(f"stages.{index}.epochs must be positive, got {stage.epochs!r}")
            _require_at_least({f"stages.{index}.max_steps": (stage.max_steps, 1), f"stages.{index}.lr": (stage.lr, 0),
                               f"stages.{index}.warmup_steps": (stage.warmup_steps, 0)})
        check_prompt_format(self.prompt_format)
        return self

    def micro_batch(self, world_size: int, *, cuda: bool) -> tuple[int, str]:
        """The rows per forward on each process, and why: ``per_device_batch_size``, or for ``auto`` the largest
        divisor of the global batch's share per process up to ``AUTO_MICRO_BATCH_CPU`` rows in one CPU process,
        ``AUTO_MICRO_BATCH`` elsewhere."""
        if self.per_device_batch_size != "auto":
            return self.per_device_batch_size, f"per_device_batch_size: {self.per_device_batch_size}"
        if self.global_batch_size % world_size:
            raise TrainConfigError(f"global_batch_size {self.global_batch_size} is not a multiple of the world size "
                                   f"{world_size}")
        share = self.global_batch_size // world_size
        one_cpu = world_size == 1 and not cuda
        cap = AUTO_MICRO_BATCH_CPU if one_cpu else AUTO_MICRO_BATCH
        size = max(rows for rows in range(1, cap + 1) if share % rows == 0)
        where = "one CPU process" if one_cpu else ("CUDA" if cuda else f"{world_size} processes")
        return size, f"auto: {size} ({where}: the largest divisor of {share} up to {cap})"

    def accumulation_steps(self, world_size: int, *, cuda: bool = False) -> int:
        """per-device batch x accumulation x world size = global batch, exactly."""
        micro_batch = self.micro_batch(world_size, cuda=cuda)[0]
        per_step = micro_batch * world_size
        if self.global_batch_size % per_step:
            raise TrainConfigError(
                f"global_batch_size {self.global_batch_size} is not a multiple of per_device_batch_size "
                f"{micro_batch} x world size {world_size}"
            )
        return self.global_batch_size // per_step


def _require_at_least(bounds: Mapping[str, tuple[float | None, float]]) -> None:
    """Each ``key: (value, least)``: a value below its least is refused (None = unset, allowed)."""
    for key, (value, least) in bounds.items():
        if value is not None and value < least:
            raise TrainConfigError(f"{key} must be at least {least}, got {value!r}")


def check_prompt_format(prompt_format: str) -> None:
    """``raw`` or a prompt preset that loads (a built-in name or a readable preset file): checked at load, not once
    the model is loaded and the first example is tokenized."""
    if prompt_format == "raw":
        return
    from transforms.instruct.prompts import load_preset  # light (no Beam); only to check the name or file

    try:
        load_preset(prompt_format)
    except (ValueError, OSError) as err:
        raise TrainConfigError(f"prompt_format: {err} (or raw: no prompt)") from err


# --------------------------------------------------------------------------- building the dataclasses from YAML

# Names users bring from HF TrainingArguments, for the "did you mean" of an unknown key.
KNOWN_ALIASES = {
    "learning_rate": "optimizer.lr", "lr": "optimizer.lr", "weight_decay": "optimizer.weight_decay",
    "optim": "optimizer.name", "num_train_epochs": "stages.N.epochs", "epochs": "stages.N.epochs",
    "max_steps": "stages.N.max_steps", "per_device_train_batch_size": "per_device_batch_size",
    "lr_scheduler_type": "lr_scheduler", "model_name_or_path": "model", "bf16": "precision",
}
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _did_you_mean(key: str, fields: Sequence[str], prefix: str) -> str:
    candidates = {name: f"{prefix}{name}" for name in fields}
    if not prefix:
        candidates.update({alias: target for alias, target in KNOWN_ALIASES.items() if alias not in candidates})
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {candidates[close[0]]}?)" if close else ""


def _number(value: Any) -> float | None:
    """A YAML number, or a string that spells one: PyYAML reads ``1e-4`` (no dot) as the string "1e-4"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)
    return None


def _as_float(value: Any) -> float:
    number = _number(value)
    if number is None or not math.isfinite(number):
        raise TypeError
    return number


def _as_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _number(value)
    if number is None or not math.isfinite(number) or number != int(number):
        raise TypeError
    return int(number)


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _as_str_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError
    return value


# type -> (converter, how the error message names it); order in a union = order tried
_CONVERTERS = {
    bool: (_as_bool, "true or false"), int: (_as_int, "an integer"), float: (_as_float, "a number"),
    str: (_as_str, "a string"), list[str]: (_as_str_list, "a list of strings"),
}


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """``value`` as the field's type: numbers from numeric strings, nothing else converted; TrainConfigError names
    the key, the value and the type expected."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    expected = [_CONVERTERS[option][1] for option in options if option is not type(None)]
    if value is not None:
        for option in options:
            if option is type(None):
                continue
            try:
                return _CONVERTERS[option][0](value)
            except TypeError:
                pass
    expected += ["null"] if type(None) in options else []
    allowed = expected[0] if len(expected) == 1 else f"{', '.join(expected[:-1])} or {expected[-1]}"
    raise TrainConfigError(f"{key}: expected {allowed}, got {value!r}")


def _build(cls, data: Any, prefix: str = ""):
    """``cls`` from a mapping of its fields, each checked against the field's type (``prefix``: the dotted path of
    ``data`` in the config, for the error messages)."""
    if not isinstance(data, Mapping):
        raise TrainConfigError(f"{prefix.rstrip('.') or 'the config'}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise TrainConfigError(f"unknown key {prefix}{key}{_did_you_mean(str(key), list(fields), prefix)}; "
                                   f"allowed: {', '.join(sorted(fields))}")
    missing = [name for name, f in fields.items() if name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise TrainConfigError(f"{prefix.rstrip('.') or 'the config'}: missing {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        if cls is TrainConfig and key == "optimizer":
            values[key] = _build(OptimizerConfig, value, "optimizer.")
        elif cls is TrainConfig and key == "stages":
            if not isinstance(value, list):
                raise TrainConfigError(f"stages: expected a list of stages, got {value!r}")
            values[key] = [_build(StageConfig, stage, f"stages.{i}.") for i, stage in enumerate(value)]
        elif cls is TrainConfig and key == "compile_layers":
            values[key] = value  # validate: require_setting (true, false or "auto", nothing that equals True)
        else:
            values[key] = _coerce(f"{prefix}{key}", value, hints[key])
    return cls(**values)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``stages.1.epochs=3`` style override; list items by index (an existing item: the list is the config's)."""
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "the config"
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise TrainConfigError(f"--set {key}: {where} has {len(node)} item(s), numbered from 0; no item "
                                       f"{part!r}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise TrainConfigError(f"--set {key}: {where} is {node!r}, which has no keys")


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as err:
            raise TrainConfigError(f"cannot read the config {path}: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            raise TrainConfigError(f"{path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise TrainConfigError(f"{path}: a training config must be a mapping")
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise TrainConfigError(f"--set {item!r} is not key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise TrainConfigError(f"--set {item}: the value is not valid YAML ({err})") from err
        set_dotted(data, key.strip(), value)
    return _build(TrainConfig, data).validate()


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


# Settings a resumed run may change: where it runs and how it computes the same steps, not what it trains.
RESUMABLE_CHANGES = frozenset({
    "output_dir", "per_device_batch_size", "compile_layers", "attention", "distributed", "fsdp_layer_cls",
    "gradient_checkpointing", "save_steps", "save_total_limit", "logging_steps", "verify_shards",
    "dataloader_num_workers", "sort_steps_by_length", "selected_logits", "unpad_max_padding", "pack_rows",
})


def resume_conflicts(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings that differ between a stored run config and the one resuming it and that change what the run
    trains (data, stages, model, optimizer, seed, ...): resuming across them would mix two runs."""
    keys = sorted(set(previous) | set(current))
    return [k for k in keys if k not in RESUMABLE_CHANGES and previous.get(k) != current.get(k)]

