"""What both real engines share: the tokenizer, the prompt-length check, EOS ids and the device probe."""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator, Sequence

from runners.model_resolution import load_tokenizer, resolve_model


def too_long(n_prompt_tokens: int, max_model_len: int, room: int) -> str:
    from runners.api import TOO_LONG_MARK

    if n_prompt_tokens + room > max_model_len:
        return f"prompt has {n_prompt_tokens} tokens; with {room} more it {TOO_LONG_MARK}{max_model_len}"
    return ""


def format_gb(value: float) -> str:
    """A size in GiB as vLLM's environment variables take it (``2``, ``1.5``)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def eos_ids(tokenizer, model_dir: str) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    try:
        from transformers import GenerationConfig

        generation_eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
        ids |= set(generation_eos if isinstance(generation_eos, list)
                   else [generation_eos] if generation_eos is not None else [])
    except Exception:  # no generation_config.json
        pass
    return ids


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [text.find(stop) for stop in stops if stop and stop in text]
    return min(hits) if hits else None


class EngineBase:
    """What every engine object of ours shares: the resolved config, a lock, and the open/closed state.

    Subclasses call ``super().__init__(config)`` first and implement ``generate``, ``next_token_logprobs`` and
    ``close`` (which sets ``_closed``)."""

    def __init__(self, config):
        self.config = config.resolved()  # dtype auto: for the machine this engine runs on
        self.model_id = config.model
        self._lock = threading.RLock()
        self._closed = False

    def _check_open(self):
        if self._closed:
            raise RuntimeError("engine is closed")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LocalEngine(EngineBase):
    """What both engines that run the model in this process share: the resolved model and its tokenizer."""

    def __init__(self, config):
        super().__init__(config)
        self.model_dir = resolve_model(config.model, config.model_cache)
        self._tokenizer = load_tokenizer(self.model_dir)

    @property
    def tokenizer(self):
        return self._tokenizer

    def _encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in self._tokenizer(list(prompts)).input_ids]

    def _scoreable(self, prompts: Sequence[str], token_ids: Sequence[Sequence[int]]):
        """The start of every ``next_token_logprobs``: the prompts encoded, a result list with an error result
        for each prompt too long to score, and the indices of the others (the ones to score)."""
        from runners.api import ScoreResult

        if len(prompts) != len(token_ids):
            raise ValueError("next_token_logprobs needs one token id list per prompt")
        encoded = self._encode(prompts)
        results: list[ScoreResult | None] = [None] * len(prompts)
        todo = []
        for i, ids in enumerate(encoded):
            error = too_long(len(ids), self.config.max_model_len, 1)
            if error:
                results[i] = ScoreResult(logprobs={}, error=error)
            else:
                todo.append(i)
        return encoded, results, todo


ENGINE_LOG_ENV = "INVERSE_INSTRUCT_ENGINE_LOG"  # set by the job launcher: where engine messages go


@contextlib.contextmanager
def engine_output_to_log() -> Iterator[str | None]:
    """While an engine starts, send this process's stdout and stderr (file descriptors 1 and 2, so C++ warnings
    and the subprocesses the engine spawns, which inherit them) to the job's engine log, then restore them. The
    launcher's progress lines use their own copy of the console, so they keep going to the screen."""
    path = os.environ.get(ENGINE_LOG_ENV)
    if not path:
        yield None
        return
    os.environ.setdefault("TQDM_DISABLE", "1")  # loading bars of the engine's subprocesses
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
    saved = [os.dup(1), os.dup(2)]
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        yield path
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log):
            os.close(fd)
