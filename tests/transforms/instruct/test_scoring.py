"""Both scoring modes on known logits, and the Yes/No token ids of the real SmolLM2 tokenizer."""
from __future__ import annotations

import json
import math

import pytest

from transforms.instruct import scoring
from transforms.instruct.prompts import load_preset
from transforms.instruct.scoring import JudgeTokens, exact_score, reference_score, score_pair, two_way_score

# A toy vocabulary: 0 "Yes", 1 " Yes", 2 "No", 3 " No", 4 "As", 5..9 other tokens.
LOGITS = [2.0, 1.0, 0.5, -1.0, 0.2, 3.0, 2.5, -2.0, 0.0, 1.5]
YES, SPACE_YES, NO, SPACE_NO, AS = 0, 1, 2, 3, 4


def softmax(logits):
    z = sum(math.exp(x) for x in logits)
    return [math.exp(x) / z for x in logits]


def log_softmax(logits):
    return {i: math.log(p) for i, p in enumerate(softmax(logits))}


def test_exact_score_sums_the_probabilities_of_each_side():
    probs = softmax(LOGITS)
    parts = exact_score(log_softmax(LOGITS), [YES, SPACE_YES], [NO, SPACE_NO])
    p_yes, p_no = probs[YES] + probs[SPACE_YES], probs[NO] + probs[SPACE_NO]
    assert parts.score == pytest.approx(p_yes / (p_yes + p_no), rel=1e-12)
    assert parts.logprob_yes == pytest.approx(math.log(p_yes), rel=1e-12)
    assert parts.logprob_no == pytest.approx(math.log(p_no), rel=1e-12)


def test_exact_score_with_single_ids_is_the_two_token_softmax():
    parts = exact_score(log_softmax(LOGITS), [YES], [NO])
    # p(Yes)/(p(Yes)+p(No)) = softmax over the two logits alone.
    assert parts.score == pytest.approx(math.exp(2.0) / (math.exp(2.0) + math.exp(0.5)), rel=1e-12)


def test_exact_score_refuses_a_missing_token():
    with pytest.raises(KeyError):
        exact_score({YES: -1.0}, [YES], [NO])


def test_reference_mode_reads_the_top5_of_the_first_token():
    lp = log_softmax(LOGITS)  # top-5 ids: 5 (3.0), 6 (2.5), 0 "Yes" (2.0), 9 (1.5), 1 " Yes" (1.0)
    assert set(scoring.top_n(lp)) == {5, 6, YES, 9, SPACE_YES}
    # "No" (0.5) and "As" (0.2) are both outside the top-5: No gets -100.
    parts = reference_score(lp, [YES], [NO, AS])
    assert parts.logprob_yes == pytest.approx(lp[YES])
    assert parts.logprob_no == -100.0
    assert parts.score == pytest.approx(1.0 / (1.0 + math.exp(-100.0 - lp[YES])), rel=1e-12)


def test_reference_mode_uses_as_when_no_is_missing():
    logits = [2.0, -5.0, -5.0, -5.0, 1.0, 3.0, 2.5, -2.0, 0.0, 1.5]  # "As" in the top-5, "No" far below
    lp = log_softmax(logits)
    parts = reference_score(lp, [YES], [NO, AS])
    assert parts.logprob_no == pytest.approx(lp[AS])
    assert parts.score == pytest.approx(math.exp(lp[YES]) / (math.exp(lp[YES]) + math.exp(lp[AS])), rel=1e-12)


def test_reference_mode_prefers_no_over_as():
    logits = [2.0, -5.0, 1.8, -5.0, 1.9, 3.0, 2.5, -2.0, 0.0, -1.5]  # both No and As in the top-5
    lp = log_softmax(logits)
    assert reference_score(lp, [YES], [NO, AS]).logprob_no == pytest.approx(lp[NO])


def test_reference_mode_when_yes_is_missing_and_when_both_are():
    logits = [-5.0, -5.0, 2.0, -5.0, -5.0, 3.0, 2.5, -2.0, 0.0, 1.5]  # No in top-5, Yes not
    lp = log_softmax(logits)
    parts = reference_score(lp, [YES], [NO, AS])
    assert parts.logprob_yes == -100.0 and parts.score < 1e-40
    neither = reference_score({5: -0.1, 6: -2.0, 7: -3.0}, [YES], [NO, AS])
    assert (neither.logprob_yes, neither.logprob_no, neither.score) == (-100.0, -100.0, 0.5)


def test_modes_differ_when_the_answer_is_outside_the_top5():
    lp = log_softmax(LOGITS)
    exact = exact_score(lp, [YES], [NO])
    reference = reference_score(lp, [YES], [NO, AS])
    assert exact.score < 0.9 < reference.score  # the -100 fallback turns a weak Yes into near-certainty


def test_two_way_score_is_stable_at_extremes():
    assert two_way_score(0.0, -1000.0) == 1.0
    assert two_way_score(-1000.0, 0.0) == 0.0
    assert two_way_score(-math.inf, -math.inf) == 0.5
    assert two_way_score(-3.0, -3.0) == 0.5


