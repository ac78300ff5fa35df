"""Input that used to be read short, corrupted or crashed the job (a bad-input probe, 2026-12-02): a truncated
compressed file, JSON that yajl mangles, a top-level object, deep nesting, invalid UTF-8 in a Parquet string
column, a non-text instruction. The files are written with the standard library and pyarrow, not the readers."""
from __future__ import annotations

import bz2
import gzip
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.extract.policies import DEFAULT_CONFIG
from transforms.extract.snippets import snippet_from_pair
from transforms.io.beam import ReadSourcePairs
from transforms.io.readers import ColumnMapping, CorpusConfigError, iter_json_rows

MAPPING = ColumnMapping(instruction="instruction", response="output")
N_LINES = 1000
LINES = b"".join(json.dumps({"instruction": f"task {i}", "output": f"def f{i}(a):\n    return a + {i}"}).encode()
                 + b"\n" for i in range(N_LINES))
COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".zst": zstandard.ZstdCompressor().compress}


def _rows(path) -> list:
    return list(iter_json_rows(str(path), "auto", MAPPING))


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_whole_compressed_file_reads_every_line(tmp_path, suffix):
    path = tmp_path / f"corpus.jsonl{suffix}"
    path.write_bytes(COMPRESSORS[suffix](LINES) + COMPRESSORS[suffix](LINES))  # two members/streams/frames
    rows = _rows(path)
    assert len(rows) == 2 * N_LINES and all(problem is None for _, _, problem in rows)


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
@pytest.mark.parametrize("keep", [0.5, "all but one byte"])
def test_a_truncated_compressed_file_stops_the_job_instead_of_reading_short(tmp_path, suffix, keep):
    data = COMPRESSORS[suffix](LINES)
    cut = len(data) - 1 if keep == "all but one byte" else int(len(data) * keep)
    path = tmp_path / f"corpus.jsonl{suffix}"
    path.write_bytes(data[:cut])
    with pytest.raises(CorpusConfigError, match="cannot be read to its end"):
        _rows(path)


def test_a_json_array_keeps_what_json_keeps(tmp_path):
    path = tmp_path / "corpus.json"
    # Written by hand: JSON escapes of a lone high and a lone low surrogate, and an integer past 64 bits.
    path.write_text('[{"output": "s = \\"\\ud800abc\\""}, {"output": "\\udfff"},'
                    ' {"id": 18446744073709551616, "output": "x = 1"}]', encoding="ascii")
    rows = _rows(path)
    assert [problem[0] if problem else None for _, _, problem in rows] == ["not_utf8", "not_utf8", None]
    assert rows[2][1]["id"] == 2 ** 64


def test_a_json_file_whose_top_level_is_an_object_is_an_error_not_zero_records(tmp_path):
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps({"instruction": "a", "output": "x = 1"}))
    with pytest.raises(CorpusConfigError, match="top level is an object"):
        _rows(path)


def test_a_line_nested_too_deeply_is_one_dead_letter(tmp_path):
    path = tmp_path / "corpus.jsonl"
    deep = '{"output": "x = 1", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text('{"output": "x = 1"}\n' + deep + '\n{"output": "y = 2"}\n')
    rows = _rows(path)
    assert [problem[0] if problem else None for _, _, problem in rows] == [None, "bad_record", None]


def test_invalid_utf8_in_a_parquet_string_column_is_a_dead_letter_not_a_crash(tmp_path):
    path = tmp_path / "corpus.parquet"
    good = [f"def f{i}(a):\n    return a + {i}".encode() for i in range(4)]
    output = pa.array(good + [b"x = '\xff\xfe'"], pa.binary()).view(pa.string())  # not checked by Parquet
    pq.write_table(pa.table({"instruction": [f"task {i}" for i in range(5)], "output": output}), path)
    with TestPipeline(runner="DirectRunner") as p:
        out = p | ReadSourcePairs(str(path), MAPPING)
        assert_that(out.main | beam.Map(lambda r: r["source_row"]), equal_to([0, 1, 2, 3]), label="kept")
        assert_that(out.rejected | beam.Map(lambda r: (r["source_row"], r["reason"])), equal_to([(4, "not_utf8")]),
                    label="rejected")


