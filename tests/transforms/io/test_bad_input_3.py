"""Corpora a read-only probe found read wrong (probe D, 2026-12-03): a misspelled part of a comma-separated
``--input``, file names that are not UTF-8, dangling links and FIFOs in a source tree, ``DIR/**/*.jsonl`` missing
the top level, a later file of other columns, an empty column name, a Parquet file named ``.jsonl``, a
``string_view`` column, a tree of tests only, and hints that named the wrong extension or format. The corpora are
written with the standard library and pyarrow, not the readers."""
from __future__ import annotations

import json
import os
import threading

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.io.beam import ReadSourcePairs, ReadSourceTree, corpus_files
from transforms.io.readers import ColumnMapping, CorpusConfigError, detect_format, list_source_files

MAPPING = ColumnMapping(instruction="instruction", response="output")
CODE = "def add(a, b):\n    return a + b\n"


def _jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _pair(i: int = 0) -> dict:
    return {"instruction": f"task {i}", "output": f"def f{i}(a):\n    return a + {i}\n"}


def _parquet(path, columns: dict, types: dict | None = None) -> str:
    types = types or {}
    pq.write_table(pa.table({k: pa.array(v, types.get(k, pa.string())) for k, v in columns.items()}), path)
    return str(path)


# 1. every part of a comma-separated --input must match


def test_a_misspelled_part_of_a_comma_list_is_an_error_naming_it(tmp_path):
    good = _jsonl(tmp_path / "a.jsonl", [_pair()])
    with pytest.raises(CorpusConfigError, match=r"no file matches '.*typo\.jsonl' \(one of the 2 comma-separated"):
        corpus_files(f"{good},{tmp_path}/typo.jsonl", MAPPING)
    with pytest.raises(CorpusConfigError, match=r"no file matches '.*nothing-\*\.jsonl'"):
        corpus_files(f"{tmp_path}/nothing-*.jsonl, {good}", MAPPING)
    assert corpus_files(f"{good},{tmp_path}/*.jsonl", MAPPING) == [good]  # both match, the file read once


# 2. file names that are not UTF-8


def test_an_input_file_name_that_is_not_utf8_is_refused_naming_it(tmp_path):
    _jsonl(tmp_path / "ok.jsonl", [_pair()])
    bad = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"d\xe9ja.jsonl"))
    with open(bad, "w") as handle:
        handle.write(json.dumps(_pair(1)) + "\n")
    with pytest.raises(CorpusConfigError, match=r"d\\udce9ja\.jsonl' is not valid UTF-8 .*: rename it"):
        corpus_files(f"{tmp_path}/*.jsonl", MAPPING)


