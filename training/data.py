"""Training data: Parquet shards on any fsspec path -> tokenized, response-masked examples.

Order. A stage that runs E epochs over N examples is ONE sequence of N*E examples (``StageExamples``), read with
a sequential sampler, so the order is a pure function of (shards, seed) and never depends on trainer epoch hooks:
epoch 0 reads the shards in index order (the shard writer already shuffled rows by ``hash(id, seed)``); each later
epoch permutes the shard order and the rows inside each shard with an RNG seeded by ``(seed, epoch)``. The
Trainer's data loader (accelerate) deals micro-batches to ranks round-robin, so every rank's share is
deterministic, and resuming skips batch indices without reading their data.

Micro-batches. Inside each optimizer step the examples are ordered longest first (``StepLengthOrder``), so a
micro-batch holds examples of similar length and pads less; the step's set of examples, and so its gradient (a
sum over them, normalised by the step's token count), is the same as in the plain order. In one process or
under DDP the trainer then runs each micro-batch as groups of rows trimmed to their length
(``unpad_max_padding``, see ``training.finetune.unpadded_groups``), so what padding remains is mostly not
computed either.

Memory. Rows are read lazily, one shard's text columns at a time (a small LRU), so memory is bounded by the shard
size, not by the corpus: write training shards with ``--shard-mb`` small enough (e.g. 64).

Masking. ``encode_example`` builds ``[BOS] + prompt + response + [EOS]``; labels are -100 on BOS and the prompt,
so the loss counts exactly the response tokens and EOS. With ``prompt_format: raw`` the prompt is empty and the
loss counts every token of the text. Examples longer than ``max_length`` are truncated from
the end and counted.
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
import hashlib
import json
import posixpath
import re
from typing import Any, Sequence

import fsspec
import numpy as np
import pyarrow.parquet as pq
import torch

from transforms.io.arrow_input import parquet_input

IGNORE_INDEX = -100
TEXT_COLUMNS = ("instruction", "response")
INDEX_NAME = "shards.json"


@dataclasses.dataclass(frozen=True)
class Shard:
    url: str
    rows: int
    sha256: str | None = None
    nbytes: int | None = None


def list_shards(data: str) -> list[Shard]:
    """Shards of a stage: from ``<dir>/shards.json`` when present, else the Parquet files a glob/dir matches.
    Several sources, comma-separated, are read in the order given (the self-play loop trains on every round's
    puzzles so far)."""
    if "," in data:
        return [shard for part in data.split(",") if part.strip() for shard in list_shards(part.strip())]
    fs, path = fsspec.core.url_to_fs(data)
    base = data.rstrip("/")
    index_path = posixpath.join(path, INDEX_NAME)
    if fs.isdir(path) and fs.exists(index_path):
        with fs.open(index_path, "rb") as f:
            index = json.loads(f.read().decode("utf-8"))
        return [Shard(f"{base}/{s['path']}", int(s["rows"]), s.get("sha256"), s.get("bytes")) for s in index["shards"]]
    pattern = posixpath.join(path, "*.parquet") if fs.isdir(path) else path
    files = sorted(fs.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no shards.json and no Parquet files at {data}")
    # The shard names of transforms.io.parquet.shard_name, matched here: importing that module would load Beam
    # into every training rank.
    if fs.isdir(path) and any(re.search(r"-\d{5,}-of-\d{5,}\.parquet$", f) for f in files):
        # Our shard writer's files without its index: a write that did not finish (it removes the index first).
        raise FileNotFoundError(f"{data} holds shards but no shards.json: its write did not finish")
    shards = []
    for file in files:
        url = fs.unstrip_protocol(file) if "://" in data else file
        with parquet_input(url) as f:
            shards.append(Shard(url, pq.ParquetFile(f).metadata.num_rows))
    return shards


def verify_shards(shards: Sequence[Shard]) -> None:
    """Re-hash the shards that carry a sha256 (those listed in shards.json); raise on any mismatch."""
    for shard in shards:
        if shard.sha256 is None:
            continue
        fs, path = fsspec.core.url_to_fs(shard.url)
        digest = hashlib.sha256()
        with fs.open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != shard.sha256:
            raise ValueError(f"{shard.url}: sha256 differs from shards.json (corrupt or replaced shard)")


def check_shard_texts(shards: Sequence[Shard], prompt_format: str) -> None:
    """Before any stage trains: every shard has the text columns, and every row a response (and, with a prompt
    preset, an instruction; ``raw`` wants none). ``ValueError`` naming the file, the count and the first row:
    found as the stage reached them, a missing column or a null ended the run after the stages before had trained,
    and an empty response trained the EOS token alone, silently."""
    for shard in shards:
        with parquet_input(shard.url) as f:
            parquet = pq.ParquetFile(f)
            present = parquet.schema_arrow.names
            missing = [c for c in TEXT_COLUMNS if c not in present]
            if missing:
                raise ValueError(f"{shard.url}: no {', '.join(missing)} column (it has {', '.join(present)}); "
                                 f"training shards hold {', '.join(TEXT_COLUMNS)}")
            columns = parquet.read(columns=list(TEXT_COLUMNS), use_threads=False)
        instructions = columns.column("instruction").to_pylist()
        responses = columns.column("response").to_pylist()
        checks = [(lambda _, r: r is None or not str(r).strip(), "a null or empty response")]
        if prompt_format == RAW:
            checks.append((lambda i, _: bool(i), f"an instruction, which prompt_format {RAW} does not train on"))
        else:
            checks.append((lambda i, _: i is None or not str(i).strip(), "a null or empty instruction"))
        for bad, what in checks:
            rows = [n for n, (i, r) in enumerate(zip(instructions, responses)) if bad(i, r)]
            if rows:
                raise ValueError(f"{shard.url}: {len(rows):,} row(s) with {what} (first: row {rows[0]})")


# --------------------------------------------------------------------------- tokenization


RAW = "raw"


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How an instruction becomes the prompt: a ``transforms.instruct.prompts`` preset (``paper``, ``chat`` or a
    path), or ``raw``: no prompt at all, so the response is plain text trained with the loss on every token (the
    self-play reference's causal-LM training; an example's instruction must then be empty)."""

    preset: str = "paper"

    def prompt(self, instruction: str, tokenizer) -> str:
        if self.preset == RAW:
            if instruction:
                raise ValueError("prompt_format raw trains on the response text alone; this example has an "
                                 "instruction (write the shards with an empty instruction, or use a prompt preset)")
            return ""
        from transforms.instruct.prompts import format_training_prompt

        return format_training_prompt(instruction, self.preset, tokenizer)


