"""Corpus readers: provenance, column mapping, streaming formats, and fail-fast configuration errors."""
from __future__ import annotations

import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.io.beam import ReadSourcePairs, ReadSourceTree, limit_records
from transforms.io.readers import ColumnMapping, CorpusConfigError, iter_json_rows, validate_first_file


def _pipeline():
    return TestPipeline(runner="DirectRunner")


def _collect(pcoll, fn):
    return pcoll | beam.Map(fn)


def test_parquet_rows_keep_file_and_row_across_row_groups(tmp_path):
    path = tmp_path / "corpus.parquet"
    table = pa.table({"q": [f"task {i}" for i in range(7)], "a": [f"print({i})" for i in range(7)]})
    pq.write_table(table, path, row_group_size=3)  # three row groups: offsets 0, 3, 6
    with _pipeline() as p:
        out = p | ReadSourcePairs(str(path), ColumnMapping(instruction="q", response="a"))
        assert_that(
            _collect(out.main, lambda r: (r["source_row"], r["instruction"], r["response"], r["source_uri"])),
            equal_to([(i, f"task {i}", f"print({i})", str(path)) for i in range(7)]),
            label="pairs",
        )
        assert_that(out.rejected, equal_to([]), label="none_rejected")


def test_missing_column_fails_fast_naming_column_and_file(tmp_path):
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"instruction": ["x"], "output": ["y"]}), path)
    with pytest.raises(CorpusConfigError, match=r"'response' is missing from .*corpus\.parquet"):
        with _pipeline() as p:
            p | ReadSourcePairs(str(path), ColumnMapping())


def test_wrong_column_type_fails_fast(tmp_path):
    path = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"instruction": ["x"], "response": [42]}), path)
    with pytest.raises(CorpusConfigError, match=r"'response' of .*corpus\.parquet has type int64"):
        with _pipeline() as p:
            p | ReadSourcePairs(str(path), ColumnMapping())


def test_corrupt_parquet_fails_fast_naming_the_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(CorpusConfigError, match=r"broken\.parquet is not a readable Parquet file"):
        with _pipeline() as p:
            p | ReadSourcePairs(str(path), ColumnMapping())


def test_no_matching_file_is_a_config_error(tmp_path):
    with pytest.raises(CorpusConfigError, match="no file matches"):
        with _pipeline() as p:
            p | ReadSourcePairs(str(tmp_path / "nothing-*.jsonl"), ColumnMapping())


