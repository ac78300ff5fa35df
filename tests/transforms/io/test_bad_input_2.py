"""Input that crashed the job, lost values or refused a readable file (a bad-input probe, 2026-12-03): an item of a
JSON array nested thousands deep, an integer of more than 4,300 digits, a Parquet data page that is corrupt, an
``--input-column`` value that is not text, ``NaN``/``Infinity`` in a JSON array, an empty corpus's report. The
files are written with the standard library and pyarrow, not the readers."""
from __future__ import annotations

import json
import math
import warnings

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.io import readers
from transforms.io.beam import ReadSourcePairs
from transforms.io.readers import ColumnMapping, CorpusConfigError, iter_json_rows, make_source_pair

MAPPING = ColumnMapping(instruction="instruction", response="output")
WITH_INPUT = ColumnMapping(instruction="instruction", response="output", input="input")
GOOD = {"instruction": "add one", "output": "def f(a):\n    return a + 1\n"}
BIG = "1" * 5000  # past Python's 4,300-digit limit for int(str)


def _rows(path, mapping=MAPPING) -> list:
    return list(iter_json_rows(str(path), "auto", mapping))


def _reasons(rows) -> list:
    return [problem[0] if problem else None for _, _, problem in rows]


def _read(path, mapping=MAPPING, kept=lambda r: r["source_row"], expected_kept=(), expected_rejected=()):
    with TestPipeline(runner="DirectRunner") as p:
        out = p | ReadSourcePairs(str(path), mapping)
        assert_that(out.main | beam.Map(kept), equal_to(list(expected_kept)), label="kept")
        assert_that(out.rejected | beam.Map(lambda r: (r["source_row"], r["reason"])),
                    equal_to(list(expected_rejected)), label="rejected")


def test_an_item_nested_thousands_deep_is_one_dead_letter_in_a_json_array_as_in_json_lines(tmp_path):
    items = [json.dumps(GOOD), "[" * 3000 + "]" * 3000, json.dumps(GOOD)]
    (tmp_path / "corpus.json").write_text("[" + ", ".join(items) + "]")
    (tmp_path / "corpus.jsonl").write_text("\n".join(items) + "\n")
    for name in ("corpus.json", "corpus.jsonl"):
        _read(tmp_path / name, expected_kept=[0, 2], expected_rejected=[(1, "bad_record")])


@pytest.mark.parametrize("name", ["corpus.jsonl", "corpus.json"])
def test_an_integer_of_5000_digits_is_one_dead_letter_with_a_short_detail(tmp_path, name):
    records = [json.dumps(GOOD), '{"instruction": "x", "output": "y = 1", "n": ' + BIG + "}", json.dumps(GOOD)]
    path = tmp_path / name
    path.write_text("\n".join(records) + "\n" if name.endswith(".jsonl") else "[" + ", ".join(records) + "]")
    rows = _rows(path)
    assert _reasons(rows) == [None, "bad_record", None]
    detail = rows[1][2][1]
    assert "too long" in detail and "4300 digits" in detail and BIG not in detail and len(detail) < 400


def test_a_json_array_error_message_cuts_a_long_value(tmp_path):
    path = tmp_path / "corpus.json"
    long = "1" * 4000 + "x"  # not JSON (a number under the digit limit, then a letter): the file is refused
    path.write_text("[" + json.dumps(GOOD) + ", " + long + "]")
    with pytest.raises(CorpusConfigError, match="is not a valid JSON array") as caught:
        _rows(path)
    assert str(path) in str(caught.value) and "1" * 500 not in str(caught.value) and len(str(caught.value)) < 600


def _corrupt_parquet(path) -> None:
    outputs = [f"def f{i}(a):\n    return a + {i}\n" for i in range(200)]
    pq.write_table(pa.table({"instruction": [f"task {i}" for i in range(200)], "output": outputs}), path,
                   compression="snappy")
    data = bytearray(path.read_bytes())
    data[100:140] = bytes(40)  # inside the first column's data page; the footer is intact
    path.write_bytes(bytes(data))


def test_a_parquet_file_with_a_corrupt_data_page_stops_the_job_naming_the_file_and_row_group(tmp_path):
    path = tmp_path / "corpus.parquet"
    _corrupt_parquet(path)
    assert pq.ParquetFile(path).metadata.num_rows == 200  # the footer reads: the pipeline is built
    with pytest.raises(CorpusConfigError, match=r"corpus\.parquet cannot be read to its end \(row group 0"):
        _read(path)


