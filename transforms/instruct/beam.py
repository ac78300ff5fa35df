"""Beam glue of the Inverse-Instruct method: ``Summarize``, ``SelfEvaluate`` and ``Select``.

* ``Summarize``: k candidate instructions per CODE_SNIPPET, through the shared engine. Requests go through
  ``RunInference`` keyed by candidate id and results are joined back by that key (``runners.inference``).
  Post-filters (``transforms.instruct.postfilters``) reject candidates with a reason. For accounting, every
  snippet makes ``num_candidates`` outputs: candidates + rejected.
* ``SelfEvaluate``: the model judges each (candidate instruction, code) pair; score = p(Yes)/(p(Yes)+p(No)).
* ``Select``: per snippet, the best-scored candidate (top-1, ties to the lowest candidate index). Snippets and
  scored pairs are joined by snippet id, so every snippet ends in exactly one place: selected, or rejected
  with ``no_candidates`` or ``below_min_score``. ``--top-k`` keeps more winners; the paper found that harmful.

Pass the same engine handler (``runners.model_handler.EngineModelHandler`` or its ``.keyed()`` form) to
Summarize and SelfEvaluate so both stages share one engine. Each returns a ``transforms.stage.StageOutput``.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator

import apache_beam as beam

from runners.inference import engine_failure, infer_and_join
from schemas.records import RecordKind
from transforms.instruct import postfilters, scoring, selection
from transforms.instruct.options import SCORING_MODES, TOP_K_WARNING, FilterConfig, SamplingConfig, SelectionConfig
from transforms.instruct.prompts import PromptPreset, TokenizerSource, resolve_preset, stored_instruction
from transforms.instruct.requests import (
    SELF_EVALUATE_STAGE,
    SUMMARIZE_STAGE,
    judge_tokens_for,
    plan_candidates,
    plan_judgement,
    scored_pair,
)
from transforms.stage import REJECTED, Reject, StageBooks, StageFn, StageOutput, flatten

SELECT_STAGE = "select"
SCORING_ERROR = "scoring_error"
LOG = logging.getLogger(__name__)


def _load_tokenizer(source: TokenizerSource | None, why: str):
    if source is None:
        raise ValueError(f"{why}: pass tokenizer_source")
    return source.load()


# ------------------------------------------------------------------------------------------------- Summarize


class _PlanCandidatesFn(beam.DoFn):
    def __init__(self, preset: PromptPreset, sampling: SamplingConfig, model_id: str,
                 tokenizer_source: TokenizerSource | None, prompt_code: str = "cleaned"):
        self._preset = preset
        self._prompt_code = prompt_code
        self._sampling = sampling
        self._model_id = model_id
        self._tokenizer_source = tokenizer_source
        self._tokenizer = None
        self.books = StageBooks(SUMMARIZE_STAGE, RecordKind.CODE_SNIPPET)

    def setup(self):
        if self._preset.style == "chat":
            self._tokenizer = _load_tokenizer(self._tokenizer_source,
                                              f"preset {self._preset.name!r} renders a chat template")

    def process(self, snippet: dict[str, Any]) -> Iterator[Any]:
        self.books.took()
        for candidate, request in plan_candidates(snippet, self._preset, self._sampling, self._model_id,
                                                  self._tokenizer, self._prompt_code):
            self.books.count("requests.generate")
            yield beam.pvalue.TaggedOutput("candidates", (candidate["id"], candidate))
            yield beam.pvalue.TaggedOutput("requests", (candidate["id"], request))


class _AttachGenerationFn(StageFn):
    """Joins a candidate with its generated text and applies the per-candidate post-filters."""

    stage = SUMMARIZE_STAGE
    record_kind = RecordKind.CANDIDATE_INSTRUCTION

    def __init__(self, filters: FilterConfig):
        super().__init__()
        self._filters = filters

    def process(self, joined: tuple[str, dict[str, list]]) -> Iterator[Any]:
        # Counted per candidate: "in" of this stage is the snippets (see _PlanCandidatesFn).
        _candidate_id, groups = joined
        candidates, results = list(groups["record"]), list(groups["result"])
        failure = engine_failure(results)
        for candidate in candidates:  # exactly one unless an upstream stage duplicated a snippet
            if failure:
                yield self.books.reject(candidate, *failure)
                continue
            generated = results[0].texts[0] if results[0].texts else ""
            instruction = stored_instruction(candidate["prefix"], generated)
            candidate = {**candidate, "instruction": instruction}
            verdict = postfilters.check_candidate(generated, instruction, candidate["code"], self._filters)
            if verdict:
                yield self.books.reject(candidate, verdict.reason, verdict.detail)
                continue
            yield candidate["snippet_id"], candidate


class _DropDuplicateCandidatesFn(StageFn):
    """Among the surviving candidates of one snippet, keeps the lowest index of each distinct instruction
    (every candidate when the post-filters are off)."""

    stage = SUMMARIZE_STAGE
    record_kind = RecordKind.CANDIDATE_INSTRUCTION

    def __init__(self, enabled: bool = True):
        super().__init__()
        self._enabled = enabled

    def process(self, grouped: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
        _snippet_id, candidates = grouped
        candidates = sorted(candidates, key=lambda c: (c["candidate_index"], c["id"]))
        duplicates = postfilters.duplicate_of(
            (c["candidate_index"], c["id"], c["instruction"]) for c in candidates) if self._enabled else {}
        for candidate in candidates:
            kept = duplicates.get(candidate["id"])
            if kept is not None:
                yield self.books.reject(candidate, postfilters.DUPLICATE_CANDIDATE,
                                        f"same instruction as candidate {kept}")
            else:
                yield self.books.kept(candidate)


class Summarize(beam.PTransform):
    """CODE_SNIPPET dicts -> ``StageOutput(main=CANDIDATE_INSTRUCTION dicts, rejected=dead letters)``.

    ``model_id`` is recorded on every candidate; ``tokenizer_source`` is needed by chat presets. Candidates
    carry two keys the judge prompt needs, ``fence_lang`` and ``source_id``.
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
        prompt_code: str = "cleaned",
    ):
        super().__init__()
        self._handler = model_handler
        self._prompt_code = prompt_code
        self._model_id = model_id
        self._preset = resolve_preset(preset)
        self._sampling = sampling
        self._filters = filters
        self._tokenizer_source = tokenizer_source

    def expand(self, snippets):  # -> StageOutput (see there why unannotated)
        planned = snippets | "PlanCandidates" >> beam.ParDo(
            _PlanCandidatesFn(self._preset, self._sampling, self._model_id, self._tokenizer_source, self._prompt_code)
        ).with_outputs("candidates", "requests")
        attached = _AttachGenerationFn(self._filters).apply(
            infer_and_join(planned.requests, planned.candidates, self._handler, "Generate"), "AttachAndFilter")
        deduped = _DropDuplicateCandidatesFn(self._filters.enabled).apply(
            attached.main | "GroupBySnippet" >> beam.GroupByKey(), "DropDuplicates")
        return StageOutput(deduped.main, flatten((attached.rejected, deduped.rejected), "AllRejected"))


