"""The inference cache keeps each generation as it finishes, so a batch cut short loses only what was in flight."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

import pytest

from runners.api import GenerateRequest, GenerateResult, SamplingSpec
from runners.cache import CachingModelHandler, request_key
from runners.engines.config import EngineConfig
from runners.engines.fake_engine import FakeEngine

IDENTITY = "test-engine"


def requests(n: int) -> list[GenerateRequest]:
    return [GenerateRequest(prompt=f"Describe snippet {i}:", spec=SamplingSpec(n=2, seed=i)) for i in range(n)]


class _Prediction:
    def __init__(self, inference):
        self.inference = inference


class ReportingHandler:
    """An engine handler that answers with the fake engine, reporting each result as it finishes, and can be
    killed after ``die_after`` results (as a SIGKILL would stop a batch half-way)."""

    def __init__(self, die_after: int | None = None, reporting: bool = True):
        self.engine = FakeEngine(EngineConfig(engine="fake"))
        self.die_after = die_after
        self.calls: list[list[str]] = []
        if not reporting:
            self.run_inference_reporting = None

    def run_inference(self, batch, model, inference_args=None):
        self.calls.append([r.prompt for r in batch])
        return [_Prediction(r) for r in self.engine.generate([r.prompt for r in batch], [r.spec for r in batch])]

    def run_inference_reporting(self, batch, model, inference_args=None, sinks=None):
        self.calls.append([r.prompt for r in batch])
        # The sink crosses into the engine's process pickled, as with Beam's MultiProcessShared.
        sink = pickle.loads(pickle.dumps(sinks.for_requests(list(range(len(batch))))))

        def report(i, result):
            if self.die_after is not None and i >= self.die_after:
                raise KeyboardInterrupt("killed")
            sink(i, result)

        results = self.engine.generate([r.prompt for r in batch], [r.spec for r in batch], on_result=report)
        return [_Prediction(r) for r in results]


def cached_keys(root: Path) -> list[str]:
    parts = sorted(root.glob("part-*.jsonl"))
    return [json.loads(line)["key"] for part in parts for line in part.read_text().splitlines() if line.strip()]


def test_finished_generations_are_cached_before_the_batch_ends(tmp_path):
    batch = requests(6)
    handler = CachingModelHandler(ReportingHandler(die_after=4), str(tmp_path / "cache"), IDENTITY, flush_seconds=0)
    with pytest.raises(KeyboardInterrupt):
        handler.run_inference(batch, model=None)
    kept = cached_keys(tmp_path / "cache")
    assert sorted(kept) == sorted(request_key(IDENTITY, r) for r in batch[:4])

    # The re-run sends only the requests that were not finished, and answers all six.
    base = ReportingHandler()
    resumed = CachingModelHandler(base, str(tmp_path / "cache"), IDENTITY, flush_seconds=0)
    results = list(resumed.run_inference(batch, model=None))
    assert base.calls == [[r.prompt for r in batch[4:]]]
    fresh = FakeEngine(EngineConfig(engine="fake")).generate([r.prompt for r in batch], [r.spec for r in batch])
    assert [p.inference for p in results] == fresh
    assert all(isinstance(p.inference, GenerateResult) for p in results)


def test_a_whole_batch_is_one_part_file_when_it_finishes_within_the_flush_interval(tmp_path):
    batch = requests(5)
    handler = CachingModelHandler(ReportingHandler(), str(tmp_path / "cache"), IDENTITY, flush_seconds=3600)
    handler.run_inference(batch, model=None)
    assert len(list((tmp_path / "cache").glob("part-*.jsonl"))) == 1
    assert sorted(cached_keys(tmp_path / "cache")) == sorted(request_key(IDENTITY, r) for r in batch)


def test_an_engine_handler_without_reporting_is_cached_per_batch(tmp_path):
    batch = requests(3)
    base = ReportingHandler(reporting=False)
    handler = CachingModelHandler(base, str(tmp_path / "cache"), IDENTITY, flush_seconds=0)
    first = [p.inference for p in handler.run_inference(batch, model=None)]
    again = CachingModelHandler(ReportingHandler(), str(tmp_path / "cache"), IDENTITY)
    assert [p.inference for p in again.run_inference(batch, model=None)] == first
    assert len(cached_keys(tmp_path / "cache")) == 3


def test_keys_of_requests_without_the_later_sampling_fields_are_unchanged():
    """top_k and ban_eos came after caches existed: a request that leaves them inert keeps the key it had, written
    out here as the old scheme computed it (every other field of the spec, by name)."""
    spec = SamplingSpec(n=3, temperature=0.9, top_p=1.0, repetition_penalty=1.0, max_tokens=200, stop=("\ndef",),
                        seed=7)
    old_spec = {"n": 3, "temperature": 0.9, "top_p": 1.0, "repetition_penalty": 1.0, "max_tokens": 200,
                "stop": ["\ndef"], "seed": 7}
    old = json.dumps({"engine": IDENTITY, "kind": "generate", "prompt": "def f(", "spec": old_spec}, sort_keys=True,
                     ensure_ascii=False)
    assert request_key(IDENTITY, GenerateRequest("def f(", spec)) == hashlib.sha256(old.encode()).hexdigest()
    keys = {request_key(IDENTITY, GenerateRequest("def f(", s)) for s in (
        spec, dataclasses.replace(spec, top_k=50), dataclasses.replace(spec, ban_eos=True),
        dataclasses.replace(spec, top_k=50, ban_eos=True))}
    assert len(keys) == 4


def test_a_prompt_too_long_for_the_context_is_cached_with_its_error_and_other_errors_are_not(tmp_path):
    """A re-run must not start the engine only to hear again that a prompt does not fit (a probe: 67 s of engine
    start for two such requests); an error that may not recur (the engine failed) is asked again."""
    from runners.api import ScoreResult
    from runners.cache import InferenceCache
    from runners.engines.common import too_long

    error = too_long(2533, 512, 1)
    assert error
    InferenceCache(str(tmp_path)).record([
        ("long", GenerateResult(texts=(), n_prompt_tokens=2533, error=error)),
        ("long-score", ScoreResult(logprobs={}, error=error)),
        ("crashed", GenerateResult(texts=(), error="the engine process died")),
        ("fine", GenerateResult(texts=("ok",), n_prompt_tokens=3, n_generated_tokens=1)),
    ])
    found = InferenceCache(str(tmp_path)).lookup(["long", "long-score", "crashed", "fine"])
    assert sorted(found) == ["fine", "long", "long-score"]
    assert found["long"].error == error and found["long"].n_prompt_tokens == 2533
    assert found["long-score"].error == error and found["fine"].error == ""
