"""The training-shard stage and the generic atomic Parquet writer (transforms/shards.py, transforms/parquet_io.py)."""
from __future__ import annotations

import collections
import hashlib
import json
import os
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from schemas.records import METADATA_KIND_KEY, SCHEMAS, RecordKind, content_id
from transforms.io import parquet as parquet_io
from transforms.io.beam import WriteParquetShards, WriteTrainingShards
from transforms.io.options import ShardOptions
from transforms.io.parquet import sort_key, verify_shards, write_shards
from transforms.io.training_examples import (
    ExampleRejected,
    generated_example,
    original_example,
)

LANGS = ["python", "javascript", "rust", "go"]


def scored_pair(i: int) -> dict:
    lang = LANGS[i % len(LANGS)]
    code = f"def f{i}(x):\n    return x + {i}\n" + "# pad\n" * (i % 13)
    snippet_id = content_id(lang, code)
    return {
        "id": content_id("cand", snippet_id, 3),
        "snippet_id": snippet_id,
        "candidate_index": 3,
        "prefix": f"Write a {lang}",
        "instruction": f"Write a {lang} function number {i} that adds {i}.",
        "code": code,
        "language": lang,
        "original_instruction": f"original instruction {i}",
        "model": "tiny",
        "preset": "paper",
        "preset_hash": "abc",
        "seed": 1000 + i,
        "score": 0.5 + (i % 10) / 20,
        "scoring_mode": "exact",
        "source_uri": "mem://corpus.jsonl",
        "source_row": i,
        "stage": "select",
    }


def source_pair(i: int) -> dict:
    return {
        "id": content_id("src", i),
        "instruction": f"original instruction {i}",
        "response": f"Here is how.\n```python\ndef g{i}():\n    pass\n```\nIt works.",
        "source_uri": "mem://corpus.jsonl",
        "source_row": i,
        "stage": "read",
    }


def code_snippet(i: int) -> dict:
    code = f"def g{i}():\n    pass"
    return {
        "id": content_id("python", code),
        "source_id": content_id("src", i),
        "code": code,
        "language": "python",
        "fence_lang": "python",
        "original_instruction": f"original instruction {i}",
        "extraction_policy": "first_fence",
        "n_lines": 2,
        "n_chars": len(code),
        "source_uri": "mem://corpus.jsonl",
        "source_row": i,
        "stage": "extract",
    }


PAIRS = [scored_pair(i) for i in range(60)]
SNIPPETS = [code_snippet(i) for i in range(25)]
SOURCES = [source_pair(i) for i in range(25)]


def run_training_shards(out: Path, argv: list[str], *, pairs=PAIRS, snippets=SNIPPETS, sources=SOURCES,
                        multi_process: bool = False) -> dict:
    extra = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"] if multi_process else []
    options = PipelineOptions(argv + extra)
    with beam.Pipeline(runner="DirectRunner", options=options) as p:
        result = p | "Pairs" >> beam.Create(pairs) | WriteTrainingShards.from_options(
            str(out), options, run_seed=1234,
            original_snippets=p | "Snippets" >> beam.Create(snippets),
            source_pairs=p | "Sources" >> beam.Create(sources),
        )
        result["rejected"] | "Rejected" >> beam.Map(lambda r: json.dumps(r)) | beam.io.WriteToText(
            str(out / "rejected"), shard_name_template="")
    return result


def rows(directory: Path) -> list[dict]:
    index = verify_shards(str(directory))
    out = []
    for shard in index["shards"]:
        out += pq.read_table(directory / shard["path"]).to_pylist()
    return out


def file_digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


# --------------------------------------------------------------------------- pure logic


def test_generated_example_fences_the_code_with_its_language():
    example = generated_example(scored_pair(1))
    assert example["response"].startswith("```javascript\ndef f1(x):\n") and example["response"].endswith("\n```")
    assert example["messages"] == [
        {"role": "user", "content": "Write a javascript function number 1 that adds 1."},
        {"role": "assistant", "content": example["response"]},
    ]
    assert example["source"] == "generated" and example["snippet_id"] == scored_pair(1)["snippet_id"]
    assert json.loads(example["provenance"])["upstream_id"] == scored_pair(1)["id"]
    assert generated_example(scored_pair(1))["id"] == example["id"] != generated_example(scored_pair(2))["id"]


def test_original_example_response_modes():
    from_source = original_example(code_snippet(4), mode="source", source_response=source_pair(4)["response"])
    assert from_source["response"] == source_pair(4)["response"]
    from_code = original_example(code_snippet(4), mode="code")
    assert from_code["response"] == "```python\ndef g4():\n    pass\n```"
    assert from_source["instruction"] == from_code["instruction"] == "original instruction 4"
    assert from_source["source"] == "original"
    with pytest.raises(ExampleRejected) as missing:
        original_example(code_snippet(4), mode="source", source_response=None)
    assert missing.value.reason == "source_pair_missing"


