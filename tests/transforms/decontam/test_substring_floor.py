"""The substring method (``project`` variant) skips benchmark statements too short to mean anything: a one-word
statement of a user's benchmark file rejected nearly every snippet (a bad-input probe, 2026-12-02)."""
from __future__ import annotations

from transforms.decontam.benchmarks import BenchmarkItem
from transforms.decontam.methods import SubstringIndex

ITEMS = [BenchmarkItem("mine", "m/1", prompt="x"),
         BenchmarkItem("mine", "m/2", prompt="Return the sum of two numbers.")]


def test_a_one_word_statement_is_not_searched_for_and_a_real_one_still_is():
    index = SubstringIndex.build(ITEMS, min_solution_tokens=10)
    assert index.check({"code": "x = 1\nprint(x)"}, ["code"]) is None
    hit = index.check({"code": "# return the sum of two numbers.\ndef add(a, b):\n    return a + b"}, ["code"])
    assert hit is not None and hit["task_id"] == "m/2"
