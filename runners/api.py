"""The small engine interface shared by every stage that talks to the model.

Stages build requests from these dataclasses; ``runners.model_handler`` feeds
them to the one shared engine through Beam ``RunInference``. Everything here is
plain data, so it pickles across SDK workers and runners.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable, Protocol, Sequence


@dataclasses.dataclass(frozen=True)
class SamplingSpec:
    """Sampling parameters of one generation request."""

    n: int = 1
    temperature: float = 0.8
    top_p: float = 1.0
    top_k: int = 0  # 0: the whole vocabulary; HF generate's default (the self-play reference's sampling) is 50
    ban_eos: bool = False  # never sample EOS, as HF generate with min_length = max_length (the self-play reference)
    repetition_penalty: float = 1.1
    max_tokens: int = 2048
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    """Generate ``spec.n`` continuations of ``prompt`` (raw text, already templated)."""

    prompt: str
    spec: SamplingSpec


@dataclasses.dataclass(frozen=True)
class ScoreRequest:
    """Exact log-probabilities of ``token_ids`` as the first token generated after ``prompt``, and, when
    ``top_n`` > 0, the ``top_n`` most likely tokens (the reference scoring mode reads its top-5). An engine may
    return the top-n even when not asked (it costs the transformers engine nothing)."""

    prompt: str
    token_ids: tuple[int, ...]
    top_n: int = 5


@dataclasses.dataclass(frozen=True)
class GenerateResult:
    texts: tuple[str, ...]  # one per sample, stop strings removed
    n_prompt_tokens: int = 0
    n_generated_tokens: int = 0
    error: str = ""  # non-empty when this one request could not run (e.g. prompt longer than max_model_len)


# The prompt-length check's error (``runners.engines.common.too_long``) is the one error a request meets again
# under the same engine identity (the model's tokenizer and max_model_len are part of it): the cache keeps it.
TOO_LONG_MARK = "exceeds max_model_len="


def is_deterministic_error(error: str) -> bool:
    return TOO_LONG_MARK in error


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    logprobs: dict[int, float]  # token id -> exact log p(token | prompt), from the full distribution
    top_logprobs: dict[int, float] = dataclasses.field(default_factory=dict)  # top-5, for the reference mode
    error: str = ""  # non-empty when this one request could not run (e.g. prompt longer than max_model_len)


def request_seed(record_id: str, candidate_index: int, run_seed: int) -> int:
    """The sampling seed of one candidate: a stable hash of (record id, candidate index, run seed).

    Stable across processes and Python versions (no ``hash()``), and below 2**31 so every engine accepts it.
    """
    key = f"{int(run_seed)}\x1f{record_id}\x1f{int(candidate_index)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % (2**31 - 1)


OnResult = Callable[[int, "GenerateResult"], None]


class EngineFailure(RuntimeError):
    """The engine itself failed (it did not start, a request raised inside it, or its process exited), as opposed to
    one request's error, which its result carries. The message is one line, ending with the engine's own error;
    ``remote_traceback`` is the engine's traceback (from its process), which a failed job keeps in ``failed.json``
    instead of printing it again at every level."""

    def __init__(self, message: str, remote_traceback: str | None = None):
        super().__init__(message)
        self.remote_traceback = remote_traceback

    def __reduce__(self):  # pickled to and from workers with its traceback
        return (type(self), (str(self), self.remote_traceback))


def last_error_line(formatted_traceback: str) -> str:
    """The error a formatted traceback ends with (``ValueError: ...``, several lines when its message has them): the
    lines after its last frame (``  File ...`` and the frame's indented source lines)."""
    lines = formatted_traceback.rstrip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if not frames:
        return formatted_traceback.strip()
    start = frames[-1] + 1
    while start < len(lines) and lines[start][:1].isspace():
        start += 1
    return "\n".join(lines[start:]).strip() or formatted_traceback.strip()


class Engine(Protocol):
    """What every engine implements. ``tokenizer`` is the HF tokenizer of the model."""

    model_id: str

    @property
    def tokenizer(self): ...

    def generate(self, prompts: Sequence[str], specs: Sequence[SamplingSpec],
                 on_result: OnResult | None = None) -> list[GenerateResult]:
        """One result per prompt, in order; ``on_result(i, result)`` is also called as each one completes (in
        completion order), so a caller can keep finished work before the whole batch is done."""
        ...

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[Sequence[int]],
                            top_ns: Sequence[int] | None = None) -> list[ScoreResult]: ...

    def close(self) -> None: ...
