"""A re-run into a directory a finished run wrote, killed while its shards are written or finalized: a glob of
``<dir>/*.parquet`` (the README's ``load_dataset`` recipe) must never see shards of two runs side by side, the
previous complete set keeps its ``shards.json`` until the new set replaces it, and the next run completes.

(A probe, 2026-12-03: kill -9 of a re-run left ``scored/`` with the old ``part-0000{0,1}-of-00002.parquet`` next to
the new ``part-0000{0..3}-of-00004.parquet`` and no index: 16 rows, 12 distinct ids.)"""
from __future__ import annotations

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from schemas.records import RecordKind
from tests.transforms.io.test_packed_shuffles import snippet
from transforms.io import beam as io_beam
from transforms.io import parquet
from transforms.io.beam import WriteParquetShards
from transforms.io.parquet import INDEX_NAME, read_index, verify_shards, write_shards

OLD_IDS = range(4)  # 2 shards of 2
NEW_IDS = range(100, 108)  # 4 shards of 2


class Killed(RuntimeError):
    pass


def _write(out, ids):
    return write_shards([snippet(i) for i in ids], str(out), RecordKind.CODE_SNIPPET, seed=1, shard_records=2)


def _beam_write(out, ids):
    with beam.Pipeline(runner="DirectRunner") as p:
        _ = (p | beam.Create([snippet(i) for i in ids])
             | WriteParquetShards(str(out), RecordKind.CODE_SNIPPET, seed=1, shard_records=2))


def _ids(ids):
    return sorted(snippet(i)["id"] for i in ids)


def _visible(out):
    """What glob readers see: every ``*.parquet`` under ``out`` (recursively, hidden directories included),
    and the ids they hold."""
    files = sorted(out.rglob("*.parquet"))
    ids = sorted(r["id"] for f in files for r in pq.read_table(f, columns=["id"]).to_pylist())
    return files, ids


def _assert_previous_set_intact(out):
    files, ids = _visible(out)
    assert [f.name for f in files] == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    assert all(f.parent == out for f in files)
    assert ids == _ids(OLD_IDS)
    index = verify_shards(str(out))  # the previous index still vouches for exactly these files
    assert index["total_rows"] == len(OLD_IDS)
    assert sorted(out.glob("part-*")) == files


def _assert_new_set_complete(out):
    files, ids = _visible(out)
    index = verify_shards(str(out))
    assert [f.name for f in files] == [s["path"] for s in index["shards"]] == [
        f"part-{i:05d}-of-00004.parquet" for i in range(4)]
    assert ids == _ids(NEW_IDS) and index["total_rows"] == len(NEW_IDS)
    assert sorted(p.name for p in out.iterdir()) == [*(f.name for f in files), INDEX_NAME]  # no staging left


@pytest.fixture
def old_set(tmp_path):
    out = tmp_path / "scored"
    _write(out, OLD_IDS)
    _assert_previous_set_intact(out)
    return out


def _finalize_killed(monkeypatch, module):
    def killed(*args, **kwargs):
        raise Killed("kill -9 after the shards, before the index")

    monkeypatch.setattr(module, "finalize_index", killed)


def test_in_memory_rerun_killed_before_finalize_keeps_the_previous_set(old_set, monkeypatch):
    _finalize_killed(monkeypatch, parquet)
    with pytest.raises(Killed):
        _write(old_set, NEW_IDS)
    _assert_previous_set_intact(old_set)
    monkeypatch.undo()
    index = _write(old_set, NEW_IDS)
    assert read_index(str(old_set)) == index
    _assert_new_set_complete(old_set)


def test_beam_rerun_killed_before_finalize_keeps_the_previous_set(old_set, monkeypatch):
    _finalize_killed(monkeypatch, io_beam)
    with pytest.raises(Exception, match="kill -9"):
        _beam_write(old_set, NEW_IDS)
    _assert_previous_set_intact(old_set)
    monkeypatch.undo()
    _beam_write(old_set, NEW_IDS)
    _assert_new_set_complete(old_set)