# --------------------------------------------------------------------------------------------- SelfEvaluate


class _PlanJudgementsFn(beam.DoFn):
    def __init__(self, preset: PromptPreset, tokenizer_source: TokenizerSource | None,
                 tokens: scoring.JudgeTokens | None, mode: str = "exact"):
        self._preset = preset
        self._mode = mode
        self._tokenizer_source = tokenizer_source
        self._tokens = tokens
        self._tokenizer = None
        self.books = StageBooks(SELF_EVALUATE_STAGE, RecordKind.CANDIDATE_INSTRUCTION)

    def setup(self):
        if self._preset.style == "chat" or self._tokens is None:
            self._tokenizer = _load_tokenizer(
                self._tokenizer_source, "SelfEvaluate needs a tokenizer (for the Yes/No token ids or a chat template)")
        if self._tokens is None:
            self._tokens = judge_tokens_for(self._preset, self._tokenizer)

    def process(self, candidate: dict[str, Any]) -> Iterator[Any]:
        request = plan_judgement(candidate, self._preset, self._tokens, self._tokenizer, self._mode)
        self.books.count("requests.score")
        # The token sets travel with the candidate, so the scoring step reads exactly what was requested.
        yield beam.pvalue.TaggedOutput("candidates", (candidate["id"], (candidate, self._tokens)))
        yield beam.pvalue.TaggedOutput("requests", (candidate["id"], request))


class _ScoreFn(StageFn):
    stage = SELF_EVALUATE_STAGE
    record_kind = RecordKind.CANDIDATE_INSTRUCTION

    def __init__(self, mode: str):
        super().__init__()
        self._mode = mode

    def process(self, joined) -> Iterator[Any]:
        _candidate_id, groups = joined
        results = list(groups["result"])
        failure = engine_failure(results)
        for candidate, tokens in groups["record"]:
            self.books.took()
            if failure:
                yield self.books.reject(candidate, *failure)
                continue
            try:
                pair = scored_pair(candidate, results[0], tokens, self._mode)
            except (KeyError, ValueError) as exc:  # an engine result that breaks the contract: keep it visible
                yield self.books.reject(candidate, SCORING_ERROR, f"{type(exc).__name__}: {exc}")
                continue
            yield self.books.kept(pair)