def encode_example(
    tokenizer, prompt: str, response: str, max_length: int
) -> dict[str, Any]:
    """Token ids and labels of one example; labels mask BOS and the prompt, keep the response and EOS."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; the recipe ends every response with EOS")
    # A chat template may already open with the BOS token; never put two.
    head = [bos] if bos is not None and (not prompt_ids or prompt_ids[0] != bos) else []
    input_ids = head + prompt_ids + response_ids + [eos]
    labels = [IGNORE_INDEX] * (len(head) + len(prompt_ids)) + response_ids + [eos]
    truncated = len(input_ids) > max_length
    return {
        "input_ids": input_ids[:max_length],
        "labels": labels[:max_length],
        "truncated": truncated,
        "length": len(input_ids),
    }


class Collator:
    """Right-pads a micro-batch to its longest example; adds per-batch statistics (popped before the model)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        n = len(features)
        input_ids = torch.full((n, longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((n, longest), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((n, longest), dtype=torch.long)
        for i, f in enumerate(features):
            k = len(f["input_ids"])
            input_ids[i, :k] = torch.tensor(f["input_ids"], dtype=torch.long)
            labels[i, :k] = torch.tensor(f["labels"], dtype=torch.long)
            attention[i, :k] = 1
        real = int(attention.sum())
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": labels,
            # Statistics for logging; InverseCoderTrainer removes them before the forward pass.
            "stat_real_tokens": torch.tensor(real, dtype=torch.long),
            "stat_total_tokens": torch.tensor(n * longest, dtype=torch.long),
            "stat_truncated": torch.tensor(sum(bool(f["truncated"]) for f in features), dtype=torch.long),
            "stat_examples": torch.tensor(n, dtype=torch.long),
        }


STAT_KEYS = ("stat_real_tokens", "stat_total_tokens", "stat_truncated", "stat_examples")


# --------------------------------------------------------------------------- the stage's example sequence


def epoch_order(shards: Sequence[Shard], epoch: int, seed: int) -> tuple[list[int], list[int]]:
    """Shard visiting order of ``epoch`` and its cumulative row offsets (for bisect)."""
    order = list(range(len(shards)))
    if epoch > 0:
        order = [int(i) for i in np.random.default_rng([seed, epoch]).permutation(len(shards))]
    offsets, total = [], 0
    for i in order:
        offsets.append(total)
        total += shards[i].rows
    return order, offsets


class StageExamples(torch.utils.data.Dataset):
    """The ``epochs * N`` examples of one stage, in a fixed order, tokenized on access."""

    def __init__(
        self,
        shards: Sequence[Shard],
        tokenizer,
        *,
        epochs: float,
        seed: int,
        max_length: int,
        prompt_format: PromptFormat = PromptFormat(),
        cache_shards: int = 2,
    ):
        self.shards = list(shards)
        self.rows_per_epoch = sum(s.rows for s in self.shards)
        if self.rows_per_epoch == 0:
            raise ValueError("the stage's shards hold no rows")
        self.length = int(self.rows_per_epoch * epochs)
        if self.length <= 0:
            raise ValueError(f"epochs={epochs} gives no examples")
        self.tokenizer = tokenizer
        self.seed = seed
        self.max_length = max_length
        self.prompt_format = prompt_format
        self._cache: collections.OrderedDict[int, dict[str, list]] = collections.OrderedDict()
        self._cache_size = cache_shards
        self._orders: dict[int, tuple[list[int], list[int]]] = {}
        self._row_perms: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def locate(self, index: int) -> tuple[int, int, int]:
        """``(epoch, shard index, row in shard)`` of the ``index``-th example."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        epoch, position = divmod(index, self.rows_per_epoch)
        if epoch not in self._orders:
            self._orders = {epoch: epoch_order(self.shards, epoch, self.seed)}  # one epoch is read at a time
        order, offsets = self._orders[epoch]
        slot = bisect.bisect_right(offsets, position) - 1
        shard = order[slot]
        row = position - offsets[slot]
        if epoch > 0:
            key = (epoch, shard)
            if key not in self._row_perms:
                if len(self._row_perms) > 8:
                    self._row_perms.clear()
                self._row_perms[key] = np.random.default_rng([self.seed, epoch, shard]).permutation(
                    self.shards[shard].rows)
            row = int(self._row_perms[key][row])
        return epoch, shard, row

    def _columns(self, shard: int) -> dict[str, list]:
        if shard in self._cache:
            self._cache.move_to_end(shard)
            return self._cache[shard]
        with parquet_input(self.shards[shard].url) as f:
            # use_threads=False, not read_table: see transforms.io.arrow_input (an abort at exit)
            table = pq.ParquetFile(f).read(columns=list(TEXT_COLUMNS), use_threads=False)
        if table.num_rows != self.shards[shard].rows:
            raise ValueError(f"{self.shards[shard].url}: {table.num_rows} rows, "
                             f"the index says {self.shards[shard].rows}")
        columns = {name: table.column(name).to_pylist() for name in TEXT_COLUMNS}
        self._cache[shard] = columns
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return columns

    def text(self, index: int) -> tuple[str, str]:
        _, shard, row = self.locate(index)
        columns = self._columns(shard)
        return columns["instruction"][row], columns["response"][row]

    def __getitem__(self, index: int) -> dict[str, Any]:
        instruction, response = self.text(index)
        prompt = self.prompt_format.prompt(instruction, self.tokenizer)
        return encode_example(self.tokenizer, prompt, response, self.max_length)

    def token_length(self, index: int) -> int:
        """Tokens the ``index``-th example occupies in a batch (after truncation)."""
        return len(self[index]["input_ids"])


class StepLengthOrder(torch.utils.data.Sampler):
    """The dataset's order, except that each window of ``window`` consecutive examples is sorted longest first
    (ties in dataset order).

    With ``window`` = the global batch a window is exactly one optimizer step: the Trainer's data loader cuts
    the order into per-device micro-batches and deals consecutive ones to the ranks, ``accumulation x world
    size`` of them per step. Sorting inside the window changes which micro-batch an example lands in, not which
    step, so each step's gradient is unchanged while its micro-batches pad less. Lengths are computed a window
    at a time, when the window is reached (a resumed run tokenizes the windows it skips, nothing more).
    """

    def __init__(self, dataset: StageExamples, window: int):
        if window < 1:
            raise ValueError("window must be positive")
        self.dataset = dataset
        self.window = window

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        for start in range(0, len(self.dataset), self.window):
            indices = range(start, min(start + self.window, len(self.dataset)))
            lengths = {i: self.dataset.token_length(i) for i in indices}
            yield from sorted(indices, key=lambda i: (-lengths[i], i))
