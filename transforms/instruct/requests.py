"""What the method stages ask the engine, and what they make of the answer. Pure.

* Summarize: the k candidate records of a snippet and their generation requests. Each candidate is its own
  request (n=1) with its own seed and prefix, both derived from (snippet id, candidate index, run seed), as the
  reference drew a prefix per candidate.
* Self-evaluate: one ScoreRequest per candidate for the exact next-token log-probs of the judge's answer-token
  ids (both modes' ids, so the raw log-probs allow comparing ``exact`` and ``reference``), and the SCORED_PAIR
  built from the result (the math is in ``transforms.instruct.scoring``).
"""
from __future__ import annotations

from typing import Any

from runners.api import GenerateRequest, SamplingSpec, ScoreRequest
from schemas.records import content_id
from transforms.instruct import scoring
from transforms.instruct.options import SamplingConfig
from transforms.instruct.prompts import (
    PromptPreset,
    candidate_seed,
    draw_prefix,
    judge_prompt,
    summarize_prompt,
)

SUMMARIZE_STAGE = "summarize"
SELF_EVALUATE_STAGE = "self_evaluate"


def summarize_config_hash(model_id: str, preset: PromptPreset, sampling: SamplingConfig,
                          prompt_code: str = "cleaned") -> str:
    """What makes one candidate: model, prompts and sampling. ``k`` is not part of it, so candidate i of a run
    with k=4 is the same candidate (same id, seed and prefix) as candidate i of a run with k=10."""
    parts = ["summarize", model_id, preset.hash, sampling.temperature, sampling.top_p, sampling.repetition_penalty,
             sampling.max_new_tokens, sampling.run_seed]
    if prompt_code != "cleaned":  # the default keeps the ids it always had
        parts.append(prompt_code)
    return content_id(*parts)


def prompt_block(record: dict[str, Any], prompt_code: str) -> str | None:
    """The ``{code}`` text of the prompts when it is not the re-fenced cleaned code: the reference's slice."""
    if prompt_code == "cleaned":
        return None
    block = record.get("reference_snippet")
    if not block:
        raise ValueError("--prompt-code reference needs the reference's slice of the response: run with "
                         "--extraction-policy paper")
    return block


def plan_candidates(
    snippet: dict[str, Any], preset: PromptPreset, sampling: SamplingConfig, model_id: str, tokenizer=None,
    prompt_code: str = "cleaned",
) -> list[tuple[dict[str, Any], GenerateRequest]]:
    """The k candidate records of one snippet (without instruction yet) and their generation requests."""
    config_hash = summarize_config_hash(model_id, preset, sampling, prompt_code)
    block = prompt_block(snippet, prompt_code)
    planned = []
    for index in range(sampling.num_candidates):
        seed = candidate_seed(snippet["id"], index, sampling.run_seed)
        prefix = draw_prefix(preset, snippet.get("fence_lang"), seed)
        prompt = summarize_prompt(preset, snippet["code"], snippet.get("fence_lang"), prefix, tokenizer, block)
        candidate = {
            "id": content_id("candidate_instruction", snippet["id"], index, config_hash),
            "snippet_id": snippet["id"],
            "candidate_index": index,
            "prefix": prefix,
            "instruction": None,
            "code": snippet["code"],
            "language": snippet.get("language"),
            "fence_lang": snippet.get("fence_lang") or "",
            "reference_snippet": block,
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
            "stage": SUMMARIZE_STAGE,
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


def judge_tokens_for(preset: PromptPreset, tokenizer) -> scoring.JudgeTokens:
    """The Yes/No ids of ``preset``'s variants, read in the context of a rendered judge prompt."""
    context = judge_prompt(preset, "An instruction.", "x = 1", "", tokenizer)
    return scoring.judge_tokens(tokenizer, preset.yes_variants, preset.no_variants, context)


def plan_judgement(candidate: dict[str, Any], preset: PromptPreset, tokens: scoring.JudgeTokens, tokenizer=None,
                   mode: str = "exact") -> ScoreRequest:
    """The judge request of a candidate; its ``{code}`` is the block its summarize prompt showed. The exact log-probs
    of every judge id are always asked; the top-5 only in the reference mode (an engine may add it for free)."""
    prompt = judge_prompt(preset, candidate["instruction"], candidate["code"], candidate.get("fence_lang"), tokenizer,
                          candidate.get("reference_snippet"))
    return ScoreRequest(prompt=prompt, token_ids=tokens.request_ids(),
                        top_n=scoring.REFERENCE_TOP_N if mode == "reference" else 0)


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
        "stage": SELF_EVALUATE_STAGE,
    }