class SelfEvaluate(beam.PTransform):
    """CANDIDATE_INSTRUCTION dicts -> ``StageOutput(main=SCORED_PAIR dicts, rejected=dead letters)``.

    The Yes/No token ids come from ``judge_tokens`` when given, else from the tokenizer at ``tokenizer_source``
    (loaded once per worker process); chat presets need ``tokenizer_source`` in any case.
    """

    def __init__(
        self,
        model_handler,
        *,
        preset: PromptPreset | str = "paper",
        scoring_mode: str = "exact",
        tokenizer_source: TokenizerSource | None = None,
        judge_tokens: scoring.JudgeTokens | None = None,
    ):
        super().__init__()
        if scoring_mode not in SCORING_MODES:
            raise ValueError(f"scoring_mode must be one of {SCORING_MODES}, got {scoring_mode!r}")
        if tokenizer_source is None and judge_tokens is None:
            raise ValueError("SelfEvaluate needs tokenizer_source or judge_tokens")
        self._handler = model_handler
        self._preset = resolve_preset(preset)
        self._mode = scoring_mode
        self._tokenizer_source = tokenizer_source
        self._tokens = judge_tokens

    def expand(self, candidates):  # -> StageOutput (see there why unannotated)
        planned = candidates | "PlanJudgements" >> beam.ParDo(
            _PlanJudgementsFn(self._preset, self._tokenizer_source, self._tokens, self._mode)
        ).with_outputs("candidates", "requests")
        return _ScoreFn(self._mode).apply(
            infer_and_join(planned.requests, planned.candidates, self._handler, "Judge"), "Score")


# --------------------------------------------------------------------------------------------------- Select


class _SelectFn(StageFn):
    stage = SELECT_STAGE
    record_kind = RecordKind.CODE_SNIPPET
    side_outputs = ("not_selected",)

    def __init__(self, config: SelectionConfig):
        super().__init__()
        self._config = config

    def process_record(self, joined) -> Iterator[Any]:
        snippet_id, groups = joined
        snippets = list(groups["snippets"])
        scored = list(groups["scored"])
        if not snippets:
            # Scored pairs whose snippet is not in the snippets input: still selected, but counted.
            self.books.count("orphan_snippet_ids")
        # Two snippets with one id (the same row read twice) would share one winner: the extra ones are dead letters.
        for extra in snippets[1:]:
            yield Reject("duplicate_snippet_id", f"another snippet has id {snippet_id}", extra)
        outcome = selection.select(scored, self._config)
        if outcome.reject_reason:
            yield Reject(outcome.reject_reason, outcome.detail, snippets[0] if snippets else {"id": snippet_id})
        for winner in outcome.selected:
            yield {**winner, "stage": SELECT_STAGE}
        for other in outcome.not_selected:
            yield beam.pvalue.TaggedOutput("not_selected", other)


class Select(beam.PTransform):
    """``{"snippets": CODE_SNIPPET dicts, "scored": SCORED_PAIR dicts}`` -> ``StageOutput``: ``main`` holds the
    winners (SCORED_PAIR with ``all_scores``/``all_candidate_indices`` and ``rank``), ``rejected`` the snippets
    with no winner, and ``side["not_selected"]`` the other scored candidates (not errors)."""

    def __init__(self, config: SelectionConfig = SelectionConfig()):
        super().__init__()
        self._config = config
        if config.top_k > 1:
            LOG.warning("top_k=%d: %s", config.top_k, TOP_K_WARNING)

    def expand(self, inputs: dict[str, Any]):  # -> StageOutput (see there why unannotated)
        snippets_by_id = inputs["snippets"] | "KeySnippets" >> beam.Map(lambda s: (s["id"], s))
        scored_by_snippet = inputs["scored"] | "KeyScored" >> beam.Map(lambda p: (p["snippet_id"], p))
        joined = {"snippets": snippets_by_id, "scored": scored_by_snippet} | "JoinBySnippet" >> beam.CoGroupByKey()
        return _SelectFn(self._config).apply(joined, "Select")


__all__ = ["REJECTED", "SCORING_ERROR", "SELECT_STAGE", "Select", "SelfEvaluate", "Summarize"]
