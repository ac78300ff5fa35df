"""Beam glue of the io package (``transforms/io/beam.py``) beyond the readers' formats (``test_readers.py``)."""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from transforms.io.beam import ReadSourcePairs
from transforms.io.readers import ColumnMapping


def test_a_file_matched_twice_is_read_once(tmp_path):
    """``--input a.jsonl,a.jsonl`` or ``a.jsonl,*.jsonl``: each row is one record (read twice, every row was two
    records with one id, and every later join keyed on it)."""
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"instruction": f"task {i}", "response": f"print({i})"}) + "\n"
                                              for i in range(3)))
    (tmp_path / "b.jsonl").write_text(json.dumps({"instruction": "task b", "response": "print('b')"}) + "\n")
    a = str(tmp_path / "a.jsonl")
    expected = [(a, i) for i in range(3)]
    for pattern, extra in ((f"{a},{a}", []), (f"{a}, {tmp_path}/*.jsonl", [(str(tmp_path / "b.jsonl"), 0)])):
        with beam.Pipeline(runner="DirectRunner") as p:
            out = p | ReadSourcePairs(pattern, ColumnMapping())
            assert_that(out.main | beam.Map(lambda r: (r["source_uri"], r["source_row"])),
                        equal_to(expected + extra))
