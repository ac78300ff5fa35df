"""A content-addressed cache of engine results, so a re-run after a crash (or after a finished run) pays for no
request already answered.

Key: a hash of everything that decides a result: the model's fingerprint (a hash of its weights and config),
the engine settings that change outputs (engine, dtype, context length, engine seed), and the request itself
(the exact prompt with its sampling spec and seed, or the scoring token ids). Value: the engine's result,
verbatim (texts and token counts, or exact log-probs; JSON keeps floats exact). Results that carry an error are
not cached, except a prompt too long for the context (``runners.api.is_deterministic_error``): the same request
fails the same way under the same key, and a re-run would start the engine only to be told so again.

Storage: ``<root>/part-<uuid>.jsonl`` on any fsspec path (by default ``<output>/cache``). Each batch of new
results is one file, written atomically (a hidden temp file renamed into place), so a kill never leaves a torn
entry, and processes never write the same file. A process reads every part once, on its first lookup; a line that
is not an entry (a part damaged or cut short by something other than these atomic writes) is skipped with a warning
naming the file, and its request is asked of the engine again.

``CachingModelHandler`` wraps the engine's ModelHandler (Beam's style: a wrapper, not a subclass): each batch's
hits come from the cache, only the misses reach the engine, and their results are recorded as they complete:
when the engine reports each generation as it finishes (``run_inference_reporting``), finished results are
written every ``FLUSH_SECONDS`` while the batch is still running, so a kill loses at most that much finished work
plus the requests in flight, not the whole batch.
Counters: ``inference_cache.hits`` and ``inference_cache.misses``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from typing import Any, Iterable, Optional, Sequence

from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult

from runners.api import GenerateRequest, GenerateResult, ScoreRequest, ScoreResult, is_deterministic_error
from transforms.stage import StageBooks

LOG = logging.getLogger(__name__)
CACHE_STAGE = "inference_cache"
MISS_LOG_ENV = "INVERSE_INSTRUCT_CACHE_MISS_LOG"  # tests: append the key of every request sent to the engine
PART_GLOB = "part-*.jsonl"  # the names ``write_part`` gives the cache's files under its root
FLUSH_SECONDS = 5.0  # a part file per flush: few files on object stores, little work lost to a kill


# SamplingSpec fields added after caches existed, with the value that behaves as before them: keyed only when set
# otherwise, so a cache written before them still answers the same requests.
LATER_SPEC_FIELDS = {"top_k": 0, "ban_eos": False}


def request_key(identity: str, request: GenerateRequest | ScoreRequest) -> str:
    """The cache key of ``request`` for an engine whose outputs are fixed by ``identity``."""
    if isinstance(request, GenerateRequest):
        spec = dataclasses.asdict(request.spec)
        for name, inert in LATER_SPEC_FIELDS.items():
            if spec[name] == inert:
                del spec[name]
        body = {"kind": "generate", "prompt": request.prompt, "spec": spec}
    elif isinstance(request, ScoreRequest):
        body = {"kind": "score", "prompt": request.prompt, "token_ids": list(request.token_ids), "top_n": request.top_n}
    else:
        raise TypeError(f"no cache key for a {type(request).__name__}")
    text = json.dumps({"engine": identity, **body}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_result(result: GenerateResult | ScoreResult) -> dict[str, Any]:
    if isinstance(result, GenerateResult):
        value = {"kind": "generate", "texts": list(result.texts), "n_prompt_tokens": result.n_prompt_tokens,
                 "n_generated_tokens": result.n_generated_tokens}
    else:
        value = {"kind": "score", "logprobs": [[int(k), v] for k, v in result.logprobs.items()],
                 "top_logprobs": [[int(k), v] for k, v in result.top_logprobs.items()]}
    if result.error:
        value["error"] = result.error
    return value


def decode_result(value: dict[str, Any]) -> GenerateResult | ScoreResult:
    if value["kind"] == "generate":
        return GenerateResult(texts=tuple(value["texts"]), n_prompt_tokens=value["n_prompt_tokens"],
                              n_generated_tokens=value["n_generated_tokens"], error=value.get("error", ""))
    return ScoreResult(logprobs={int(k): v for k, v in value["logprobs"]},
                       top_logprobs={int(k): v for k, v in value["top_logprobs"]}, error=value.get("error", ""))


def cacheable(result: GenerateResult | ScoreResult) -> bool:
    error = getattr(result, "error", "")
    return not error or is_deterministic_error(error)


_WARNED_PARTS: set[str] = set()  # the damaged part files this process has already warned of


def _entry(line: bytes) -> tuple[str, dict[str, Any]] | None:
    """A part file's line as (key, encoded result), or None for a line that is not one."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return None
    if not isinstance(record, dict) or not isinstance(record.get("key"), str) or not isinstance(
            record.get("value"), dict):
        return None
    return record["key"], record["value"]


