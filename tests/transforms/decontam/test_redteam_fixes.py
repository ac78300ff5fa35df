"""Defects a red-team pass found in the decontamination checks, each shown on hand-written text (not the
project's planting helpers, so the tests do not share the normalizer's view of what a copy is)."""
from __future__ import annotations

import numpy as np
import pytest

from transforms.decontam import benchmarks as B
from transforms.decontam import normalize
from transforms.decontam.methods import DecontamConfig, DecontamIndex, SubstringIndex

COLUMNS = ("instruction", "code")

# HumanEval/0's solution, renamed by hand (so only the n-gram view can find it, not its signature).
RENAMED_HUMANEVAL_0 = '''def close_pair(vals, eps):
    for a, x in enumerate(vals):
        for b, y in enumerate(vals):
            if a != b:
                d = abs(x - y)
                if d < eps:
                    return True

    return False
'''


def flagged(index, code, instruction="Write this function.", language=None):
    return {(e["method"], e["task_id"]) for e in index.check({"instruction": instruction, "code": code},
                                                             COLUMNS, language)}


# --------------------------------------------------------------------------- Markdown fences hide code


@pytest.mark.parametrize("fenced", [
    "Here is my solution:\n\n```python\n" + RENAMED_HUMANEVAL_0 + "```\n\nHope it helps.",
    "```\n" + RENAMED_HUMANEVAL_0 + "```",
    "Sure!\n   ```py title=solution.py\n" + RENAMED_HUMANEVAL_0 + "   ```\n",
    "Sure!\n~~~python\n" + RENAMED_HUMANEVAL_0 + "~~~\n",
    "1. First `close_pair` loops twice:\n\n````python\n" + RENAMED_HUMANEVAL_0 + "````\nThat's it.",
])
def test_a_fenced_renamed_solution_is_caught_like_an_unfenced_one(index, fenced):
    assert ("ngram", "HumanEval/0") in flagged(index, RENAMED_HUMANEVAL_0)
    assert ("ngram", "HumanEval/0") in flagged(index, fenced)
    assert ("ngram", "HumanEval/0") in flagged(index, "", instruction=fenced)


def test_a_fence_line_is_dropped_from_the_code_view_and_hides_nothing():
    code = "def f(a):\n    return a + 1\n"
    plain = normalize.describe_tokens(code)
    assert normalize.describe_tokens("Answer:\n```python\n" + code + "```\nDone") == f"<id> : {plain} <id>"
    assert normalize.describe_tokens("  ~~~\n" + code + "  ~~~") == plain
    # Inline code of three backticks on one line is no fence; nor is a fence mid-line.
    assert normalize.describe_tokens("```x = 1```") == "<str> <str> <str>"
    assert normalize.describe_tokens("see ```\nx\n```") == "<id> <str> ` <id>"


@pytest.mark.parametrize("text, tokens", [
    ("const s = `hello\n${name}\nworld`;", "<id> <id> = <str> ;"),  # a template literal spans lines
    ("let q = `a\n  ~~ b`;", "<id> <id> = <str> ;"),  # two tildes are no fence
    ("x = `start\n```js\ny = 1\n```\n", "<id> = ` <id> <id> = <num>"),  # ... but it never spans a fence
])
def test_backtick_strings_still_work_but_never_span_a_fence(text, tokens):
    assert normalize.describe_tokens(text, "javascript") == tokens


def test_fenced_text_tokens_agree_on_every_path():
    texts = ["Here:\n```python\ndef f(a):\n    return `a`\n```\n", "  ```\nx = '''a\n```\nb'''\n  ```",
             "```\n\x02 ~~~ ``\n~~~~ `x`\n", "x `\n  ~~~ k\n` ```y```", "\t```c\n/* a */ b // c\n```"]
    for language in (None, "java"):
        c_family = normalize.is_c_family(language)
        joined = normalize.join_texts(texts)
        expected = [(m.start(), m.end(), m.group(1) is None) for m in normalize._BLANK_RE[c_family].finditer(joined)]
        assert list(zip(*normalize.blank_spans(joined, c_family))) == expected
        assert np.array_equal(normalize.batch_values(texts, "code", language),
                              normalize.reference_batch_values(texts, "code", language))
        for text in texts:
            fast = normalize.fast_code_tokens(normalize.join_texts([text]), c_family, positions=True)
            scalar = normalize.regex_code_tokens(text, language)
            assert fast.values.tolist() == [t.value for t in scalar]
            assert fast.starts.tolist() == [t.start for t in scalar]


# ------------------------------------------------------------------ bodies that cannot be canonicalized


def deep_sum(terms: int) -> str:
    """HumanEval/2's fully typed signature over a body nested ``terms`` deep (a left-leaning ``+`` chain)."""
    return "def truncate_number(number: float) -> float:\n    return " + " + ".join(["number"] * terms) + "\n"


@pytest.mark.parametrize("code", [
    deep_sum(1000),  # parses, but canonicalizing it recursed past the limit (RecursionError out of check)
    deep_sum(2000),
    deep_sum(3000),  # does not parse at all: was read as a stub and matched HumanEval/2's typed signature
    "def truncate_number(number: float) -> float:\n    print 'the fraction'\n    return number\n",  # Python 2
])
def test_a_body_that_cannot_be_canonicalized_gets_no_signature_match(index, code):
    found = flagged(index, code)
    assert not [hit for hit in found if hit[0] == "signature"]


def test_a_deep_body_beside_a_copy_does_not_hide_the_copy(index):
    assert ("ngram", "HumanEval/0") in flagged(index, deep_sum(2000) + "\n\n" + RENAMED_HUMANEVAL_0)


