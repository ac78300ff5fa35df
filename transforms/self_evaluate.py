"""Self-evaluate: the model judges each (candidate instruction, code) pair; score = p(Yes)/(p(Yes)+p(No)).

One ScoreRequest per candidate asks the engine for the exact next-token log-probs of the judge's answer-token
ids (both modes' ids, so the raw log-probs allow comparing ``exact`` and ``reference``); results are joined back
to their candidates by candidate id. The math is in ``transforms.scoring``.

Output: ``{"scored": SCORED_PAIR dicts, "rejected": REJECTED_RECORD dicts}``.
"""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam

from runners.api import ScoreRequest
from schemas.records import RecordKind, rejected
from transforms import scoring
from transforms.method_options import SCORING_MODES
from transforms.prompts import PromptPreset, TokenizerSource, judge_prompt, resolve_preset
from transforms.summarize import _counter, engine_failure, infer_and_join

STAGE = "self_evaluate"
SCORING_ERROR = "scoring_error"


def judge_tokens_for(preset: PromptPreset, tokenizer) -> scoring.JudgeTokens:
    """The Yes/No ids of ``preset``'s variants, read in the context of a rendered judge prompt."""
    context = judge_prompt(preset, "An instruction.", "x = 1", "", tokenizer)
    return scoring.judge_tokens(tokenizer, preset.yes_variants, preset.no_variants, context)


def plan_judgement(candidate: dict[str, Any], preset: PromptPreset, tokens: scoring.JudgeTokens, tokenizer=None) -> ScoreRequest:
    prompt = judge_prompt(preset, candidate["instruction"], candidate["code"], candidate.get("fence_lang"), tokenizer)
    return ScoreRequest(prompt=prompt, token_ids=tokens.request_ids())


def scored_pair(candidate: dict[str, Any], result, tokens: scoring.JudgeTokens, mode: str) -> dict[str, Any]:
    """The SCORED_PAIR of ``candidate`` from its engine ScoreResult."""
    parts, raw = scoring.score_pair(result.logprobs, result.top_logprobs, tokens, mode)
    return {
        **candidate,
        "score": parts.score,
        "logprob_yes": parts.logprob_yes,
        "logprob_no": parts.logprob_no,
        "scoring_mode": mode,
        "raw_logprobs": raw,
        "stage": STAGE,
    }


class _PlanJudgementsFn(beam.DoFn):
    def __init__(self, preset: PromptPreset, tokenizer_source: TokenizerSource | None, tokens: scoring.JudgeTokens | None):
        self._preset = preset
        self._tokenizer_source = tokenizer_source
        self._tokens = tokens
        self._tokenizer = None

    def setup(self):
        needs_tokenizer = self._preset.style == "chat" or self._tokens is None
        if needs_tokenizer:
            if self._tokenizer_source is None:
                raise ValueError("SelfEvaluate needs tokenizer_source (for the Yes/No token ids or a chat template)")
            self._tokenizer = self._tokenizer_source.load()
        if self._tokens is None:
            self._tokens = judge_tokens_for(self._preset, self._tokenizer)

    def process(self, candidate: dict[str, Any]) -> Iterator[Any]:
        request = plan_judgement(candidate, self._preset, self._tokens, self._tokenizer)
        # The token sets travel with the candidate, so the scoring step reads exactly what was requested.
        yield beam.pvalue.TaggedOutput("candidates", (candidate["id"], (candidate, self._tokens)))
        yield beam.pvalue.TaggedOutput("requests", (candidate["id"], request))


class _ScoreFn(beam.DoFn):
    def __init__(self, mode: str):
        self._mode = mode
        self._counters: dict = {}

    def _reject(self, candidate, reason, detail):
        _counter(self._counters, f"{STAGE}.rejected.{reason}").inc()
        return beam.pvalue.TaggedOutput(
            "rejected", rejected(candidate, record_kind=RecordKind.CANDIDATE_INSTRUCTION, reason=reason, stage=STAGE, detail=detail)
        )

    def process(self, joined) -> Iterator[Any]:
        _candidate_id, groups = joined
        results = list(groups["result"])
        failure = engine_failure(results)
        for candidate, tokens in groups["record"]:
            if failure:
                yield self._reject(candidate, *failure)
                continue
            try:
                pair = scored_pair(candidate, results[0], tokens, self._mode)
            except (KeyError, ValueError) as exc:  # an engine result that breaks the contract: keep it visible
                yield self._reject(candidate, SCORING_ERROR, f"{type(exc).__name__}: {exc}")
                continue
            _counter(self._counters, f"{STAGE}.out").inc()
            yield pair


class SelfEvaluate(beam.PTransform):
    """CANDIDATE_INSTRUCTION dicts -> ``{"scored": SCORED_PAIR dicts, "rejected": REJECTED_RECORD dicts}``.

    ``model_handler``: the same engine handler Summarize used (``EngineModelHandler`` or its ``.keyed()`` form).
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

    def expand(self, candidates):
        planned = candidates | "PlanJudgements" >> beam.ParDo(
            _PlanJudgementsFn(self._preset, self._tokenizer_source, self._tokens)
        ).with_outputs("candidates", "requests")
        scored = (
            infer_and_join(planned.requests, planned.candidates, self._handler, "Judge")
            | "Score" >> beam.ParDo(_ScoreFn(self._mode)).with_outputs("rejected", main="scored")
        )
        return {"scored": scored.scored, "rejected": scored.rejected}