def test_an_input_that_is_not_text_or_null_is_a_dead_letter_not_dropped(tmp_path):
    values = [5, {"a": 1}, ["x"], True, 1.5, "ctx", "", None]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({**GOOD, "input": value}) + "\n" for value in values))
    rows = _rows(path, WITH_INPUT)
    assert _reasons(rows) == ["bad_record"] * 5 + [None] * 3
    for value, (_, _, problem) in zip(values[:5], rows):
        assert "'input'" in problem[1] and type(value).__name__ in problem[1]


def test_a_binary_parquet_input_column_is_decoded_like_the_instruction(tmp_path):
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({
        "instruction": pa.array([b"task 0", b"task 1", b"task 2"], pa.binary()),
        "output": ["def f(a):\n    return a\n", "def g(a):\n    return a\n", "def h(a):\n    return a\n"],
        "input": pa.array([b"ctx \xc3\xa9", b"\xff", None], pa.binary()),
    }), path)
    _read(path, WITH_INPUT, kept=lambda r: (r["source_row"], r["instruction"]),
          expected_kept=[(0, "task 0\n\nctx \u00e9"), (2, b"task 2")], expected_rejected=[(1, "not_utf8")])


def test_the_input_is_merged_whatever_form_the_instruction_takes():
    cases = [(b"task", "ctx", "task\n\nctx"), ("task", b"ctx", "task\n\nctx"), (None, "ctx", "ctx"),
             ("task", " ", "task"), (b"\xff", "ctx", b"\xff")]  # not UTF-8: extraction dead-letters it (not_utf8)
    for instruction, extra, expected in cases:
        pair = make_source_pair({"instruction": instruction, "input": extra, "output": "x = 1"}, WITH_INPUT, "u", 0)
        assert pair["instruction"] == expected, (instruction, extra)


def test_a_json_array_is_read_as_json_reads_it_nan_and_infinity_included(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK", 7, raising=False)  # items and strings across many reads
    tricky = 'a "quoted" ], } {[ \\ back\\slash, comma \u00e9 \u2603 \U0001f600'
    documents = [
        [{**GOOD, "score": math.nan}, {**GOOD, "score": math.inf}, {**GOOD, "score": -math.inf}],  # json.dump's default
        [{**GOOD, "meta": {"s": tricky, "l": [1, [2, {"x": []}], {}], "e": ""}}, {**GOOD, "id": 2 ** 70}],
        [], [GOOD], [GOOD, "text", 3, None, [GOOD], {}],
    ]
    for i, document in enumerate(documents):
        for indent in (None, 2):
            path = tmp_path / f"doc{i}-{indent}.json"
            path.write_text(json.dumps(document, indent=indent, ensure_ascii=indent is None), encoding="utf-8")
            got = [raw for _, raw, _ in _rows(path)]
            # NaN != NaN: compare the documents as json writes them
            assert json.dumps(got) == json.dumps(json.loads(path.read_text(encoding="utf-8"))), path.name
    for bad in ["[", "[1,", "[1,]", "[,1]", "[1}", '[{"a": [1}]', '["abc', "[1] x", "[1 2]", '[{"a" 1}]', "[NaNx]"]:
        path = tmp_path / "bad.json"
        path.write_text(bad)
        with pytest.raises(CorpusConfigError, match="is not a valid JSON array"):
            _rows(path)


def test_a_json_array_item_that_is_not_utf8_is_a_dead_letter(tmp_path):
    path = tmp_path / "corpus.json"
    path.write_bytes(b"[" + json.dumps(GOOD).encode() + b', {"output": "x = \'\xff\'"}, ' + json.dumps(GOOD).encode()
                     + b"]")
    assert _reasons(_rows(path)) == [None, "not_utf8", None]


def test_the_funnel_of_an_empty_corpus_draws_without_a_warning():
    from transforms.stats.report import funnel_section

    stages = {name: {"records_in": 0, "records_out": 0, "rejected": {}} for name in ("read", "extract", "dedup")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        section = funnel_section(stages, ["read", "extract", "dedup"])
    assert "stage funnel" in section