def test_a_deep_body_does_not_fail_the_beam_bundle(index):
    from transforms.decontam.beam import _DecontaminateBatch

    batch = [{"instruction": "x", "code": deep_sum(1000)},
             {"instruction": "x", "code": "def truncate_number(number: float) -> float:\n    return number % 1.0\n"}]
    out = list(_DecontaminateBatch(COLUMNS, "decontam_test", "source_pair", None).process(batch, index))
    assert out[0] is batch[0]  # kept
    assert getattr(out[1], "tag", None) == "rejected"  # the real copy is still a dead letter


# ------------------------------------------------------------------ a benchmark file that guards nothing


def test_a_benchmark_file_whose_mapped_columns_are_all_empty_is_refused_in_one_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"id": "a1", "question": null, "answer": ""}\n{"id": "a2", "question": "  ", "answer": null}\n')
    fields = B.parse_benchmark_fields(["mine:task_id=id,prompt=question,solution=answer"])
    spec = B.BenchmarkSpec.parse(f"mine={path}", fields)
    with pytest.raises(ValueError) as refused:
        B.check_benchmark_files([spec])
    message = str(refused.value)
    assert "\n" not in message and f"--benchmark mine={path}" in message
    assert "prompt=question" in message and "solution=answer" in message
    with pytest.raises(ValueError, match="null or empty"):  # and on a worker, which loads it again
        B.load_benchmarks([spec])
    # One row with text is enough to guard something.
    path.write_text('{"id": "a1", "question": null, "answer": ""}\n'
                    '{"id": "a2", "question": "Reverse the words of a sentence.", "answer": null}\n')
    B.check_benchmark_files([spec])
    assert len(B.load_benchmarks([spec])) == 2


# ------------------------------------------------------------------ substring spans in the original text


@pytest.mark.parametrize("instruction, code, column", [
    ("İİİ: make it unique and sorted", "İstanbul. Return Sorted(Set(Values)) then", "code"),  # İ lowers to 2
    ("Fix İt: return sorted(set(values)) please", "", "instruction"),
    ("ǅİ", "x = 1\nreturn SORTED(set(values))", "code"),
])
def test_a_substring_span_is_in_the_original_text_even_when_lower_changes_its_length(instruction, code, column):
    index = SubstringIndex({"bench_solutions": [("bench/1", "return sorted(set(values))")]})
    record = {"instruction": instruction, "code": code}
    evidence = index.check(record, COLUMNS)
    start, end = evidence["span"]
    assert evidence["column"] == column
    assert record[column][start:end].lower() == "return sorted(set(values))"
    assert evidence["matched_text"] == record[column][start:end]


# ------------------------------------------------------------------ headers and bare literals guard nothing

# Two puzzles in P3's style with different tasks: the same header shape (an int and a default list of
# numbers), bodies that share nothing.
PUZZLE_GUARDED = '''def sat(item: int, li=[17, 2, 3, 9, 11, 11, 4, 8, 15, 16, 23, 42], index=4):
    return li.index(item) == index
'''
PUZZLE_OTHER = '''def sat(n: int, scores=[100, 95, 80, 70, 65, 9, 9, 9, 4, 2, 1, 7], k=6):
    assert all(scores[i] >= scores[i + 1] for i in range(len(scores) - 1))
    return all(s >= scores[k] and s > 0 for s in scores[:n])
'''
# A solution that only returns a list, and an unrelated function with a default list of numbers.
LITERAL_SOLUTION = "def sol():\n    return [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3]\n"
LITERAL_OTHER = ("def rotate(k=2, xs=[2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0]):\n"
                 "    return xs[k:] + xs[:k]\n")
# A longer solution in the same style, so the rule still guards what it should.
PUZZLE_LONG = '''def sat(path: List[int], edges=[[0, 1], [1, 2], [2, 3], [0, 3]], u=0, v=3):
    assert path[0] == u and path[-1] == v
    for a, b in zip(path, path[1:]):
        assert [a, b] in edges or [b, a] in edges
    return len(set(path)) == len(path)
'''


def test_a_shared_header_or_bare_literal_is_no_contamination():
    items = [B.BenchmarkItem("puzzles", "guarded/0", prompt="", solutions=(PUZZLE_GUARDED,)),
             B.BenchmarkItem("puzzles", "literal/0", prompt="", solutions=(LITERAL_SOLUTION,)),
             B.BenchmarkItem("puzzles", "long/0", prompt="", solutions=(PUZZLE_LONG,))]
    index = DecontamIndex.build(items, DecontamConfig(methods=("ngram",)))
    assert not flagged(index, PUZZLE_OTHER, instruction="Solve this puzzle.")
    assert not flagged(index, LITERAL_OTHER, instruction="Solve this puzzle.")
    renamed_long = PUZZLE_LONG.replace("path", "route").replace("edges", "links").replace("[0, 1]", "[5, 6]")
    assert ("ngram", "long/0") in flagged(index, renamed_long, instruction="Solve this puzzle.")


def test_guarded_code_ngrams_leave_out_headers_and_bare_literals():
    text = "def f(a, b=[1, 2, 3, 4, 5, 6]):\n    return a + b[0] * len(b) - max(b)\n"
    headers = [(0, text.index("\n"))]
    grams, body_tokens = normalize.guarded_code_ngrams(text, 4, headers)
    body = text[text.index("\n") + 1:]
    assert body_tokens == len(normalize.regex_code_tokens(body))
    assert grams == normalize.text_ngrams(body, 4, "code")  # the header's windows are gone, the body's kept
    literal, _ = normalize.guarded_code_ngrams("x = [1, 2, 3, 4, 5]", 4, [])
    assert literal == normalize.text_ngrams("x = [1,", 4, "code")  # only the windows with more than literal