class InferenceCache:
    """The cache at ``root``: ``lookup`` keys, ``record`` new results (one atomic file per call)."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self._entries: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _fs(self):
        import fsspec

        return fsspec.core.url_to_fs(self.root)

    def _load(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._entries is None:
                entries: dict[str, dict[str, Any]] = {}
                fs, path = self._fs()
                for name in sorted(fs.glob(f"{path}/{PART_GLOB}")):
                    unreadable = 0
                    with fs.open(name, "rb") as f:
                        for line in f:
                            if not line.strip():
                                continue
                            entry = _entry(line)
                            if entry is None:
                                unreadable += 1
                            else:
                                entries[entry[0]] = entry[1]
                    if unreadable and name not in _WARNED_PARTS:
                        # A line cut short (a kill while something appended to the part) answers nothing; its
                        # request is simply asked of the engine again. Said once per process, not per handler.
                        _WARNED_PARTS.add(name)
                        LOG.warning("inference cache %s: skipped %d unreadable line%s (cut short or damaged): %s "
                                    "asked of the engine again", name, unreadable, "" if unreadable == 1 else "s",
                                    "its request is" if unreadable == 1 else "their requests are")
                self._entries = entries
            return self._entries

    def __len__(self) -> int:
        return len(self._load())

    def lookup(self, keys: Sequence[str]) -> dict[str, GenerateResult | ScoreResult]:
        entries = self._load()
        return {k: decode_result(entries[k]) for k in keys if k in entries}

    def record(self, items: Sequence[tuple[str, GenerateResult | ScoreResult]], written: bool = False) -> None:
        """Store the ``cacheable`` of ``items``; ``written``: already on disk (a ``ResultSink``
        wrote them), only this process's view is updated."""
        items = [(k, r) for k, r in items if cacheable(r)]
        if not written:
            write_part(self.root, items)
        entries = self._load()
        with self._lock:
            for k, r in items:
                entries[k] = encode_result(r)


def write_part(root: str, items: Sequence[tuple[str, GenerateResult | ScoreResult]]) -> None:
    """One atomic part file of ``items`` under ``root`` (nothing when there are none)."""
    from transforms.io.filesystems import atomic_write

    items = [(k, r) for k, r in items if cacheable(r)]
    if not items:
        return
    lines = "".join(json.dumps({"key": k, "value": encode_result(r)}, ensure_ascii=False) + "\n" for k, r in items)
    atomic_write(f"{root.rstrip('/')}/part-{uuid.uuid4().hex}.jsonl", lambda f: f.write(lines.encode("utf-8")))


@dataclasses.dataclass
class ResultSink:
    """Writes each generation to the cache as it finishes, in the process that runs the engine (the shared engine
    lives in another process, so this travels there pickled): every ``flush_seconds`` and when the last of its
    ``keys`` is answered. ``sink(i, result)`` answers ``keys[i]``."""

    root: str
    keys: Sequence[str]
    flush_seconds: float = FLUSH_SECONDS

    def __post_init__(self):
        self._pending: list[tuple[str, Any]] = []
        self._answered = 0
        self._last_flush = time.monotonic()

    def __call__(self, i: int, result: GenerateResult) -> None:
        self._answered += 1
        self._pending.append((self.keys[i], result))
        if self._answered >= len(self.keys) or time.monotonic() - self._last_flush >= self.flush_seconds:
            write_part(self.root, self._pending)
            self._pending = []
            self._last_flush = time.monotonic()


@dataclasses.dataclass(frozen=True)
class ResultSinks:
    """Given to an engine handler's ``run_inference_reporting`` with a batch: ``for_requests(indices)`` is the sink
    of the engine call that answers ``batch[indices]``."""

    root: str
    keys: Sequence[str]  # one per request of the batch
    flush_seconds: float = FLUSH_SECONDS

    def for_requests(self, indices: Sequence[int]) -> ResultSink:
        return ResultSink(self.root, [self.keys[i] for i in indices], self.flush_seconds)