def test_beam_rerun_killed_while_writing_shards_keeps_the_previous_set(old_set, monkeypatch):
    real, calls = io_beam.write_one_shard, []

    def writer(*args, **kwargs):
        calls.append(1)
        if len(calls) >= 3:
            raise Killed("worker lost after two shards")
        return real(*args, **kwargs)

    monkeypatch.setattr(io_beam, "write_one_shard", writer)
    with pytest.raises(Exception, match="worker lost"):
        _beam_write(old_set, NEW_IDS)
    _assert_previous_set_intact(old_set)
    monkeypatch.undo()
    _beam_write(old_set, NEW_IDS)
    _assert_new_set_complete(old_set)


@pytest.mark.parametrize("moves_before_kill", range(4))
def test_a_kill_inside_finalize_never_shows_two_runs(old_set, monkeypatch, moves_before_kill):
    """Killed after k of the 4 moves into place: at most a part of the new set, never beside the old shards, and
    no index vouching for it (the next run replaces it)."""
    real, moves = LocalFileSystem.mv, []

    def mv(self, path1, path2, *args, **kwargs):
        if str(path1).endswith(parquet.STAGED_SUFFIX):  # a staged shard moved into place (not a temp file)
            if len(moves) >= moves_before_kill:
                raise Killed("kill -9 inside finalize")
            moves.append(1)
        return real(self, path1, path2, *args, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "mv", mv)
    with pytest.raises(Killed):
        _write(old_set, NEW_IDS)
    files, ids = _visible(old_set)
    assert not (old_set / INDEX_NAME).exists()
    assert len(files) == moves_before_kill
    assert all(f.name.endswith("-of-00004.parquet") for f in files)
    assert set(ids) <= set(_ids(NEW_IDS)) and len(set(ids)) == len(ids)
    monkeypatch.undo()
    _write(old_set, NEW_IDS)
    _assert_new_set_complete(old_set)


def test_a_rerun_with_no_records_replaces_the_previous_set(old_set):
    index = write_shards([], str(old_set), RecordKind.CODE_SNIPPET, seed=1, shard_records=2)
    files, ids = _visible(old_set)
    assert [f.name for f in files] == ["part-00000-of-00001.parquet"] == [s["path"] for s in index["shards"]]
    assert ids == [] and verify_shards(str(old_set))["total_rows"] == 0


def test_an_fsspec_url_is_staged_and_replaced_the_same_way(monkeypatch):
    """Object stores (here fsspec's memory file system): a move is a copy and a delete, so the final step is not
    atomic there, but the staged shards stay out of ``*.parquet`` globs and the previous set stays whole."""
    fs = fsspec.filesystem("memory")
    out, local = "memory://bucket/run/scored", "/bucket/run/scored"
    try:
        _write(out, OLD_IDS)
        old_index = read_index(out)
        _finalize_killed(monkeypatch, parquet)
        with pytest.raises(Killed):
            _write(out, NEW_IDS)
        assert sorted(fs.glob(f"{local}/*.parquet")) == [f"{local}/{s['path']}" for s in old_index["shards"]]
        staged = fs.find(f"{local}/.staging-part")  # the layout the module's docstring promises, spelled out
        assert staged and all(not p.endswith(".parquet") for p in staged), staged
        assert verify_shards(out) == old_index
        monkeypatch.undo()
        index = _write(out, NEW_IDS)
        assert sorted(fs.find(local)) == sorted([f"{local}/{s['path']}" for s in index["shards"]]
                                                + [f"{local}/{INDEX_NAME}"])
        assert verify_shards(out) == index and index["total_rows"] == len(NEW_IDS)
    finally:
        if fs.exists("/bucket"):
            fs.rm("/bucket", recursive=True)
