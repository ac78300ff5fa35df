"""The Beam ``ModelHandler`` that serves every inference stage from ONE engine per machine.

Elements are ``GenerateRequest`` or ``ScoreRequest`` (wrap with ``.keyed()`` for ``(record id, request)``
tuples); inferences are ``GenerateResult`` / ``ScoreResult``.

How one engine per machine is guaranteed:

* The engine lives in its own ``MultiProcessShared`` whose tag is ``handler.model_identifier`` (a hash of the
  engine config plus a nonce of the launching process), not in what Beam shares per RunInference transform
  (Beam derives that tag per transform, a random uuid unless ``model_identifier`` is passed, so two stages would
  get two models). ``load_model`` returns a small ``EngineRef`` naming it; ``run_inference`` starts the engine on
  the first batch (or connects to the one already running) and calls it through a per-process proxy to that tag.
  So every RunInference with the same engine config, in every SDK worker process on the machine, uses the same
  engine, and it is loaded exactly once.
* ``share_model_across_processes()`` is False: Beam keeps the ``EngineRef`` per process. Sharing that name
  across processes too cost every pipeline two round trips to Beam's manager process in RunInference's setup
  (0.35 s of a 5 s judging pipeline, 2026-12-02) and bought nothing.
* ``run_inference(pcoll, handler)`` below also passes ``model_identifier``, so the stages name one model.
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Iterable, Optional, Sequence

from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from runners.api import GenerateRequest, GenerateResult, ScoreRequest, ScoreResult
from runners.engines import EngineConfig
from transforms.stage import StageBooks

ENGINE_STAGE = "engine"

LOG = logging.getLogger(__name__)

LOAD_LOG_ENV = "INVERSE_INSTRUCT_ENGINE_LOAD_LOG"
# One nonce per launching process: handlers built for the same pipeline share an identifier, while another
# pipeline launched elsewhere on the machine never connects to this one's engine.
_LAUNCH_NONCE = uuid.uuid4().hex[:8]
# Prompt-length buckets (characters) for BatchElements, so padded transformers batches hold similar lengths.
LENGTH_BUCKETS = (1024, 2048, 4096, 8192)

Request = GenerateRequest | ScoreRequest
Result = GenerateResult | ScoreResult


def engine_identifier(config: EngineConfig, nonce: str = _LAUNCH_NONCE) -> str:
    digest = hashlib.sha256(config.identity.encode()).hexdigest()[:12]
    return f"inverse_instruct_{config.engine}_{digest}_{nonce}"


def request_length(element: Any) -> int:
    """Prompt length in characters of a request or a keyed ``(id, request)`` pair (BatchElements ``length_fn``)."""
    request = element[1] if isinstance(element, tuple) else element
    return len(request.prompt)


@dataclasses.dataclass(frozen=True)
class EngineRef:
    """What Beam shares: the name of the shared engine. The engine itself is shared under ``tag``."""

    tag: str


class _EngineLoader:
    """Builds the engine inside the process that hosts the shared object (picklable, no engine state)."""

    def __init__(self, config: EngineConfig, tag: str, load_log: str | None):
        self.config = config
        self.tag = tag
        self.load_log = load_log

    def __call__(self):
        from runners.engines import build_engine

        started = time.time()
        engine = build_engine(self.config)
        atexit.register(_remove_address_file, self.tag)
        log_path = self.load_log or os.environ.get(LOAD_LOG_ENV)
        if log_path:
            # One O_APPEND write per load: safe when processes append concurrently.
            line = (f"{os.getpid()}\t{self.config.engine}\t{self.config.model}\t{self.tag}\t"
                    f"{time.time() - started:.1f}s\n")
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        LOG.info("engine %s loaded in %.1fs (pid %d)", self.tag, time.time() - started, os.getpid())
        return engine


def _remove_address_file(tag: str) -> None:
    # Beam's in-worker MultiProcessShared server never deletes it; a stale one makes the next run retry.
    for suffix in (".address", ".address.tmp"):
        try:
            os.remove(os.path.join(tempfile.gettempdir(), tag + suffix))
        except OSError:
            pass


_PROXIES: dict[str, Any] = {}
_PROXIES_LOCK = threading.Lock()


def shared_engine(config: EngineConfig, tag: str, load_log: str | None = None):
    """A proxy to the machine's engine for ``tag``, starting it in this process if nobody has yet."""
    from apache_beam.utils.multi_process_shared import MultiProcessShared

    with _PROXIES_LOCK:
        proxy = _PROXIES.get(tag)
        if proxy is None:
            proxy = MultiProcessShared(_EngineLoader(config, tag, load_log), tag=tag, always_proxy=True).acquire()
            _PROXIES[tag] = proxy
        return proxy


