"""Summarize (code to instruction): k candidate instructions per CODE_SNIPPET, through the shared engine.

Each candidate is its own generation request (n=1) with its own seed and prefix, both derived from
(snippet id, candidate index, run seed), as the reference drew a prefix per candidate. Requests go through
``RunInference`` with the engine's ``ModelHandler`` keyed by candidate id; results are joined back to their
candidates by that key (never by position). Post-filters (``transforms.postfilters``) send candidates to the
``rejected`` output with a reason.

Output: ``{"candidates": CANDIDATE_INSTRUCTION dicts, "rejected": REJECTED_RECORD dicts}``. Candidates carry two
keys beyond the schema, ``fence_lang`` and ``source_id`` (the judge prompt needs the fence tag).
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference

from runners.api import GenerateRequest, SamplingSpec
from schemas.records import RecordKind, content_id, rejected
from transforms import postfilters
from transforms.method_options import FilterConfig, SamplingConfig
from transforms.prompts import PromptPreset, TokenizerSource, candidate_seed, draw_prefix, resolve_preset, stored_instruction, summarize_prompt

NAMESPACE = "inverse_instruct"
STAGE = "summarize"
NO_RESULT = "no_result"  # the engine returned nothing for a request (should not happen; never dropped silently)
ENGINE_ERROR = "engine_error"  # the engine could not run this one request (e.g. prompt longer than max_model_len)


def summarize_config_hash(model_id: str, preset: PromptPreset, sampling: SamplingConfig) -> str:
    """What makes one candidate: model, prompts and sampling. ``k`` is not part of it, so candidate i of a run
    with k=4 is the same candidate (same id, seed and prefix) as candidate i of a run with k=10."""
    return content_id(
        "summarize", model_id, preset.hash, sampling.temperature, sampling.top_p, sampling.repetition_penalty,
        sampling.max_new_tokens, sampling.run_seed,
    )


def plan_candidates(
    snippet: dict[str, Any], preset: PromptPreset, sampling: SamplingConfig, model_id: str, tokenizer=None
) -> list[tuple[dict[str, Any], GenerateRequest]]:
    """The k candidate records of one snippet (without instruction yet) and their generation requests."""
    config_hash = summarize_config_hash(model_id, preset, sampling)
    planned = []
    for index in range(sampling.num_candidates):
        seed = candidate_seed(snippet["id"], index, sampling.run_seed)
        prefix = draw_prefix(preset, snippet.get("fence_lang"), seed)
        prompt = summarize_prompt(preset, snippet["code"], snippet.get("fence_lang"), prefix, tokenizer)
        candidate = {
            "id": content_id("candidate_instruction", snippet["id"], index, config_hash),
            "snippet_id": snippet["id"],
            "candidate_index": index,
            "prefix": prefix,
            "instruction": None,
            "code": snippet["code"],
            "language": snippet.get("language"),
            "fence_lang": snippet.get("fence_lang") or "",
            "source_id": snippet.get("source_id"),
            "original_instruction": snippet.get("original_instruction"),
            "model": model_id,
            "preset": preset.name,
            "preset_hash": preset.hash,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "repetition_penalty": sampling.repetition_penalty,
            "max_tokens": sampling.max_new_tokens,
            "seed": seed,
            "source_uri": snippet.get("source_uri", ""),
            "source_row": snippet.get("source_row", -1),
            "stage": STAGE,
        }
        spec = SamplingSpec(
            n=1,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            repetition_penalty=sampling.repetition_penalty,
            max_tokens=sampling.max_new_tokens,
            stop=tuple(preset.stop),
            seed=seed,
        )
        planned.append((candidate, GenerateRequest(prompt=prompt, spec=spec)))
    return planned


def keyed_run_inference(model_handler) -> RunInference:
    """RunInference over ``(candidate id, request)`` pairs on the engine's shared model.

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


class _PlanCandidatesFn(beam.DoFn):
    def __init__(self, preset: PromptPreset, sampling: SamplingConfig, model_id: str, tokenizer_source: TokenizerSource | None):
        self._preset = preset
        self._sampling = sampling
        self._model_id = model_id
        self._tokenizer_source = tokenizer_source
        self._tokenizer = None
        self._planned = Metrics.counter(NAMESPACE, f"{STAGE}.requests")

    def setup(self):
        if self._preset.style == "chat":
            if self._tokenizer_source is None:
                raise ValueError(f"preset {self._preset.name!r} renders a chat template: pass tokenizer_source")
            self._tokenizer = self._tokenizer_source.load()

    def process(self, snippet: dict[str, Any]) -> Iterator[Any]:
        for candidate, request in plan_candidates(snippet, self._preset, self._sampling, self._model_id, self._tokenizer):
            self._planned.inc()
            yield beam.pvalue.TaggedOutput("candidates", (candidate["id"], candidate))
            yield beam.pvalue.TaggedOutput("requests", (candidate["id"], request))