@pytest.mark.parametrize("instruction, expected", [
    (42, "bad_record"), (["a"], "bad_record"), (b"\xff", "not_utf8"), (b"task", "task"), (None, None), ("t", "t")])
def test_the_instruction_is_text_or_null_or_the_pair_is_a_dead_letter(instruction, expected):
    pair = {"id": "p", "instruction": instruction, "response": "def f(a):\n    return a + 1\n",
            "language_hint": None, "source_uri": "u", "source_row": 0}
    result = snippet_from_pair(pair, DEFAULT_CONFIG)
    got = result[0] if isinstance(result, tuple) else result["original_instruction"]
    assert got == expected


@pytest.mark.parametrize("slash", ["", "/"])
def test_a_directory_as_input_is_an_error_that_suggests_a_glob(tmp_path, slash):
    from transforms.io.beam import corpus_files

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.jsonl").write_bytes(LINES)
    (tmp_path / "sub" / "b.jsonl").write_bytes(LINES)
    with pytest.raises(CorpusConfigError, match=r"is a directory; give its files as a glob"):
        corpus_files(f"{tmp_path}{slash}", MAPPING)
    every_level = [str(tmp_path / "a.jsonl"), str(tmp_path / "sub" / "b.jsonl")]
    assert corpus_files(f"{tmp_path}/**.jsonl", MAPPING) == every_level  # the glob the error suggests
    assert corpus_files(f"{tmp_path}/*.jsonl", MAPPING) == every_level[:1]


def test_a_broken_definition_in_a_source_tree_is_a_dead_letter_not_a_vanishing(tmp_path):
    from transforms.io.readers import source_file_pairs

    path = tmp_path / "broken.py"
    path.write_text("def broken(a:\n    return a\n\ndef fine(b):\n    return b * 2\n")
    pairs = source_file_pairs(str(path), path.read_bytes())
    assert [p["source_row"] for p in pairs] == [1, 4]
    outcomes = [snippet_from_pair(p, DEFAULT_CONFIG) for p in pairs]
    assert outcomes[0][0] == "syntax_error" and outcomes[1]["code"].startswith("def fine(b):")


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_compressed_file_named_as_plain_jsonl_is_refused_by_name(tmp_path, suffix):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(COMPRESSORS[suffix](LINES))
    with pytest.raises(CorpusConfigError, match=rf"starts like a \{suffix} file but is not named so"):
        _rows(path)


def test_a_file_whose_name_holds_a_comma_or_brackets_is_read_as_named(tmp_path):
    from transforms.io.beam import corpus_files

    for name in ("a,b.jsonl", "data[1].jsonl"):
        path = tmp_path / name
        path.write_bytes(LINES)
        assert corpus_files(str(path), MAPPING) == [str(path)]


@pytest.mark.parametrize("ending", [b"\r", b"\r\n", b"\n"])
def test_every_line_ending_reads_every_record(tmp_path, ending):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(LINES.replace(b"\n", ending))
    rows = _rows(path)
    assert len(rows) == N_LINES and all(problem is None for _, _, problem in rows)
    assert [raw["instruction"] for _, raw, _ in rows] == [f"task {i}" for i in range(N_LINES)]


def test_a_cr_between_tokens_of_one_record_is_whitespace_and_a_bad_cr_line_is_one_dead_letter(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"instruction": "a",\r "output": "x = 1"}\n{"output": "y = 2"}\r{"output": \r\n')
    rows = _rows(path)
    assert [(raw["output"] if problem is None else problem[0]) for _, raw, problem in rows] == \
        ["x = 1", "y = 2", "bad_record"]
