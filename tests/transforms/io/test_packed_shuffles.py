"""Records cross shuffles packed, Parquet shards are written one row group at a time, and the writer takes
several PCollections: same files as before, less memory."""
from __future__ import annotations

import hashlib
import io
import pickle
import random
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest

from schemas.records import RecordKind, content_id, rejected, to_table
from transforms.io.beam import WriteParquetShards
from transforms.io.packed import pack, unpack
from transforms.io.parquet import record_nbytes, sort_key, sort_key_bytes, write_records_atomic, write_shards


def snippet(i: int) -> dict:
    code = f"def function_{i}(values):\n    total = 0\n" + "".join(
        f"    total += values[{j}] * {i + j}  # step {j}\n" for j in range(i % 30)) + "    return total"
    return {
        "id": content_id("code_snippet", "python", code), "source_id": content_id("src", i), "code": code,
        "language": "python", "fence_lang": "python" if i % 2 else "", "original_instruction": f"task {i}",
        "extraction_policy": "multilang", "n_lines": code.count("\n") + 1, "n_chars": len(code),
        "source_uri": "mem://corpus.jsonl", "source_row": i, "stage": "extract",
    }


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.parquet"))}


def test_pack_round_trips_and_is_smaller_than_the_pickle():
    records = [snippet(i) for i in range(200)] + [
        {"raw": b"\xff\x00bytes", "none": None, "nested": {"a": [1, 2.5, "x"]}, "text": "\u00e9\u4e2d\ud83d\ude00"}]
    for record in records:
        assert unpack(pack(record)) == record
    packed = sum(len(pack(r)) for r in records[:200])
    pickled = sum(len(pickle.dumps(r)) for r in records[:200])
    assert packed < 0.7 * pickled


def test_sort_key_bytes_order_as_the_sort_keys():
    rng = random.Random(3)
    alphabet = "abc019\u00e9\u4e2d\U0001f600"
    ids = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(400)]
    ids += [content_id("x", i) for i in range(100)]
    assert len(set(ids)) > 300
    ids += ["a\x00", "a\x00b", "a", "a\x01", "\x00"]  # a NUL in an id still orders as the tuple does
    tiebreaks = [b"", b"\x00", b"\x01\x02", b"\xff" * 16]
    for seed in (None, 0, 7):
        keys = [sort_key(i, seed, rng.choice(tiebreaks)) for i in ids for _ in range(2)]
        assert sorted(keys) == sorted(keys, key=sort_key_bytes)
        assert len({sort_key_bytes(k) for k in keys}) == len(set(keys))


@pytest.mark.parametrize("n", [0, 1, 1024, 1025, 2500])
def test_streamed_shard_is_the_file_of_the_whole_table(tmp_path, n):
    records = [snippet(i) for i in range(n)]
    info = write_records_atomic(iter(records), str(tmp_path / "streamed.parquet"), RecordKind.CODE_SNIPPET,
                                extra_metadata={"inverse_instruct.shard": "0/1"})
    table = to_table(records, RecordKind.CODE_SNIPPET)
    meta = dict(table.schema.metadata or {})
    meta[b"inverse_instruct.shard"] = b"0/1"
    reference = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), reference, compression="zstd", row_group_size=1024)
    assert (tmp_path / "streamed.parquet").read_bytes() == reference.getvalue()
    assert info["rows"] == n and info["bytes"] == len(reference.getvalue())


def test_writer_of_several_pcollections_writes_the_files_of_their_union(tmp_path):
    snippets = [snippet(i) for i in range(300)]
    dead = [rejected(s, record_kind=RecordKind.CODE_SNIPPET, reason="duplicate", stage="dedup", detail="d")
            for s in snippets[:40]]
    dead += [rejected({"raw": f"line {i}"}, record_kind=RecordKind.SOURCE_PAIR, reason="bad_record",
                      stage="read", detail="x") for i in range(25)]
    assert len({r["id"] for r in dead}) == len(dead)
    with beam.Pipeline(runner="DirectRunner") as p:
        parts = (p | "A" >> beam.Create(dead[:40]), p | "B" >> beam.Create(dead[40:]))
        _ = parts | WriteParquetShards(str(tmp_path / "beam"), RecordKind.REJECTED_RECORD, seed=None,
                                       shard_records=16)
    write_shards(dead, str(tmp_path / "mem"), RecordKind.REJECTED_RECORD, seed=None, shard_records=16)
    assert digests(tmp_path / "beam") == digests(tmp_path / "mem")
    assert len(digests(tmp_path / "beam")) == 5  # 65 rows, 16 per file


def test_byte_bounded_shards_are_the_same_with_packed_shuffles(tmp_path):
    records = [snippet(i) for i in range(400)]
    with beam.Pipeline(runner="DirectRunner") as p:
        _ = p | beam.Create(records) | WriteParquetShards(str(tmp_path / "beam"), RecordKind.CODE_SNIPPET,
                                                          seed=11, shard_mb=40_000 / 2**20)
    write_shards(records, str(tmp_path / "mem"), RecordKind.CODE_SNIPPET, seed=11, shard_mb=40_000 / 2**20)
    assert digests(tmp_path / "beam") == digests(tmp_path / "mem")
    assert len(digests(tmp_path / "beam")) > 3


def test_payload_bytes_count_utf8_bytes_of_text_and_8_per_scalar():
    record = {"ascii": "abc", "accented": "\u00e9t\u00e9", "cjk": "\u4e2d", "emoji": "\U0001f600", "n": 5, "none": None,
              "list": ["ab", 1.5], "raw": b"\x00\x01", "lone": "\ud800"}
    assert record_nbytes(record) == 3 + 5 + 3 + 4 + 8 + 0 + (2 + 8) + 2 + 3