def test_a_source_file_whose_name_is_not_utf8_is_read_under_an_escaped_name(tmp_path):
    (tmp_path / "ok.py").write_text(CODE)
    with open(os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9.py"), "w") as handle:
        handle.write("def sub(a, b):\n    return a - b\n")
    with TestPipeline(runner="DirectRunner") as p:
        out = p | ReadSourceTree(str(tmp_path))
        assert_that(out.main | beam.Map(lambda r: r["source_uri"]),
                    equal_to([f"{tmp_path}/ok.py", f"{tmp_path}/caf\\xe9.py"]), label="kept")
        assert_that(out.rejected, equal_to([]), label="rejected")


# 3. what is not a regular file in a source tree


def test_a_dangling_link_and_a_fifo_are_left_out_of_a_source_tree(tmp_path):
    (tmp_path / "ok.py").write_text(CODE)
    os.symlink(tmp_path / "nowhere.py", tmp_path / "dangling.py")
    os.mkfifo(tmp_path / "pipe.py")
    os.symlink(tmp_path / "ok.py", tmp_path / "link.py")  # a link to a regular file is read
    assert list_source_files(str(tmp_path)) == [str(tmp_path / "link.py"), str(tmp_path / "ok.py")]


def test_the_warning_about_left_out_paths_is_printed_once_per_job(tmp_path, caplog):
    """The job's preflight check and its reader both list the tree: the warning came twice (a user probe)."""
    from beam_pipelines.inverse_instruct import main

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok.py").write_text(CODE)
    os.symlink(tmp_path / "nowhere.py", tree / "dangling.py")
    os.mkfifo(tree / "pipe.py")
    out = tmp_path / "out"
    assert main([f"--output={out}", f"--source-tree={tree}", "--stages=extract", "--quiet"]) == 0
    warnings = [r.getMessage() for r in caplog.records if "left out 2 paths that are not a regular file" in
                r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "/dangling.py'" in warnings[0] and "/pipe.py'" in warnings[0], warnings


def test_a_source_file_that_cannot_be_opened_is_a_dead_letter_not_a_failed_bundle(tmp_path):
    from transforms.io.beam import _ReadDefinitions, encode_path

    outputs = list(_ReadDefinitions().process(encode_path(str(tmp_path / "gone.py"))))
    assert len(outputs) == 1 and outputs[0].tag == "rejected"
    dead = outputs[0].value
    assert dead["reason"] == "unreadable" and "gone.py" in dead["detail"] and dead["source_uri"].endswith("gone.py")


def test_a_fifo_in_a_source_tree_does_not_hang_the_job(tmp_path):
    (tmp_path / "ok.py").write_text(CODE)
    os.mkfifo(tmp_path / "pipe.py")
    done = []

    def run():
        with TestPipeline(runner="DirectRunner") as p:
            out = p | ReadSourceTree(str(tmp_path))
            assert_that(out.main | beam.Map(lambda r: r["source_uri"]), equal_to([str(tmp_path / "ok.py")]))
        done.append(True)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(120)
    if not done:  # unblock the reader so the thread ends
        with open(tmp_path / "pipe.py", "w"):
            pass
    assert done


# 4. DIR/**/*.jsonl reads the top level too


def test_a_globstar_slash_matches_zero_directories_too(tmp_path):
    top = _jsonl(tmp_path / "top.jsonl", [_pair(0)])
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    sub = _jsonl(tmp_path / "sub" / "s.jsonl", [_pair(1)])
    deep = _jsonl(tmp_path / "sub" / "deeper" / "d.jsonl", [_pair(2)])
    assert corpus_files(f"{tmp_path}/**/*.jsonl", MAPPING) == sorted([top, sub, deep])
    assert corpus_files(f"{tmp_path}/sub/**/*.jsonl", MAPPING) == sorted([sub, deep])


# 5. every file's columns are checked before any work; the optional input column may be missing


def test_a_later_json_lines_file_of_other_columns_is_refused_naming_it(tmp_path):
    _jsonl(tmp_path / "a.jsonl", [_pair()])
    _jsonl(tmp_path / "b.jsonl", [{"problem": "x", "solution": CODE}])
    with pytest.raises(CorpusConfigError, match=r"'instruction' is missing from the first record of .*b\.jsonl"):
        corpus_files(f"{tmp_path}/*.jsonl", MAPPING)


def test_a_later_parquet_file_of_other_columns_is_refused_before_the_pipeline_runs(tmp_path):
    _parquet(tmp_path / "a.parquet", {"instruction": ["x"], "output": [CODE]})
    _parquet(tmp_path / "b.parquet", {"instruction": ["x"], "solution": [CODE]})
    with pytest.raises(CorpusConfigError, match=r"'output' is missing from .*b\.parquet"):
        corpus_files(f"{tmp_path}/*.parquet", MAPPING)


def test_a_first_record_without_the_optional_input_column_is_read(tmp_path):
    path = _jsonl(tmp_path / "alpaca.jsonl", [_pair(0), {**_pair(1), "input": "[1, 2]"}])
    mapping = ColumnMapping(instruction="instruction", response="output", input="input")
    assert corpus_files(path, mapping) == [path]
    with TestPipeline(runner="DirectRunner") as p:
        out = p | ReadSourcePairs(path, mapping)
        assert_that(out.main | beam.Map(lambda r: r["instruction"]), equal_to(["task 0", "task 1\n\n[1, 2]"]))


# 6. an empty column name


@pytest.mark.parametrize("field", ["instruction", "response", "input"])
def test_an_empty_column_name_is_refused(field):
    with pytest.raises(CorpusConfigError, match=rf"--{field}-column is empty"):
        ColumnMapping(**{"instruction": "instruction", "response": "output", field: ""})


# 7. a Parquet file named as JSON


@pytest.mark.parametrize("name", ["actually.jsonl", "actually.json"])
def test_a_parquet_file_named_as_json_is_refused_with_what_to_do(tmp_path, name):
    path = tmp_path / name
    _parquet(path, {"instruction": ["x"], "output": [CODE]})
    with pytest.raises(CorpusConfigError, match=r"is a Parquet file .* rename it to end in \.parquet or pass "
                                                r"--input-format parquet") as caught:
        corpus_files(str(path), MAPPING)
    assert str(path) in str(caught.value)


# 8. string_view and large_string columns


@pytest.mark.parametrize("kind", [pa.string_view(), pa.large_string()])
def test_a_string_view_or_large_string_parquet_column_is_a_string_column(tmp_path, kind):
    path = _parquet(tmp_path / "c.parquet", {"instruction": ["x", "y"], "output": [CODE, "def g():\n    pass\n"]},
                    {"instruction": kind, "output": kind})
    assert corpus_files(path, MAPPING) == [path]
    with TestPipeline(runner="DirectRunner") as p:
        out = p | ReadSourcePairs(path, MAPPING)
        assert_that(out.main | beam.Map(lambda r: r["instruction"]), equal_to(["x", "y"]))


# 9. a source tree of tests only


def test_a_tree_of_tests_only_says_how_many_test_files_were_left_out(tmp_path):
    (tmp_path / "tests" / "test").mkdir(parents=True)
    for name in ("tests/helpers.py", "tests/test_x.py", "tests/test/inner.py"):
        (tmp_path / name).write_text(CODE)
    from transforms.io.beam import source_tree_files

    with pytest.raises(CorpusConfigError, match=r"left out: 3 test files \(under test/, tests/"):
        source_tree_files(str(tmp_path))


# 11. hints


def test_a_directory_of_parquet_files_is_given_a_parquet_glob(tmp_path):
    _parquet(tmp_path / "a.parquet", {"instruction": ["x"], "output": [CODE]})
    with pytest.raises(CorpusConfigError, match=r"/\*\.parquet' \(its top level\) or '.*/\*\*\.parquet'"):
        corpus_files(str(tmp_path), MAPPING)


def test_a_name_of_no_known_format_says_which_formats_exist():
    with pytest.raises(CorpusConfigError, match=r"Parquet .* JSON Lines .* JSON array .*\(no CSV or plain text\)"):
        detect_format("data.csv")


# before run.json, through the command


@pytest.mark.parametrize("args, wanted", [
    (["--input", "{good},{tmp}/typo.jsonl"], "no file matches '{tmp}/typo.jsonl'"),
    (["--input", "{good}", "--response-column", ""], "--response-column is empty"),
    (["--input", "{tmp}/*.jsonl"], "first record of {tmp}/other.jsonl"),
])
def test_the_command_refuses_each_in_one_line_before_run_json(tmp_path, capsys, args, wanted):
    from beam_pipelines.inverse_instruct import main

    good = _jsonl(tmp_path / "good.jsonl", [_pair()])
    if "*" in args[1]:
        _jsonl(tmp_path / "other.jsonl", [{"problem": "x", "solution": CODE}])
    out = tmp_path / "out"
    args = [a.format(good=good, tmp=tmp_path) for a in args]
    code = main([f"--output={out}", "--engine=fake", "--stages=extract", "--instruction-column=instruction",
                 "--response-column=output", "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("inverse-instruct generate: error: ") and wanted.format(tmp=tmp_path) in err, err
    assert not (out / "run.json").exists()


@pytest.mark.parametrize("kind", ["jsonl", "json", "parquet", "two empty files"])
def test_a_corpus_that_holds_no_record_is_refused_before_any_work(tmp_path, kind):
    """An empty .jsonl or a zero-row Parquet file ran, exit 0, over nothing (a user probe), while an empty benchmark
    file is refused. A file of only bad lines holds records (dead letters) and still runs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from transforms.io.beam import corpus_files
    from transforms.io.readers import ColumnMapping

    if kind == "parquet":
        pq.write_table(pa.table({"instruction": pa.array([], pa.string()), "response": pa.array([], pa.string())}),
                       tmp_path / "c.parquet")
    elif kind == "json":
        (tmp_path / "c.json").write_text("[]")
    else:
        (tmp_path / "c.jsonl").write_text("\n\n" if kind == "jsonl" else "")
        if kind == "two empty files":
            (tmp_path / "d.jsonl").write_text("")
    with pytest.raises(CorpusConfigError, match="the corpus holds no record"):
        corpus_files(str(tmp_path / "*"), ColumnMapping(), "auto")
    (tmp_path / "e.jsonl").write_text("not json\n")  # one bad line: a record, read as a dead letter
    assert corpus_files(str(tmp_path / "*"), ColumnMapping(), "auto")