class EngineModelHandler(ModelHandler[Request, PredictionResult, EngineRef]):
    """RunInference handler for both stages: ``GenerateRequest`` -> ``GenerateResult``,
    ``ScoreRequest`` -> ``ScoreResult``."""

    def __init__(
        self,
        config: EngineConfig = EngineConfig(),
        *,
        min_batch_size: int | None = None,
        max_batch_size: int | None = None,
        accelerator: str | None = None,
        worker_torch_threads: int | None = 1,
        load_log: str | None = None,
        model_identifier: str | None = None,
    ):
        super().__init__()
        self.config = config
        self.model_identifier = model_identifier or engine_identifier(config)
        vllm = config.engine == "vllm"
        self._min_batch_size = min_batch_size or (64 if vllm else 1)
        self._max_batch_size = max(max_batch_size or (256 if vllm else 16), self._min_batch_size)
        self._accelerator = accelerator
        self._worker_torch_threads = worker_torch_threads
        self._load_log = load_log
        self._books = StageBooks(ENGINE_STAGE, "source_pair")  # live counts of requests answered and tokens

    # -- what Beam asks
    def share_model_across_processes(self) -> bool:
        return False  # the engine is shared by its own MultiProcessShared (module docstring), not the EngineRef

    def load_model(self) -> EngineRef:
        # A name only: run_inference starts the engine (or connects to it) on the first batch, so a stage whose
        # requests all hit the inference cache never loads it.
        return EngineRef(self.model_identifier)

    def run_inference(self, batch: Sequence[Request], model: Any,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        return self.run_inference_reporting(batch, model, inference_args)

    def run_inference_reporting(self, batch: Sequence[Request], model: Any,
                                inference_args: Optional[dict[str, Any]] = None,
                                sinks: Any = None) -> list[PredictionResult]:
        """``run_inference``; the generations are also handed, as each completes, to
        ``sinks.for_requests(indices)`` (a picklable ``runners.cache.ResultSinks``: the engine may run in another
        process), so the inference cache keeps finished work that a kill would otherwise lose."""
        engine = shared_engine(self.config, self.model_identifier, self._load_log)
        results: list[Result | None] = [None] * len(batch)
        generate = [i for i, r in enumerate(batch) if isinstance(r, GenerateRequest)]
        score = [i for i, r in enumerate(batch) if isinstance(r, ScoreRequest)]
        unknown = len(batch) - len(generate) - len(score)
        if unknown:
            bad = next(r for r in batch if not isinstance(r, (GenerateRequest, ScoreRequest)))
            raise TypeError(f"EngineModelHandler takes GenerateRequest or ScoreRequest, got {type(bad).__name__}")
        if generate:
            outputs = engine.generate([batch[i].prompt for i in generate], [batch[i].spec for i in generate],
                                      on_result=None if sinks is None else sinks.for_requests(generate))
            for i, output in zip(generate, outputs):
                results[i] = output
            self._books.count("done.generate", len(generate))
            self._books.count("generated_tokens", sum(o.n_generated_tokens for o in outputs))
        if score:
            outputs = engine.next_token_logprobs([batch[i].prompt for i in score],
                                                 [tuple(batch[i].token_ids) for i in score],
                                                 [batch[i].top_n for i in score])
            for i, output in zip(score, outputs):
                results[i] = output
            self._books.count("done.score", len(score))
        return [PredictionResult(example, result, self.model_identifier) for example, result in zip(batch, results)]

    def get_num_bytes(self, batch: Sequence[Request]) -> int:
        return sum(len(r.prompt.encode()) for r in batch)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"min_batch_size": self._min_batch_size, "max_batch_size": self._max_batch_size}
        if self.config.engine == "transformers":
            # Padded batches: keep similar prompt lengths together. vLLM does not pad, so it does not need it.
            kwargs.update(length_fn=request_length, bucket_boundaries=list(LENGTH_BUCKETS))
        return kwargs

    def get_resource_hints(self) -> dict[str, Any]:
        return {"accelerator": self._accelerator} if self._accelerator else {}

    def set_environment_vars(self):
        # Called in every SDK worker at DoFn setup. Workers that do not host the engine only pickle requests:
        # one torch thread each keeps them off the engine's cores. The transformers engine resets its own count.
        if self._worker_torch_threads and "torch" in sys.modules:
            import torch

            torch.set_num_threads(self._worker_torch_threads)

    def get_metrics_namespace(self) -> str:
        return "inverse_instruct.engine"

    def update_model_path(self, model_path: Optional[str] = None):
        pass

    def validate_inference_args(self, inference_args: Optional[dict[str, Any]]):
        if inference_args:
            raise ValueError(f"EngineModelHandler takes no inference_args, got {sorted(inference_args)}")

    def keyed(self) -> KeyedModelHandler:
        """The same handler for ``(key, request)`` elements (the stages key by record id)."""
        return KeyedModelHandler(self)

    def __repr__(self) -> str:
        return f"EngineModelHandler({self.config.engine}, {self.config.model}, id={self.model_identifier})"


def model_identifier_of(handler: ModelHandler) -> str | None:
    """``model_identifier`` of an EngineModelHandler, also through KeyedModelHandler/MaybeKeyedModelHandler."""
    seen = set()
    while handler is not None and id(handler) not in seen:
        seen.add(id(handler))
        if isinstance(handler, EngineModelHandler):
            return handler.model_identifier
        handler = getattr(handler, "_unkeyed", None) or getattr(handler, "_base", None)
    return None


def run_inference(pcoll, handler: ModelHandler, label: str | None = None):
    """``pcoll | RunInference(handler, model_identifier=...)`` with the engine's shared identifier."""
    transform = RunInference(handler, model_identifier=model_identifier_of(handler))
    return pcoll | (label or "RunInference") >> transform if label else pcoll | transform
