"""Exact dedup (``DedupSnippets``): one survivor per snippet id, the one with the smallest provenance, whatever
the arrival order; the others are dead letters naming it. Records cross the shuffle packed."""
from __future__ import annotations

import random

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from schemas.records import content_id
from transforms.dedup.beam import DedupSnippets


def snippet(code: str, uri: str, row: int) -> dict:
    return {"id": content_id("code_snippet", "python", code), "source_id": content_id("src", uri, row),
            "code": code, "language": "python", "source_uri": uri, "source_row": row, "stage": "extract",
            "raw": b"\x00bytes survive packing"}


def test_smallest_provenance_survives_and_duplicates_name_it():
    codes = [f"def f{i}():\n    return {i}" for i in range(30)]
    records = []
    for i, code in enumerate(codes):
        for copy in range(1 + i % 4):  # 1 to 4 copies
            records.append(snippet(code, f"file{(i + copy) % 3}.jsonl", 100 * copy + i))
    random.Random(5).shuffle(records)
    expected_survivors, expected_dead = [], []
    for code in codes:
        copies = sorted((r for r in records if r["code"] == code),
                        key=lambda r: (r["source_uri"], r["source_row"], r["source_id"]))
        expected_survivors.append(copies[0])
        expected_dead += [(c["source_uri"], c["source_row"], "duplicate",
                           f"same normalized code as {copies[0]['source_uri']}:{copies[0]['source_row']}")
                          for c in copies[1:]]
    assert len(expected_dead) > 20
    with beam.Pipeline(runner="DirectRunner") as p:
        out = p | beam.Create(records) | DedupSnippets()
        assert_that(out.main, equal_to(expected_survivors), label="survivors")
        dead = out.rejected | beam.Map(lambda r: (r["source_uri"], r["source_row"], r["reason"], r["detail"]))
        assert_that(dead, equal_to(expected_dead), label="dead")
