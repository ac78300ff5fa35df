"""A rerun into an existing output directory: the old ``shards.json`` must never vouch for a mix of old and new
shards. New shards are staged out of sight until all are written, so a run killed partway leaves the previous
set whole, with its index (see also test_shard_atomicity.py)."""
from __future__ import annotations

import apache_beam as beam
import pytest

from schemas.records import RecordKind
from tests.transforms.io.test_packed_shuffles import snippet
from transforms.io import beam as io_beam
from transforms.io import parquet
from transforms.io.beam import WriteParquetShards
from transforms.io.parquet import INDEX_NAME, read_index, write_shards


class Killed(RuntimeError):
    pass


def _dies_on_second_shard(monkeypatch, module):
    real = module.write_one_shard
    calls = []

    def writer(*args, **kwargs):
        calls.append(1)
        if len(calls) >= 2:
            raise Killed("worker lost after the first shard")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "write_one_shard", writer)
    return calls


@pytest.fixture
def old_set(tmp_path):
    out = tmp_path / "out"
    index = write_shards([snippet(i) for i in range(10)], str(out), RecordKind.CODE_SNIPPET, seed=1,
                         shard_records=2)
    assert len(index["shards"]) == 5 and (out / INDEX_NAME).exists()
    return out


def _assert_old_set_whole(out, old_index):
    assert read_index(str(out)) == old_index and parquet.verify_shards(str(out)) == old_index
    assert sorted(p.name for p in out.glob("*.parquet")) == [s["path"] for s in old_index["shards"]]
    ids = sorted(r["id"] for r in parquet.read_rows(str(out), ["id"]))
    assert ids == sorted(snippet(i)["id"] for i in range(10))


def test_in_memory_rerun_killed_partway_leaves_the_old_set_whole(old_set, monkeypatch):
    old_index = read_index(str(old_set))
    calls = _dies_on_second_shard(monkeypatch, parquet)
    with pytest.raises(Killed):
        write_shards([snippet(i) for i in range(100, 110)], str(old_set), RecordKind.CODE_SNIPPET, seed=1,
                     shard_records=2)
    assert len(calls) == 2  # the first new shard was written (staged), under the name of an old one
    _assert_old_set_whole(old_set, old_index)


def test_beam_rerun_killed_partway_leaves_the_old_set_whole(old_set, monkeypatch):
    old_index = read_index(str(old_set))
    _dies_on_second_shard(monkeypatch, io_beam)
    with pytest.raises(Exception, match="worker lost"):
        with beam.Pipeline(runner="DirectRunner") as p:
            _ = (p | beam.Create([snippet(i) for i in range(100, 110)])
                 | WriteParquetShards(str(old_set), RecordKind.CODE_SNIPPET, seed=1, shard_records=2))
    _assert_old_set_whole(old_set, old_index)


def test_a_finished_rerun_writes_its_own_index(old_set):
    with beam.Pipeline(runner="DirectRunner") as p:
        _ = (p | beam.Create([snippet(i) for i in range(100, 106)])
             | WriteParquetShards(str(old_set), RecordKind.CODE_SNIPPET, seed=1, shard_records=2))
    index = parquet.verify_shards(str(old_set))
    assert index["total_rows"] == 6 and len(index["shards"]) == 3 and read_index(str(old_set)) == index
    assert sorted(p.name for p in old_set.glob("part-*.parquet")) == [s["path"] for s in index["shards"]]
