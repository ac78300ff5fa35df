"""The keyed join of every inference stage: requests keyed by record id go through ``RunInference`` on the shared
engine, and each result is joined back to its record by that id (``CoGroupByKey``), never by position.

``engine_failure`` is the one check of a joined result; ``to_samples`` turns one joined generation request with
``n`` samples into ``n`` sample records (what evaluation and self-play do with their results).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference

NO_RESULT = "no_result"  # the engine returned nothing for a request (should not happen; never dropped silently)
ENGINE_ERROR = "engine_error"  # the engine could not run this one request (e.g. prompt longer than max_model_len)


def keyed_run_inference(model_handler) -> RunInference:
    """RunInference over ``(record id, request)`` pairs on the engine's shared model.

    Takes the engine's ``EngineModelHandler`` (keyed here) or an already keyed handler. The RunInference
    ``model_identifier`` is the engine's, so every stage shares one model per machine.
    """
    from runners.model_handler import model_identifier_of

    keyed = model_handler if isinstance(model_handler, KeyedModelHandler) else model_handler.keyed()
    return RunInference(keyed, model_identifier=model_identifier_of(keyed))


def keyed_inference(element: Any) -> tuple[Any, Any]:
    """``(key, inference)`` from a RunInference output, whether the handler returns ``(key, PredictionResult)``
    (Beam's KeyedModelHandler convention) or a PredictionResult whose example is the ``(key, request)`` pair."""
    if isinstance(element, PredictionResult):
        key, _request = element.example
        return key, element.inference
    key, prediction = element
    return key, prediction.inference if isinstance(prediction, PredictionResult) else prediction


def infer_and_join(requests, records, model_handler, step: str):
    """Run ``requests`` (``(id, request)``) through the shared engine and join each result to its record in
    ``records`` (``(id, record)``) by that id: ``(id, {"record": [...], "result": [...]})``."""
    results = (
        requests
        | step >> keyed_run_inference(model_handler)
        | "KeyResults" >> beam.Map(keyed_inference)
    )
    return {"record": records, "result": results} | "JoinById" >> beam.CoGroupByKey()


def engine_failure(results: Sequence[Any]) -> tuple[str, str] | None:
    """(reason, detail) when a join holds no usable engine result (``NO_RESULT`` or ``ENGINE_ERROR``), else None."""
    if not results:
        return NO_RESULT, "the engine returned no result for this request"
    if getattr(results[0], "error", ""):
        return ENGINE_ERROR, results[0].error
    return None


def to_samples(element: tuple[Any, Mapping[str, Sequence[Any]]], n: int,
               sample_base: Callable[[Any, Any, int], dict[str, Any]], text_key: str = "text"
               ) -> Iterator[dict[str, Any]]:
    """One joined generation request -> ``n`` sample records, ``sample_base(key, record, i)`` plus either
    ``text_key`` (the i-th generated text) or ``engine_error`` (why there is no i-th text). Every sample asked
    for comes out, so an engine failure is accounted for like any other outcome."""
    key, joined = element
    (record,) = joined["record"]
    results = joined["result"]
    failure = engine_failure(results)
    texts: list[str] = [] if failure else list(results[0].texts)
    for i in range(n):
        sample = sample_base(key, record, i)
        if i < len(texts):
            sample[text_key] = texts[i]
        else:
            sample["engine_error"] = failure[1] if failure else "fewer samples than asked"
        yield sample
