"""Self-evaluation scores from next-token log-probs (pure math; the SelfEvaluate stage calls it).

The judge answers the question "Is the answer correct? ... begin with Yes or No."; the score of a pair is the
pseudo-probability ``p(Yes) / (p(Yes) + p(No))`` of its first answer token.

``exact`` (the default) reads exact log-probs from the full next-token distribution. Each side is the set of
distinct token ids of the preset's listed variants (``paper``: "Yes"/" Yes" and "No"/" No") that are a single
token - as the variant is tokenized alone and as it is tokenized right after the judge prompt - so both the bare
and the space-led spelling count. ``p(side)`` is the sum of those tokens' probabilities;
``logprob_yes``/``logprob_no`` are the log of those sums. On SmolLM2 the ids are those of "Yes", " Yes", "No"
and " No" (four single tokens; "YES" would be two and cannot count).

``reference`` replays the reference code (InverseCoder, ``get_yes_prob``): it looks at the top-5 log-probs of the
first token only; "Yes" counts with its log-prob if it is among them, else -100; "No" likewise, except that when
"No" is missing the token "As" stands in for it (if present), else -100. Token ids are those of the bare words
("Yes", "No", "As") as the tokenizer encodes them without special tokens (the reference took
``tokenizer(word).input_ids[1]``, the first piece after BOS). When both sides are missing the score is 0.5.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Mapping, NamedTuple, Sequence

REFERENCE_YES_TOKENS = ("Yes",)
REFERENCE_NO_TOKENS = ("No", "As")  # in fallback order: "As" only when "No" is not in the top-5
REFERENCE_MISSING_LOGPROB = -100.0
REFERENCE_TOP_N = 5


class ScoreParts(NamedTuple):
    score: float
    logprob_yes: float
    logprob_no: float


@dataclasses.dataclass(frozen=True)
class JudgeTokens:
    """Token ids the judge's first answer token is read at (computed once from the model's tokenizer)."""

    yes_ids: tuple[int, ...]
    no_ids: tuple[int, ...]
    reference_yes_ids: tuple[int, ...]  # fallback order
    reference_no_ids: tuple[int, ...]
    pieces: tuple[tuple[int, str], ...] = ()  # id -> decoded text, for audit

    def __post_init__(self) -> None:
        if not self.yes_ids or not self.no_ids:
            raise ValueError(f"judge tokens need at least one Yes and one No id, got {self.yes_ids} / {self.no_ids}")
        overlap = set(self.yes_ids) & set(self.no_ids)
        if overlap:
            raise ValueError(f"token ids {sorted(overlap)} are both Yes and No")

    def request_ids(self) -> tuple[int, ...]:
        """Every id whose exact log-prob is asked of the engine (both modes, so they can be compared)."""
        return tuple(sorted(set(self.yes_ids) | set(self.no_ids)
                            | set(self.reference_yes_ids) | set(self.reference_no_ids)))

    def to_json_dict(self) -> dict:
        return {
            "yes_ids": list(self.yes_ids),
            "no_ids": list(self.no_ids),
            "reference_yes_ids": list(self.reference_yes_ids),
            "reference_no_ids": list(self.reference_no_ids),
            "pieces": {str(i): p for i, p in self.pieces},
        }


def single_token_ids(tokenizer, variants: Sequence[str], context: str = "") -> tuple[int, ...]:
    """Distinct ids of the variants that are exactly one token, in order.

    Each variant is tried twice: alone, and as the model would write it right after ``context`` (the end of the
    judge prompt; e.g. a SentencePiece tokenizer writes "Yes" after a newline with a different piece than at
    the start of a text). Either reading counts when it is a single token.
    """
    ids: list[int] = []

    def add(token_id: int) -> None:
        if token_id not in ids:
            ids.append(int(token_id))

    context_ids = tokenizer.encode(context, add_special_tokens=False) if context else []
    for variant in variants:
        alone = tokenizer.encode(variant, add_special_tokens=False)
        if len(alone) == 1:
            add(alone[0])
        if context:
            full = tokenizer.encode(context + variant, add_special_tokens=False)
            if full[: len(context_ids)] == context_ids and len(full) == len(context_ids) + 1:
                add(full[-1])
    return tuple(ids)


def reference_token_id(tokenizer, word: str) -> int:
    """The reference's id of ``word``: its first piece without special tokens."""
    encoded = tokenizer.encode(word, add_special_tokens=False)
    if not encoded:
        raise ValueError(f"tokenizer encodes {word!r} to nothing")
    return int(encoded[0])