def test_shard_options_parse_and_exclusive_bounds():
    opts = PipelineOptions(["--shard-records", "7", "--emit-original", "--shard-seed", "9"]).view_as(ShardOptions)
    assert (opts.shard_records, opts.shard_mb, opts.emit_original, opts.shard_seed) == (7, None, "kept", 9)
    with pytest.raises(ValueError):
        WriteParquetShards("/tmp/x", RecordKind.TRAINING_EXAMPLE, seed=1, shard_records=5, shard_mb=1.0)


# --------------------------------------------------------------------------- the Beam stage


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same input written twice (the second run on two worker processes, which also tests pickling)."""
    a = tmp_path_factory.mktemp("run_a")
    b = tmp_path_factory.mktemp("run_b")
    argv = ["--shard-records", "16", "--emit-original"]
    run_training_shards(a, argv)
    run_training_shards(b, argv, multi_process=True)
    return a, b


def test_shards_are_bounded_and_complete(two_runs):
    out, _ = two_runs
    index = json.loads((out / "generated" / "shards.json").read_text())
    assert [s["rows"] for s in index["shards"]] == [16, 16, 16, 12]
    assert [s["path"] for s in index["shards"]] == [f"part-0000{i}-of-00004.parquet" for i in range(4)]
    written = rows(out / "generated")
    assert sorted(r["snippet_id"] for r in written) == sorted(p["snippet_id"] for p in PAIRS)
    assert index["total_rows"] == 60 and index["record_kind"] == "training_example"


def test_content_and_order_are_deterministic_and_shuffled(two_runs):
    a, b = two_runs
    # 60 pairs in shards of 16 and 25 snippets in shards of 16, plus each shards.json.
    for name, n_files, n_rows in (("generated", 5, len(PAIRS)), ("original", 3, len(SNIPPETS))):
        digests = file_digests(a / name)
        assert len(digests) == n_files and len(rows(a / name)) == n_rows
        assert digests == file_digests(b / name)
    written = rows(a / "generated")
    ids = [r["id"] for r in written]
    assert ids == sorted(ids, key=lambda i: sort_key(i, 1234))
    assert ids != sorted(ids)  # shuffled, not id order
    assert [r["source_row"] for r in written] != sorted(r["source_row"] for r in written)


def test_index_digests_match_files(two_runs):
    out, _ = two_runs
    index = json.loads((out / "generated" / "shards.json").read_text())
    assert [s["rows"] for s in index["shards"]] == [16, 16, 16, 12]
    for shard in index["shards"]:
        data = (out / "generated" / shard["path"]).read_bytes()
        assert shard["sha256"] == hashlib.sha256(data).hexdigest() and shard["bytes"] == len(data)
        assert pq.ParquetFile(out / "generated" / shard["path"]).metadata.num_rows == shard["rows"]


def test_shards_carry_the_schema_and_its_metadata(two_runs):
    out, _ = two_runs
    shard = sorted((out / "generated").glob("part-*.parquet"))[0]
    schema = pq.read_schema(shard)
    assert schema.remove_metadata().equals(SCHEMAS[RecordKind.TRAINING_EXAMPLE].remove_metadata())
    assert schema.metadata[METADATA_KIND_KEY] == b"training_example"


def test_emit_original_joins_the_source_responses(two_runs):
    out, _ = two_runs
    originals = rows(out / "original")
    assert len(originals) == len(SNIPPETS)
    by_row = {r["source_row"]: r for r in originals}
    assert by_row[7]["response"] == source_pair(7)["response"]
    assert {r["source"] for r in originals} == {"original"}
    assert {r["source"] for r in rows(out / "generated")} == {"generated"}


def test_without_emit_original_only_generated_is_written(tmp_path):
    run_training_shards(tmp_path, ["--shard-records", "100"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["generated"]


def test_rejected_records_are_dead_lettered(tmp_path):
    bad_pair = dict(scored_pair(0), instruction="   ")
    orphan = dict(code_snippet(3), source_id="no-such-source")
    duplicate = dict(scored_pair(1), id="another-candidate-id", source_row=99)
    run_training_shards(tmp_path, ["--shard-records", "100", "--emit-original"],
                        pairs=[bad_pair, scored_pair(1), duplicate, scored_pair(2)],
                        snippets=[orphan, code_snippet(4)], sources=SOURCES)
    rejected = [json.loads(line) for line in (tmp_path / "rejected").read_text().splitlines()]
    assert sorted(r["reason"] for r in rejected) == ["duplicate_example", "empty_instruction", "source_pair_missing"]
    dup = next(r for r in rejected if r["reason"] == "duplicate_example")
    assert dup["source_row"] == 99  # the kept copy is the one from the earlier row
    assert len(rows(tmp_path / "generated")) == 2 and len(rows(tmp_path / "original")) == 1


def test_load_dataset_reads_the_shards(two_runs):
    import datasets
    out, _ = two_runs
    ds = datasets.load_dataset("parquet", data_files=str(out / "generated" / "*.parquet"), split="train")
    assert ds.num_rows == 60
    first = ds[0]
    assert first["messages"][0]["role"] == "user" and first["messages"][1]["content"] == first["response"]


# --------------------------------------------------------------------------- generic writer


def test_byte_bounded_shards(tmp_path):
    records = [generated_example(p) for p in PAIRS]
    index = write_shards(records, str(tmp_path), RecordKind.TRAINING_EXAMPLE, seed=5, shard_mb=1500 / 2**20)
    largest = max(parquet_io.record_nbytes(r) for r in records)
    assert len(index["shards"]) > 3
    for shard in index["shards"]:
        assert shard["payload_bytes"] < 1500 + largest
    assert sum(s["rows"] for s in index["shards"]) == len(records)


def test_beam_and_in_memory_writers_agree_byte_for_byte(tmp_path):
    records = [generated_example(p) for p in PAIRS]
    with beam.Pipeline(runner="DirectRunner") as p:
        _ = p | beam.Create(records) | WriteParquetShards(
            str(tmp_path / "beam"), RecordKind.TRAINING_EXAMPLE, seed=5, shard_mb=2000 / 2**20)
    write_shards(records, str(tmp_path / "mem"), RecordKind.TRAINING_EXAMPLE, seed=5, shard_mb=2000 / 2**20)
    assert file_digests(tmp_path / "beam") == file_digests(tmp_path / "mem")
    assert len(file_digests(tmp_path / "beam")) > 3


@pytest.mark.parametrize("seed", [None, 5])
def test_records_sharing_an_id_are_written_in_one_order_whatever_order_they_arrive_in(tmp_path, seed):
    """Two records with one id (a corpus row read twice, say) are ordered by their content too: the same records
    in two orders give byte-identical shards, from both writers."""
    records = [generated_example(p) for p in PAIRS[:6]]
    twins = [dict(records[0], source_row=row, source_uri=f"mem://copy-{row}.jsonl") for row in (70, 71, 72)]
    ordered = records + twins
    orders = {"forward": ordered, "backward": ordered[::-1], "twins_first": twins[::-1] + records}
    for name, order in orders.items():
        with beam.Pipeline(runner="DirectRunner") as p:
            _ = p | beam.Create(order, reshuffle=False) | WriteParquetShards(
                str(tmp_path / f"beam-{name}"), RecordKind.TRAINING_EXAMPLE, seed=seed, shard_records=2)
        write_shards(order, str(tmp_path / f"mem-{name}"), RecordKind.TRAINING_EXAMPLE, seed=seed, shard_records=2)
    expected = file_digests(tmp_path / "mem-forward")
    assert len(expected) == 6  # five shards of two rows or fewer, and the index
    for name in orders:
        assert file_digests(tmp_path / f"mem-{name}") == expected, name
        assert file_digests(tmp_path / f"beam-{name}") == expected, name


def test_empty_input_writes_one_empty_shard_that_readers_of_the_glob_read_as_zero_rows(tmp_path):
    with beam.Pipeline(runner="DirectRunner") as p:
        _ = p | beam.Create([]) | WriteParquetShards(str(tmp_path), RecordKind.REJECTED_RECORD, seed=None,
                                                     shard_records=10)
    index = json.loads((tmp_path / "shards.json").read_text())
    assert index["total_rows"] == 0 and [s["rows"] for s in index["shards"]] == [0]
    files = sorted(tmp_path.glob("*.parquet"))
    assert [f.name for f in files] == [index["shards"][0]["path"]]
    table = pq.read_table(files[0])
    assert table.num_rows == 0 and "reason" in table.schema.names  # the kind's schema, for HF datasets and pandas
    memory = tmp_path / "memory"
    index_in_memory = write_shards([], str(memory), RecordKind.REJECTED_RECORD, seed=None, shard_records=10)
    assert index_in_memory["shards"][0]["sha256"] == index["shards"][0]["sha256"]  # the in-memory twin agrees


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path):
    final = tmp_path / "part-00000-of-00001.parquet"
    final.write_bytes(b"previous complete shard")
    seen = []

    def body(sink):
        sink.write(b"PAR1 partial")
        seen.append(sorted(os.listdir(tmp_path)))
        raise OSError("disk full")

    with pytest.raises(OSError):
        parquet_io._atomic_write(str(final), body)
    temp_names = [n for n in seen[0] if n != final.name]
    assert len(temp_names) == 1 and temp_names[0].startswith(".")  # hidden, same directory
    assert final.read_bytes() == b"previous complete shard"  # never overwritten in place
    assert sorted(os.listdir(tmp_path)) == [final.name]  # the temp file is gone


def test_final_name_appears_only_complete(tmp_path):
    records = [generated_example(p) for p in PAIRS[:5]]
    target = tmp_path / "one.parquet"
    observed = []

    def body(sink):
        observed.append(target.exists())
        table = parquet_io.to_table(records, RecordKind.TRAINING_EXAMPLE)
        pq.write_table(table, sink)
        observed.append(target.exists())

    parquet_io._atomic_write(str(target), body)
    assert observed == [False, False] and pq.read_table(target).num_rows == 5


def test_verify_detects_a_corrupted_shard(tmp_path):
    write_shards([generated_example(p) for p in PAIRS], str(tmp_path), RecordKind.TRAINING_EXAMPLE, seed=1,
                 shard_records=30)
    verify_shards(str(tmp_path))
    shard = tmp_path / "part-00001-of-00002.parquet"
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match"):
        verify_shards(str(tmp_path))


def test_rewrite_with_fewer_shards_removes_stale_ones(tmp_path):
    records = [generated_example(p) for p in PAIRS]
    write_shards(records, str(tmp_path), RecordKind.TRAINING_EXAMPLE, seed=1, shard_records=10)
    write_shards(records, str(tmp_path), RecordKind.TRAINING_EXAMPLE, seed=1, shard_records=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "part-00000-of-00002.parquet", "part-00001-of-00002.parquet", "shards.json"]


def test_fsspec_memory_filesystem(tmp_path):
    import fsspec

    records = [generated_example(p) for p in PAIRS[:20]]
    index = write_shards(records, "memory://shards-test", RecordKind.TRAINING_EXAMPLE, seed=3, shard_records=8)
    assert [s["rows"] for s in index["shards"]] == [8, 8, 4]
    assert verify_shards("memory://shards-test")["total_rows"] == 20
    fsspec.filesystem("memory").rm("/shards-test", recursive=True)


def test_duplicate_examples_are_counted_and_dead_lettered_under_one_stage(tmp_path):
    """The live counters of the shards stage and its dead letters name the same stage (they said ``shards.dedup``
    and ``shards``), and the counters add up as the manifest does: in = out + rejected."""
    from apache_beam.metrics.metric import MetricsFilter

    from transforms.stage import NAMESPACE

    duplicate = dict(scored_pair(1), id="another-candidate-id", source_row=99)
    options = PipelineOptions(["--shard-records", "100"])
    pipeline = beam.Pipeline(runner="DirectRunner", options=options)
    shards = pipeline | beam.Create([scored_pair(1), duplicate, scored_pair(2)]) | WriteTrainingShards.from_options(
        str(tmp_path), options, run_seed=1234)
    shards["rejected"] | "Rejected" >> beam.Map(json.dumps) | beam.io.WriteToText(
        str(tmp_path / "rejected"), shard_name_template="")
    result = pipeline.run()
    result.wait_until_finish()
    counters = collections.Counter()
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        counters[counter.key.metric.name] += counter.committed  # summed over the steps that count a name
    [dead] = [json.loads(line) for line in (tmp_path / "rejected").read_text().splitlines()]
    assert (dead["stage"], dead["reason"], dead["source_row"]) == ("shards", "duplicate_example", 99)
    assert counters[f"{dead['stage']}.rejected.duplicate_example"] == 1
    assert not [name for name in counters if name.startswith("shards.dedup")]
    assert (counters["shards.in"], counters["shards.out"]) == (3, 2)
    assert len(rows(tmp_path / "generated")) == 2


@pytest.mark.parametrize("field, value", [("response", ["a", "list"]), ("response", 42), ("instruction", 42),
                                          ("instruction", {"a": 1})])
def test_an_original_pair_whose_text_is_not_text_is_rejected_as_not_text_not_as_empty(field, value):
    """A list, int or dict response was rejected as `empty_response` (a user probe: the detail was right, the code
    misleading)."""
    from transforms.io.training_examples import ExampleRejected, source_pair_example

    pair = {"id": "p", "instruction": "Add.", "response": "def add(a, b):\n    return a + b\n", field: value}
    with pytest.raises(ExampleRejected) as rejected:
        source_pair_example(pair)
    assert rejected.value.reason == "not_text", rejected.value
    assert rejected.value.detail == f"{field} is {type(value).__name__}, not text"
    with pytest.raises(ExampleRejected, match="empty"):  # an empty one is still empty
        source_pair_example({**pair, field: "  "})