class CachingModelHandler(ModelHandler):
    """Wraps an engine ``ModelHandler``: cached results are answered from ``cache_root``; only misses reach the
    engine, and their results are recorded as each batch completes."""

    def __init__(self, base: ModelHandler, cache_root: str, identity: str, flush_seconds: float = FLUSH_SECONDS):
        super().__init__()
        self._base = base
        self._flush_seconds = flush_seconds
        self._cache_root = cache_root
        self._identity = identity
        self._cache: InferenceCache | None = None
        self._books = StageBooks(CACHE_STAGE, "source_pair")
        self.model_identifier = getattr(base, "model_identifier", None)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = None  # each worker process reads the cache itself
        return state

    @property
    def cache(self) -> InferenceCache:
        if self._cache is None:
            self._cache = InferenceCache(self._cache_root)
        return self._cache

    def run_inference(self, batch: Sequence[Any], model: Any, inference_args: Optional[dict[str, Any]] = None
                      ) -> Iterable[PredictionResult]:
        started = time.perf_counter()
        keys = [request_key(self._identity, request) for request in batch]
        found = self.cache.lookup(keys)
        results: list[Any] = [found.get(k) for k in keys]
        misses = [i for i, r in enumerate(results) if r is None]
        self._books.count("hits", len(batch) - len(misses))
        # By kind too (``hits.generate``, ``hits.score``), for the progress line's "done of planned" per kind; the
        # readers of ``inference_cache.`` counters take ``hits`` by its exact name, so these add nothing to it.
        generate_hits = sum(isinstance(request, GenerateRequest) and result is not None
                            for request, result in zip(batch, results))
        for kind, n in (("generate", generate_hits), ("score", len(batch) - len(misses) - generate_hits)):
            if n:
                self._books.count(f"hits.{kind}", n)
        self._books.count("misses", len(misses))
        overhead = time.perf_counter() - started
        if misses:
            log = os.environ.get(MISS_LOG_ENV)
            if log:
                with open(log, "a", encoding="utf-8") as f:
                    f.write("".join(keys[i] + "\n" for i in misses))
            overhead += self._answer_misses(batch, keys, misses, results, model, inference_args)
        # The cache's own cost (keys, lookups, writes), so a run can say what resuming costs when nothing hits.
        self._books.count("overhead_us", int(overhead * 1e6))
        return [PredictionResult(example, result, self.model_identifier) for example, result in zip(batch, results)]

    def _answer_misses(self, batch, keys, misses, results, model, inference_args) -> float:
        """Fill ``results[i]`` for every miss from the engine and record them; the seconds spent recording here.
        Generations are written as they finish, by a ``ResultSink`` where the engine runs, when the handler can."""
        sub_batch = [batch[i] for i in misses]
        sub_keys = [keys[i] for i in misses]
        reporting = getattr(self._base, "run_inference_reporting", None)
        if reporting is not None:
            answered = reporting(sub_batch, model, inference_args,
                                 sinks=ResultSinks(self._cache_root, sub_keys, self._flush_seconds))
        else:
            answered = list(self._base.run_inference(sub_batch, model, inference_args))
        for i, prediction in zip(misses, answered):
            results[i] = prediction.inference
        started = time.perf_counter()
        streamed = [reporting is not None and isinstance(batch[i], GenerateRequest) for i in misses]
        self.cache.record([(keys[i], results[i]) for i, s in zip(misses, streamed) if s], written=True)
        self.cache.record([(keys[i], results[i]) for i, s in zip(misses, streamed) if not s])
        return time.perf_counter() - started

    # -- everything else is the engine's
    def load_model(self):
        return self._base.load_model()

    def share_model_across_processes(self) -> bool:
        return self._base.share_model_across_processes()

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return self._base.get_num_bytes(batch)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return self._base.batch_elements_kwargs()

    def get_resource_hints(self) -> dict[str, Any]:
        return self._base.get_resource_hints()

    def set_environment_vars(self):
        return self._base.set_environment_vars()

    def get_metrics_namespace(self) -> str:
        return self._base.get_metrics_namespace()

    def update_model_path(self, model_path: Optional[str] = None):
        return self._base.update_model_path(model_path)

    def validate_inference_args(self, inference_args: Optional[dict[str, Any]]):
        return self._base.validate_inference_args(inference_args)

    def keyed(self) -> KeyedModelHandler:
        return KeyedModelHandler(self)

    def __repr__(self) -> str:
        return f"CachingModelHandler({self._base!r}, cache={self._cache_root})"