def test_jsonl_bad_lines_go_to_dead_letter_with_reasons(tmp_path):
    path = tmp_path / "corpus.jsonl"
    lines = [
        json.dumps({"instruction": "a", "output": "x = 1"}).encode(),
        b'{"instruction": "b", "output": "caf\xe9"}',  # latin-1 byte: not UTF-8
        b"{not json",
        json.dumps(["a list"]).encode(),
        json.dumps({"instruction": "c"}).encode(),  # no response field
        json.dumps({"instruction": "d", "output": None}).encode(),  # passed on: extraction judges None
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    with _pipeline() as p:
        out = p | ReadSourcePairs(str(path), ColumnMapping(response="output"))
        assert_that(_collect(out.main, lambda r: (r["source_row"], r["response"])), equal_to([(0, "x = 1"), (5, None)]),
                    label="pairs")
        assert_that(
            _collect(out.rejected, lambda r: (r["source_row"], r["reason"], r["stage"])),
            equal_to([(1, "not_utf8", "read"), (2, "bad_record", "read"), (3, "bad_record", "read"),
                      (4, "bad_record", "read")]),
            label="rejected",
        )


def test_json_array_with_input_column_and_first_record_check(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([
        {"instruction": "Sum", "input": "[1, 2]", "output": "sum([1, 2])"},
        {"instruction": "Hello", "input": "", "output": "print('hi')"},
    ]))
    mapping = ColumnMapping(instruction="instruction", response="output", input="input")
    with _pipeline() as p:
        out = p | ReadSourcePairs(str(path), mapping)
        assert_that(_collect(out.main, lambda r: r["instruction"]), equal_to(["Sum\n\n[1, 2]", "Hello"]))
    with pytest.raises(CorpusConfigError, match=r"'answer' is missing from the first record of .*alpaca\.json"):
        with _pipeline() as p:
            p | ReadSourcePairs(str(path), ColumnMapping(response="answer"))


@pytest.mark.parametrize("suffix, compress", [(".gz", "gzip"), (".bz2", "bz2")])
def test_compressed_jsonl_is_read_line_by_line(tmp_path, suffix, compress):
    import importlib

    path = tmp_path / f"corpus.jsonl{suffix}"
    lines = [json.dumps({"instruction": f"i{i}", "response": f"x = {i}"}) for i in range(3)] + ["{bad"]
    path.write_bytes(importlib.import_module(compress).compress(("\n".join(lines) + "\n").encode()))
    rows = list(iter_json_rows(str(path), "auto", ColumnMapping()))
    assert [(row, raw, problem) for row, raw, problem in rows[:3]] == [
        (i, {"instruction": f"i{i}", "response": f"x = {i}"}, None) for i in range(3)]
    assert rows[3][0] == 3 and rows[3][2][0] == "bad_record"


@pytest.mark.parametrize("compression", ["", ".gz"])
def test_a_leading_utf8_bom_is_skipped_in_jsonl_and_json_files(tmp_path, compression):
    import gzip

    records = [{"instruction": "i\ufeff", "response": f"x = {i}"} for i in range(3)]  # a BOM inside stays
    jsonl = "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n"
    written = {"corpus.jsonl": jsonl, "corpus.json": json.dumps(records, ensure_ascii=False, indent=1),
               "blank_first.jsonl": "\n" + jsonl}
    mapping = ColumnMapping()
    for name, text in written.items():
        path = tmp_path / (name + compression)
        data = text.encode("utf-8-sig")
        assert data.startswith(b"\xef\xbb\xbf")
        path.write_bytes(gzip.compress(data) if compression else data)
        rows = list(iter_json_rows(str(path), "auto", mapping))
        offset = 1 if name == "blank_first.jsonl" else 0
        assert rows == [(i + offset, r, None) for i, r in enumerate(records)], name
        validate_first_file([str(path)], mapping, "auto")
    with pytest.raises(CorpusConfigError, match="'answer' is missing from the first record"):
        validate_first_file([str(tmp_path / ("corpus.json" + compression))], ColumnMapping(response="answer"), "auto")


def test_a_json_file_of_only_a_bom_is_an_invalid_array_and_two_boms_are_not_skipped(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(CorpusConfigError, match="is not a valid JSON array"):
        list(iter_json_rows(str(empty), "auto", ColumnMapping()))
    twice = tmp_path / "twice.jsonl"
    twice.write_bytes(b"\xef\xbb\xbf\xef\xbb\xbf" + json.dumps({"response": "x"}).encode() + b"\n")
    assert [problem[0] for _, _, problem in iter_json_rows(str(twice), "auto", ColumnMapping())] == ["bad_record"]


def test_jsonl_with_a_bom_reads_through_the_pipeline(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"instruction": "a", "response": "x = 1"}) + "\n", encoding="utf-8-sig")
    with _pipeline() as p:
        out = p | ReadSourcePairs(str(path), ColumnMapping())
        assert_that(_collect(out.main, lambda r: (r["source_row"], r["response"])), equal_to([(0, "x = 1")]),
                    label="pairs")
        assert_that(out.rejected, equal_to([]), label="none_rejected")


def test_fsspec_memory_filesystem(tmp_path):
    import fsspec

    with fsspec.open("memory://corpus/pairs.jsonl", "wb") as f:
        f.write(json.dumps({"instruction": "i", "response": "x = 2"}).encode() + b"\n")
    with _pipeline() as p:
        out = p | ReadSourcePairs("memory://corpus/*.jsonl", ColumnMapping())
        assert_that(
            _collect(out.main, lambda r: (r["source_uri"].startswith("memory://"),
                                          r["source_uri"].endswith("corpus/pairs.jsonl"), r["response"])),
            equal_to([(True, True, "x = 2")]),
        )


def test_source_tree_yields_definitions_and_rejects_non_utf8(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        "import os\n\ndef f(x):\n    return x + 1\n\nclass C:\n    def m(self):\n        return 2\n")
    (tmp_path / "pkg" / "latin.py").write_bytes(b"# caf\xe9\ndef g():\n    return 1\n")
    (tmp_path / "site-packages").mkdir()
    (tmp_path / "site-packages" / "skip.py").write_text("def skipped():\n    pass\n")
    with _pipeline() as p:
        out = p | ReadSourceTree(str(tmp_path))
        first_lines = _collect(out.main, lambda r: (r["source_uri"].rsplit("/", 1)[-1], r["language_hint"],
                                                    r["response"].lstrip().splitlines()[0]))

        def check(actual):
            assert ("mod.py", "python", "def f(x):") in actual
            assert ("mod.py", "python", "class C:") in actual
            assert all(name == "mod.py" for name, _, _ in actual), "site-packages must be skipped"

        assert_that(first_lines, check, label="pairs")
        assert_that(_collect(out.rejected, lambda r: (r["reason"], r["source_uri"].rsplit("/", 1)[-1])),
                    equal_to([("not_utf8", "latin.py")]), label="rejected")