def judge_tokens(tokenizer, yes_variants: Sequence[str], no_variants: Sequence[str], context: str = "") -> JudgeTokens:
    """The judge's answer-token ids; ``context`` is a rendered judge prompt (its end decides how a word after it
    is tokenized)."""
    yes_ids = single_token_ids(tokenizer, yes_variants, context)
    no_ids = single_token_ids(tokenizer, no_variants, context)
    if not yes_ids or not no_ids:
        raise ValueError(
            f"none of the Yes variants {list(yes_variants)} or No variants {list(no_variants)} is a single token "
            "for this tokenizer; list variants that are (see the preset's yes_variants/no_variants)"
        )
    ref_yes = tuple(reference_token_id(tokenizer, w) for w in REFERENCE_YES_TOKENS)
    ref_no = tuple(reference_token_id(tokenizer, w) for w in REFERENCE_NO_TOKENS)
    all_ids = sorted(set(yes_ids) | set(no_ids) | set(ref_yes) | set(ref_no))
    pieces = tuple((i, tokenizer.decode([i])) for i in all_ids)
    return JudgeTokens(yes_ids, no_ids, ref_yes, ref_no, pieces)


def logsumexp(values: Sequence[float]) -> float:
    finite_max = max(values, default=-math.inf)
    if finite_max == -math.inf:
        return -math.inf
    return finite_max + math.log(sum(math.exp(v - finite_max) for v in values))


def two_way_score(logprob_yes: float, logprob_no: float) -> float:
    """``exp(y) / (exp(y) + exp(n))`` without overflow; 0.5 when both are -inf (no information)."""
    if logprob_yes == -math.inf and logprob_no == -math.inf:
        return 0.5
    diff = logprob_no - logprob_yes
    if diff >= 0:
        e = math.exp(-diff)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(diff))


def exact_score(logprobs: Mapping[int, float], yes_ids: Sequence[int], no_ids: Sequence[int]) -> ScoreParts:
    """Score from exact log-probs of every listed id; a missing id is an engine contract violation."""
    missing = [i for i in (*yes_ids, *no_ids) if i not in logprobs]
    if missing:
        raise KeyError(f"exact log-probs lack token ids {missing}")
    lp_yes = logsumexp([float(logprobs[i]) for i in yes_ids])
    lp_no = logsumexp([float(logprobs[i]) for i in no_ids])
    return ScoreParts(two_way_score(lp_yes, lp_no), lp_yes, lp_no)


def top_n(logprobs: Mapping[int, float], n: int = REFERENCE_TOP_N) -> dict[int, float]:
    """The ``n`` most likely ids (ties broken by lower id, for determinism)."""
    ranked = sorted(logprobs.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return {int(k): float(v) for k, v in ranked}


def _reference_logprob(top: Mapping[int, float], ids_in_fallback_order: Sequence[int]) -> float:
    for token_id in ids_in_fallback_order:
        if token_id in top:
            return float(top[token_id])
    return REFERENCE_MISSING_LOGPROB


def reference_score(top_logprobs: Mapping[int, float], yes_ids: Sequence[int], no_ids: Sequence[int]) -> ScoreParts:
    """The reference code's score, from the top-5 of the first answer token."""
    top = top_n(top_logprobs)
    lp_yes = _reference_logprob(top, yes_ids)
    lp_no = _reference_logprob(top, no_ids)
    return ScoreParts(two_way_score(lp_yes, lp_no), lp_yes, lp_no)


def score_pair(logprobs: Mapping[int, float], top_logprobs: Mapping[int, float], tokens: JudgeTokens,
               mode: str) -> tuple[ScoreParts, str]:
    """The score in ``mode`` and the raw log-probs as JSON (both modes' results included, for audit)."""
    exact = exact_score(logprobs, tokens.yes_ids, tokens.no_ids)
    reference = (reference_score(top_logprobs, tokens.reference_yes_ids, tokens.reference_no_ids)
                 if top_logprobs else None)
    if mode == "exact":
        chosen = exact
    elif mode == "reference":
        if reference is None:
            raise ValueError("reference scoring needs the top-5 log-probs, and the engine returned none")
        chosen = reference
    else:
        raise ValueError(f"unknown scoring mode {mode!r}")
    raw = {
        "mode": mode,
        "requested": {str(k): float(v) for k, v in sorted(logprobs.items())},
        "top": {str(k): float(v) for k, v in top_n(top_logprobs).items()},
        **tokens.to_json_dict(),
        "exact": exact._asdict(),
        "reference": reference._asdict() if reference else None,
    }
    return chosen, json.dumps(raw, sort_keys=True)