def _counter(cache: dict, name: str):
    if name not in cache:
        cache[name] = Metrics.counter(NAMESPACE, name)
    return cache[name]


class _AttachGenerationFn(beam.DoFn):
    """Joins a candidate with its generated text and applies the per-candidate post-filters."""

    def __init__(self, filters: FilterConfig):
        self._filters = filters
        self._counters: dict = {}

    def _reject(self, candidate: dict[str, Any], reason: str, detail: str):
        _counter(self._counters, f"{STAGE}.rejected.{reason}").inc()
        return beam.pvalue.TaggedOutput(
            "rejected", rejected(candidate, record_kind=RecordKind.CANDIDATE_INSTRUCTION, reason=reason, stage=STAGE, detail=detail)
        )

    def process(self, joined: tuple[str, dict[str, list]]) -> Iterator[Any]:
        candidate_id, groups = joined
        candidates, results = list(groups["record"]), list(groups["result"])
        failure = engine_failure(results)
        for candidate in candidates:  # exactly one unless an upstream stage duplicated a snippet
            if failure:
                yield self._reject(candidate, *failure)
                continue
            generated = results[0].texts[0] if results[0].texts else ""
            instruction = stored_instruction(candidate["prefix"], generated)
            candidate = {**candidate, "instruction": instruction}
            verdict = postfilters.check_candidate(generated, instruction, candidate["code"], self._filters)
            if verdict:
                yield self._reject(candidate, verdict.reason, verdict.detail)
                continue
            yield candidate["snippet_id"], candidate


class _DropDuplicateCandidatesFn(beam.DoFn):
    """Among the surviving candidates of one snippet, keeps the lowest index of each distinct instruction."""

    def __init__(self):
        self._counters: dict = {}

    def process(self, grouped: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
        _snippet_id, candidates = grouped
        candidates = sorted(candidates, key=lambda c: (c["candidate_index"], c["id"]))
        duplicates = postfilters.duplicate_of((c["candidate_index"], c["instruction"]) for c in candidates)
        for candidate in candidates:
            kept = duplicates.get(candidate["candidate_index"])
            if kept is not None:
                _counter(self._counters, f"{STAGE}.rejected.{postfilters.DUPLICATE_CANDIDATE}").inc()
                yield beam.pvalue.TaggedOutput(
                    "rejected",
                    rejected(candidate, record_kind=RecordKind.CANDIDATE_INSTRUCTION, reason=postfilters.DUPLICATE_CANDIDATE,
                             stage=STAGE, detail=f"same instruction as candidate {kept}"),
                )
            else:
                _counter(self._counters, f"{STAGE}.out").inc()
                yield candidate


class Summarize(beam.PTransform):
    """CODE_SNIPPET dicts -> ``{"candidates": CANDIDATE_INSTRUCTION dicts, "rejected": REJECTED_RECORD dicts}``.

    ``model_handler`` is the engine's ``runners.model_handler.EngineModelHandler`` (or its ``.keyed()`` form);
    pass the same handler to SelfEvaluate so both stages share one engine. ``model_id`` is recorded on every candidate. ``tokenizer_source`` is needed by chat presets.
    For accounting, every snippet makes ``num_candidates`` outputs: candidates + rejected.
    """

    def __init__(
        self,
        model_handler,
        *,
        model_id: str,
        preset: PromptPreset | str = "paper",
        sampling: SamplingConfig = SamplingConfig(),
        filters: FilterConfig = FilterConfig(),
        tokenizer_source: TokenizerSource | None = None,
    ):
        super().__init__()
        self._handler = model_handler
        self._model_id = model_id
        self._preset = resolve_preset(preset)
        self._sampling = sampling
        self._filters = filters
        self._tokenizer_source = tokenizer_source

    def expand(self, snippets):
        planned = snippets | "PlanCandidates" >> beam.ParDo(
            _PlanCandidatesFn(self._preset, self._sampling, self._model_id, self._tokenizer_source)
        ).with_outputs("candidates", "requests")
        attached = (
            infer_and_join(planned.requests, planned.candidates, self._handler, "Generate")
            | "AttachAndFilter" >> beam.ParDo(_AttachGenerationFn(self._filters)).with_outputs("rejected", main="kept")
        )
        deduped = (
            attached.kept
            | "GroupBySnippet" >> beam.GroupByKey()
            | "DropDuplicates" >> beam.ParDo(_DropDuplicateCandidatesFn()).with_outputs("rejected", main="candidates")
        )
        rejected_all = (attached.rejected, deduped.rejected) | "AllRejected" >> beam.Flatten()
        return {"candidates": deduped.candidates, "rejected": rejected_all}