def test_score_pair_records_both_modes_and_the_raw_logprobs():
    lp = log_softmax(LOGITS)
    probs = softmax(LOGITS)
    tokens = JudgeTokens((YES, SPACE_YES), (NO, SPACE_NO), (YES,), (NO, AS))
    requested = {i: lp[i] for i in tokens.request_ids()}
    p_yes, p_no = probs[YES] + probs[SPACE_YES], probs[NO] + probs[SPACE_NO]
    exact_expected = p_yes / (p_yes + p_no)
    # Top-5 is 5, 6, Yes, 9, " Yes": "No" and "As" are outside, so No takes the reference's floor of -100.
    reference_expected = math.exp(lp[YES]) / (math.exp(lp[YES]) + math.exp(-100.0))

    parts, raw = score_pair(requested, lp, tokens, "exact")
    data = json.loads(raw)
    assert parts.score == pytest.approx(exact_expected, rel=1e-12)
    assert (parts.logprob_yes, parts.logprob_no) == pytest.approx((math.log(p_yes), math.log(p_no)), rel=1e-12)
    assert data["mode"] == "exact"
    assert data["reference"]["score"] == pytest.approx(reference_expected, rel=1e-12)
    assert set(data["requested"]) == {str(i) for i in (YES, SPACE_YES, NO, SPACE_NO, AS)}
    assert len(data["top"]) == 5
    ref_parts, _ = score_pair(requested, lp, tokens, "reference")
    assert ref_parts.score == pytest.approx(reference_expected, rel=1e-12)
    assert ref_parts.logprob_yes == pytest.approx(lp[YES], rel=1e-12)
    assert ref_parts.logprob_no == -100.0
    with pytest.raises(ValueError, match="top-5"):
        score_pair(requested, {}, tokens, "reference")


def test_judge_tokens_reject_overlapping_sides():
    with pytest.raises(ValueError, match="both Yes and No"):
        JudgeTokens((1, 2), (2,), (1,), (2,))


# --- the real tokenizer ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from tests.transforms.instruct.test_prompts import smollm2_tokenizer_source

    return smollm2_tokenizer_source().load()


def test_smollm2_judge_tokens_are_the_single_token_variants(smollm2_tokenizer):
    preset = load_preset("paper")
    tokens = scoring.judge_tokens(smollm2_tokenizer, preset.yes_variants, preset.no_variants)
    assert [smollm2_tokenizer.decode([i]) for i in tokens.yes_ids] == ["Yes", " Yes"]
    assert [smollm2_tokenizer.decode([i]) for i in tokens.no_ids] == ["No", " No"]
    assert [smollm2_tokenizer.decode([i]) for i in tokens.reference_no_ids] == ["No", "As"]
    assert tokens.reference_yes_ids == tokens.yes_ids[:1]
    for token_id in tokens.yes_ids + tokens.no_ids:
        assert smollm2_tokenizer.encode(smollm2_tokenizer.decode([token_id]), add_special_tokens=False) == [token_id]


def test_multi_token_variants_are_left_out(smollm2_tokenizer):
    # On SmolLM2 "YES" is two tokens (reference doc): it cannot be read as one next-token probability.
    assert len(smollm2_tokenizer.encode("YES", add_special_tokens=False)) == 2
    ids = scoring.single_token_ids(smollm2_tokenizer, ["YES", "Yes"])
    assert ids == tuple(smollm2_tokenizer.encode("Yes", add_special_tokens=False))
    with pytest.raises(ValueError, match="single token"):
        scoring.judge_tokens(smollm2_tokenizer, ["YES"], ["No"])


class SentencePieceLikeTokenizer:
    """A tiny greedy tokenizer with SentencePiece's dummy prefix: a word at the start of a text is "▁Yes", right
    after a newline it is "Yes" - the case the in-context reading of the variants exists for."""

    VOCAB = {"▁R": 10, "\n": 5, "▁Yes": 1, "Yes": 2, "▁No": 3, "No": 4, "▁": 7, "A": 8, "s": 9, "▁As": 11}

    def encode(self, text, add_special_tokens=False):
        text = "▁" + text.replace(" ", "▁")
        ids = []
        while text:
            piece = max((p for p in self.VOCAB if text.startswith(p)), key=len)
            ids.append(self.VOCAB[piece])
            text = text[len(piece):]
        return ids

    def decode(self, ids):
        inverse = {v: k for k, v in self.VOCAB.items()}
        return "".join(inverse[i] for i in ids)


def test_variants_are_also_read_as_the_model_writes_them_after_the_prompt():
    tok = SentencePieceLikeTokenizer()
    assert tok.encode("Yes") == [1] and tok.encode("R\nYes") == [10, 5, 2]
    assert scoring.single_token_ids(tok, ["Yes", " Yes"]) == (1,)  # " Yes" -> "▁", "▁Yes": two tokens
    assert scoring.single_token_ids(tok, ["Yes", " Yes"], context="R\n") == (1, 2)
    tokens = scoring.judge_tokens(tok, ["Yes"], ["No"], context="R\n")
    assert (tokens.yes_ids, tokens.no_ids) == ((1, 2), (3, 4))
    # the reference's "▁Yes", "▁No", "▁As"
    assert tokens.reference_yes_ids == (1,) and tokens.reference_no_ids == (3, 11)


def test_smollm2_in_context_ids_equal_the_standalone_ones(smollm2_tokenizer):
    from transforms.instruct.requests import judge_tokens_for

    preset = load_preset("paper")
    in_context = judge_tokens_for(preset, smollm2_tokenizer)
    alone = scoring.judge_tokens(smollm2_tokenizer, preset.yes_variants, preset.no_variants)
    assert in_context == alone