def test_limit_is_deterministic_and_spread():
    records = [{"id": f"{i:04d}", "source_uri": "u", "source_row": i} for i in range(100)]
    with _pipeline() as p:
        out = limit_records(p | beam.Create(records), 5)
        assert_that(out | beam.Map(lambda r: r["source_row"]), equal_to([0, 1, 2, 3, 4]))


# A JSON "\ud83d" escape (written as-is, backslash and all) decodes to a lone surrogate: valid JSON, not UTF-8.
LONE_SURROGATE_LINE = '{"instruction": "fix \\ud83d", "response": "```python\\nprint(1)\\n```"}'


def _surrogate_corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    good = [json.dumps({"instruction": f"ok {i}", "response": f"```python\nvalue_{i} = compute({i})\n```"})
            for i in range(2)]
    path.write_text("\n".join([good[0], LONE_SURROGATE_LINE, good[1]]) + "\n", encoding="ascii")
    return path


def test_jsonl_lone_surrogate_is_a_not_utf8_dead_letter(tmp_path):
    assert "\\ud83d" in LONE_SURROGATE_LINE  # the escape itself, not a surrogate in the test source
    path = _surrogate_corpus(tmp_path)
    with _pipeline() as p:
        out = p | ReadSourcePairs(str(path), ColumnMapping())
        assert_that(_collect(out.main, lambda r: r["source_row"]), equal_to([0, 2]), label="pairs")
        assert_that(
            _collect(out.rejected, lambda r: (r["source_row"], r["reason"], r["payload"].encode("utf-8") != b"")),
            equal_to([(1, "not_utf8", True)]), label="rejected")


def test_payload_json_of_a_lone_surrogate_encodes_as_utf8():
    from schemas.records import payload_json

    record = {"raw": {"instruction": "fix \ud83d", "k\udc00": ["\udfff"]}, "text": "a\ud83d" * 3000}
    text = payload_json(record)
    text.encode("utf-8")  # raises without the fix
    assert "\\ud83d" in text


def test_extract_job_writes_the_lone_surrogate_dead_letter(tmp_path):
    """Read -> extract -> Parquet: the job survives, the dead letter is on disk and the good rows are snippets."""
    from beam_pipelines.inverse_instruct import run
    from transforms.io.parquet import read_rows

    out = tmp_path / "out"
    run([f"--input={_surrogate_corpus(tmp_path)}", f"--output={out}", "--stages=extract"])
    dead = read_rows(str(out / "rejected"))
    assert [(d["stage"], d["reason"], d["source_row"]) for d in dead] == [("read", "not_utf8", 1)]
    assert sorted(s["source_row"] for s in read_rows(str(out / "snippets"))) == [0, 2]


def test_corpus_pairs_are_read_lazily_in_file_order_across_formats(tmp_path):
    """``corpus_pairs`` yields what the Beam readers keep (bad rows left out), and a caller that stops early
    reads no further: the compile choice samples the first records of a corpus of any size this way."""
    import itertools
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from transforms.io.readers import ColumnMapping, corpus_pairs

    first = tmp_path / "a.jsonl"
    first.write_text('{"instruction": "i0", "response": "r0"}\nnot json\n{"instruction": "i1", "response": "r1"}\n')
    second = tmp_path / "b.parquet"
    pq.write_table(pa.table({"instruction": [f"p{i}" for i in range(3000)],
                             "response": [f"s{i}" for i in range(3000)]}), second, row_group_size=1000)
    pairs = corpus_pairs([str(first), str(second)], ColumnMapping(), "auto")
    head = list(itertools.islice(pairs, 4))
    assert [(p["response"], p["source_row"]) for p in head] == [("r0", 0), ("r1", 2), ("s0", 0), ("s1", 1)]
    assert [p["response"] for p in corpus_pairs([str(second)], ColumnMapping(), "parquet")][-1] == "s2999"
    assert json.loads(json.dumps(head[0]))["source_uri"] == str(first)


def test_source_tree_pairs_skip_files_that_cannot_be_read(tmp_path):
    from transforms.io.readers import source_tree_pairs

    (tmp_path / "ok.py").write_text("def one():\n    return 1\n\n\ndef two():\n    return 2\n")
    (tmp_path / "binary.py").write_bytes(b"\xff\xfe\x00def x(): pass\n")
    pairs = list(source_tree_pairs([str(tmp_path / "missing.py"), str(tmp_path / "binary.py"),
                                    str(tmp_path / "ok.py")]))
    assert [p["response"].splitlines()[0] for p in pairs] == ["def one():", "def two():"]
