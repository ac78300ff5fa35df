"""Beam glue of the io package (``transforms/io/beam.py``) beyond the readers' formats (``test_readers.py``)."""
from __future__ import annotations

import argparse
import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from transforms.io.beam import ReadSourcePairs, limit_records
from transforms.io.options import CorpusOptions, positive_count
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


def test_a_limit_below_one_is_refused_not_read_as_no_limit():
    """``--limit 0`` once processed the whole corpus and ``--limit -3`` kept nothing, both exiting 0."""
    assert positive_count("3") == 3
    for text, wanted in (("0", "at least 1"), ("-3", "at least 1"), ("x", "whole number")):
        with pytest.raises(argparse.ArgumentTypeError, match=wanted):
            positive_count(text)
    parser = argparse.ArgumentParser()
    CorpusOptions._add_argparse_args(parser)
    assert parser.parse_args([]).limit is None and parser.parse_args(["--limit", "2"]).limit == 2
    with beam.Pipeline(runner="DirectRunner") as p:
        records = p | beam.Create([{"id": str(i), "source_uri": "u", "source_row": i} for i in range(5)])
        assert_that(limit_records(records, 2) | beam.Map(lambda r: r["id"]), equal_to(["0", "1"]), label="Two")
        assert_that(limit_records(records, None, "All") | beam.combiners.Count.Globally(), equal_to([5]),
                    label="All")
        with pytest.raises(ValueError, match="at least 1"):
            limit_records(records, 0, "Zero")
