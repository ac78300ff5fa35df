"""An engine in a process of its own (the engine server): how vLLM runs on CPU by default.

Left to itself, ``vllm.LLM`` runs the model in two more processes, its EngineCore and that core's worker. vLLM
forces ``spawn`` on CPU, so each re-imports torch, transformers and vLLM, and on x86 it keeps one core for the
engine core and binds the worker's OpenMP threads to the rest: on a 2-core CPU the model runs on one thread. With
the engine core and worker in one process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) the model gets both cores and the
same work ran 1.7x faster end to end (``bench/compile_choice.py --modes eager,in-process``, README).

That mode cannot run inside the Beam worker that hosts the shared engine: vLLM's start-up scans every loaded module
and fails on numba's (``transforms/decontam`` loads numba), and vLLM can bind its OpenMP threads only in a process
whose other work leaves torch's threads alone. So ``ServedEngine`` starts ``python -m runners.engines.server``: a
lean process that imports only the engine, builds it (vLLM with its engine core in-process), and answers over a
socket pair. The caller keeps one engine process to watch and kill (the watchdog, ``engine_pids()``); the server
exits when the caller closes it or its end of the socket.

Messages are pickled tuples (``multiprocessing.connection``): the client sends the ``EngineConfig``, then
``("generate", prompts, specs, stream)``, ``("score", prompts, token_ids, top_ns, method)`` or ``("close",)``;
the server answers ``("ready", info)`` or ``("failed", traceback)``, then ``("result", i, result)`` for each
finished generation when streaming, and ``("done", results)`` or ``("error", traceback)``.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Sequence

from runners.api import EngineFailure, GenerateResult, OnResult, SamplingSpec, ScoreResult, last_error_line
from runners.engines.cleanup import (
    LIVE_ENGINES,
    install_cleanup_hooks,
    start_watchdog,
    stop_watchdog,
    terminate,
    with_descendants,
)
from runners.engines.common import ENGINE_LOG_ENV, EngineBase, format_gb
from runners.engines.config import EngineConfig
from runners.engines.cpu_runtime import cpu_runtime_preload

LOG = logging.getLogger(__name__)

SERVER_MODULE = "runners.engines.server"
CLOSE_TIMEOUT_S = 30


def server_environment(config: EngineConfig, environ: dict[str, str]) -> dict[str, str]:
    """The server's environment: vLLM in-process, its KV cache size, this package importable, and (with
    ``cpu_runtime_preload``) TCMalloc and Intel OpenMP preloaded: they must be there when the process starts."""
    env = dict(environ)
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", format_gb(config.kv_cache_gb))
    if config.engine == "vllm" and config.cpu_amx == "off":  # oneDNN reads it once, as it starts (vllm_plugin)
        from runners.engines.vllm_plugin import ONEDNN_WITHOUT_AMX

        env.setdefault("ONEDNN_MAX_CPU_ISA", ONEDNN_WITHOUT_AMX)
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, environ.get("PYTHONPATH", "")) if p)
    if config.cpu_runtime_preload:
        preload = cpu_runtime_preload(environ)
        if preload:
            env["LD_PRELOAD"] = preload
    return env


class ServedEngine(EngineBase):
    """An engine in its own process (module docstring), with the engines' interface; thread-safe (calls are
    serialized)."""

    def __init__(self, config: EngineConfig):
        import psutil

        super().__init__(config)
        self._tokenizer = None
        self._busy = False  # a call waits on the server's answer
        self._watchdog = None
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        install_cleanup_hooks()
        LIVE_ENGINES.add(self)
        ours, theirs = socket.socketpair()
        log_path = os.environ.get(ENGINE_LOG_ENV)
        log = open(log_path, "ab") if log_path else None  # noqa: SIM115 (the child keeps its own copy)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", SERVER_MODULE, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                env=server_environment(self.config, os.environ), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            theirs.close()
            if log is not None:
                log.close()
        self._server = psutil.Process(self._process.pid)
        self._watchdog = start_watchdog([self._process.pid])
        self._conn = Connection(ours.detach())
        try:
            self._busy = True  # a stop while the server starts must not wait for it to finish starting
            self._send(self.config)
            kind, payload = self._receive()
            self._busy = False
            if kind != "ready":
                error = last_error_line(payload)
                if "VLLM_CPU_KVCACHE_SPACE" in error:  # vLLM names its variable; the job sets it from an option
                    error += " (--kv-cache-gb sets VLLM_CPU_KVCACHE_SPACE)"
                raise EngineFailure(f"the {self.config.engine} engine failed to start: {error}", payload)
        except BaseException:
            self.close()
            raise
        self.info: dict[str, Any] = payload

    @property
    def model_dtype(self) -> str | None:
        """The dtype the model computes in, as torch names it (``torch.float32``)."""
        return self.info.get("dtype")

    @property
    def tokenizer(self):
        """The model's tokenizer, loaded here on first use (the server tokenizes the prompts)."""
        if self._tokenizer is None and self.config.engine != "fake":
            from runners.model_resolution import load_tokenizer, resolve_model

            self._tokenizer = load_tokenizer(resolve_model(self.config.model, self.config.model_cache))
        return self._tokenizer

    def engine_pids(self) -> list[int]:
        """PIDs of the server and its children (for tests and diagnostics)."""
        return [proc.pid for proc in with_descendants([self._server])]

    def watchdog_pid(self) -> int | None:
        return self._watchdog.pid if self._watchdog else None

    def generate(self, prompts: Sequence[str], specs: Sequence[SamplingSpec],
                 on_result: OnResult | None = None) -> list[GenerateResult]:
        if len(prompts) != len(specs):
            raise ValueError("generate needs one SamplingSpec per prompt")
        if on_result is None:
            return self._call(("generate", list(prompts), list(specs), False))
        results: list[GenerateResult | None] = [None] * len(prompts)

        def streamed(i: int, result: GenerateResult) -> None:
            results[i] = result
            on_result(i, result)

        self._call(("generate", list(prompts), list(specs), True), streamed)
        missing = sum(result is None for result in results)
        if missing:
            raise EngineFailure(f"the engine server finished without answering {missing} request(s)")
        return results  # type: ignore[return-value]

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[Sequence[int]],
                            top_ns: Sequence[int] | None = None, method: str | None = None) -> list[ScoreResult]:
        return self._call(("score", list(prompts), [list(ids) for ids in token_ids],
                           None if top_ns is None else list(top_ns), method))

    def _call(self, message: tuple, on_result=None):
        """Send one request and read until its answer. A failing ``on_result`` is raised only after the answer,
        so the connection stays in step for the next call."""
        with self._lock:
            self._check_open()
            failure: BaseException | None = None
            self._busy = True
            try:
                self._send(message)
                while True:
                    kind, *payload = self._receive()
                    if kind != "result":
                        break
                    if failure is None:
                        try:
                            on_result(*payload)
                        except BaseException as error:  # noqa: BLE001 (re-raised once the answer is read)
                            failure = error
            except BaseException:
                self.close()  # the server is gone or out of step with us: no later call may use it
                raise
            finally:
                self._busy = False
            if failure is not None:
                raise failure
            if kind == "error":
                raise EngineFailure(f"the {self.config.engine} engine failed: {last_error_line(payload[0])}",
                                    payload[0])
            return payload[0]

    def _send(self, message: tuple) -> None:
        try:
            self._conn.send(message)
        except OSError as error:
            raise self._gone() from error

    def _receive(self) -> tuple:
        try:
            return self._conn.recv()
        except (EOFError, OSError) as error:
            raise self._gone() from error

    def _gone(self) -> EngineFailure:
        """The error for a server that closed its end: it exited, or is about to."""
        try:
            code = self._process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        where = os.environ.get(ENGINE_LOG_ENV) or "this process's stderr"
        return EngineFailure(f"the {self.config.engine} engine server (pid {self._process.pid}) exited"
                            f"{'' if code is None else f' with status {code}'}; its output is in {where}")

    def close(self) -> None:
        if self._busy and self._process is not None and self._process.poll() is None:
            # A stop (Ctrl-C, SIGTERM) while a call waits: the server reads nothing until its batch is done, so the
            # polite "close" below would wait for the batch (up to minutes). End it now; that call then fails as
            # the server gone. Answers it already streamed are in the inference cache.
            terminate(with_descendants([self._server]))
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._conn is not None:
                try:
                    self._conn.send(("close",))
                except OSError:
                    pass
            if self._process is not None:
                try:
                    self._process.wait(CLOSE_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    LOG.warning("the engine server did not exit in %d s; killing it", CLOSE_TIMEOUT_S)
                terminate(with_descendants([self._server]))
            if self._conn is not None:
                self._conn.close()
            stop_watchdog(self._watchdog)
            LIVE_ENGINES.discard(self)


# ------------------------------------------------------------------------------------------------ the server

def hosted_engine(config: EngineConfig):
    """The engine this server runs: vLLM with its engine core in this process, or the fake engine (for tests of
    the server itself)."""
    if config.engine == "vllm":
        from runners.engines.vllm_engine import VllmEngine

        return VllmEngine(config)
    if config.engine == "fake":
        from runners.engines.fake_engine import FakeEngine

        return FakeEngine(config)
    raise ValueError(f"the engine server runs vllm or fake engines, not {config.engine!r}")


def serve(conn: Connection) -> int:
    """Build the engine from the first message, then answer requests until ``close`` or the caller's end closes."""
    config = conn.recv()
    try:
        engine = hosted_engine(config)
    except BaseException:  # noqa: BLE001 (the caller gets the traceback)
        conn.send(("failed", traceback.format_exc()))
        return 1
    try:
        conn.send(("ready", {"pid": os.getpid(), "dtype": getattr(engine, "model_dtype", None)}))
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return 0
            kind = message[0]
            if kind == "close":
                return 0
            try:
                if kind == "generate":
                    _, prompts, specs, stream = message
                    results = engine.generate(
                        prompts, specs, (lambda i, result: conn.send(("result", i, result))) if stream else None)
                    conn.send(("done", None if stream else results))
                elif kind == "score":
                    _, prompts, token_ids, top_ns, method = message
                    conn.send(("done", engine.next_token_logprobs(
                        prompts, token_ids, top_ns, **({"method": method} if method else {}))))
                else:
                    raise ValueError(f"unknown request {kind!r}")
            except Exception:  # noqa: BLE001 (the caller gets the traceback; the server keeps serving)
                conn.send(("error", traceback.format_exc()))
    finally:
        engine.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: python -m {SERVER_MODULE} <socket fd>  (started by ServedEngine)", file=sys.stderr)
        return 2
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    conn = Connection(int(argv[0]))
    try:
        return serve(conn)
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
