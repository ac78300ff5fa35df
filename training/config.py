"""The fine-tuning job's configuration: one YAML file, overridable with ``--set key=value``.

Every knob of the recipe lives here (defaults follow the InverseCoder paper): Adafactor with a fixed lr of 5e-5
(no relative step, no parameter scaling, no warm-up init), 15 warm-up steps then linear decay per stage, global
batch 512 by gradient accumulation, max length 1024, bf16 where supported, no gradient clipping, response-only loss.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from training.compile_choice import require_setting

PROMPT_FORMATS = ("paper", "chat", "raw")  # or a path to a transforms.instruct.prompts preset file
PRECISIONS = ("auto", "bf16", "fp32")
DISTRIBUTED = ("auto", "fsdp", "ddp")


@dataclasses.dataclass
class StageConfig:
    name: str
    data: str  # directory of shards (with shards.json) or a glob of Parquet files, any fsspec URL
    epochs: float = 1.0
    max_steps: int | None = None  # cap on optimizer steps (smoke runs); None = the epochs
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
    per_device_batch_size: int = 4
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
    # torch.compile each decoder layer (regional: the layers share one compiled graph, dynamic shapes): true, false,
    # or auto (training.compile_choice: single-process runs of >= 1000 examples on a CPU with native bf16).
    compile_layers: bool | str = "auto"
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
            raise ValueError("the config lists no stages")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}")
        require_setting(self.compile_layers)
        if self.distributed not in DISTRIBUTED:
            raise ValueError(f"distributed must be one of {DISTRIBUTED}")
        if self.optimizer.name == "adafactor" and (
            self.optimizer.scale_parameter or self.optimizer.relative_step or self.optimizer.warmup_init
        ):
            raise ValueError("adafactor runs in fixed-lr mode here (scale_parameter/relative_step/warmup_init false)")
        if self.unpad_max_padding is not None and not 0 <= self.unpad_max_padding < 1:
            raise ValueError("unpad_max_padding must be in [0, 1) or null")
        if self.max_length < 2 or self.global_batch_size < 1 or self.per_device_batch_size < 1:
            raise ValueError("max_length, global_batch_size and per_device_batch_size must be positive")
        return self

    def accumulation_steps(self, world_size: int) -> int:
        """per-device batch x accumulation x world size = global batch, exactly."""
        per_step = self.per_device_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of per_device_batch_size "
                f"{self.per_device_batch_size} x world size {world_size}"
            )
        return self.global_batch_size // per_step


def _build(cls, data: Mapping[str, Any]):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}; allowed: {sorted(fields)}")
    values = dict(data)
    if cls is TrainConfig:
        if "optimizer" in values and isinstance(values["optimizer"], Mapping):
            values["optimizer"] = _build(OptimizerConfig, values["optimizer"])
        values["stages"] = [_build(StageConfig, s) for s in values.get("stages") or []]
    return cls(**values)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``stages.1.epochs=3`` style override; list items by index."""
    parts = key.split(".")
    node: Any = data
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    data: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a training config must be a mapping")
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        set_dotted(data, key.strip(), yaml.safe_load(raw))
    return _build(TrainConfig, data).validate()


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


# Settings a resumed run may change: where it runs and how it computes the same steps, not what it trains.
RESUMABLE_CHANGES = frozenset({
    "output_dir", "per_device_batch_size", "compile_layers", "distributed", "fsdp_layer_cls", "gradient_checkpointing",
    "save_steps", "save_total_limit", "logging_steps", "verify_shards", "dataloader_num_workers",
    "sort_steps_by_length", "selected_logits", "unpad_max_padding",
})


def resume_conflicts(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings that differ between a stored run config and the one resuming it and that change what the run
    trains (data, stages, model, optimizer, seed, ...): resuming across them would mix two runs."""
    keys = sorted(set(previous) | set(current))
    return [k for k in keys if k not in RESUMABLE_CHANGES and previous.get(k) != current.get(k)]

