"""Atomic, deterministic, bounded Parquet output for any record kind.

Pure functions (usable without Beam):
- ``sort_key(record_id, seed, tiebreak)``: the shuffle key, ``(blake2b64(seed, id), id, record_digest(record))``;
  ``seed=None`` orders by id. The record's digest orders records that share an id, so the bytes of every shard
  depend on the set of records only, never on the order they arrived in.
- ``write_table_atomic(table, path)`` / ``write_records_atomic(records, path, kind)``: write one Parquet file
  under a hidden temp name in the same directory, then rename it to ``path``; returns a ``ShardInfo`` dict
  (``path``, ``rows``, ``bytes``, ``sha256``) whose digest is computed while writing.
- ``write_shards(records, output_dir, kind, ...)``: the in-memory twin of ``WriteParquetShards`` (same files,
  byte for byte), for small outputs and tests.
- ``write_sorted_shards(records, total, output_dir, kind, ...)``: the same files again, streamed, for records that
  arrive already in row order (one row group in memory at a time).
- ``write_index_atomic`` / ``read_index`` / ``verify_shards`` / ``remove_index``: the ``shards.json`` index.
- ``staging_dir`` / ``staged_shard_path`` / ``clear_staging`` / ``finalize_index``: shards are staged out of
  readers' sight and moved into place, replacing the previous set, only once all of them are written.

Beam (``transforms.io.beam``): ``WriteParquetShards(output_dir, kind, seed=..., shard_records=... | shard_mb=...)``
consumes a PCollection of dicts and outputs one element, the index dict, after ``shards.json`` is written.

Shard assignment (deterministic, bounded, scalable): every record gets the key ``sort_key(id, seed, digest)``. The
top ``BUCKET_BITS`` bits of the hash split the key space into ordered buckets; one pass counts rows and bytes
per bucket, and a prefix sum over buckets gives each bucket its global row and byte offset. Each bucket is then
sorted on its own, so every record learns its exact global rank (and byte offset) without a global sort on one
worker, and lands in shard ``rank // shard_records`` (or ``byte_offset // shard_bytes``). A shard holds at most
``shard_records`` rows, or fewer than ``shard_bytes`` + one record of payload bytes (payload = UTF-8 bytes of
the values, see ``record_nbytes``; the compressed file is normally much smaller). Only one shard's rows are ever
held in memory together, plus one bucket's (about n / 4096 records) during ranking.

Atomicity: a file only ever appears under its final name by rename (local: ``os.replace``; object stores:
a completed upload/copy is atomic per object). Temp names start with ``.`` so readers that skip hidden files
(``datasets``, Spark, pyarrow datasets) never see them. Shards are written to a hidden staging directory
``<dir>/.staging-<prefix>/`` under names ending ``.parquet.staged`` (``staged_shard_path``), which no glob of
``<dir>/*.parquet``, ``<dir>/part-*`` or ``<dir>/**/*.parquet`` matches, so the previous run's complete set and
its ``shards.json`` stay untouched, and readable, while a re-run writes (a kill then leaves them intact). Rewriting
the same shard (a retried bundle) writes identical bytes under the same staged name. ``finalize_index`` then
removes the previous ``shards.json``, every previous shard of this prefix (those of another shard count are logged
as stale), moves the staged shards to their final names, writes ``shards.json`` last (its presence means the set
is complete) and removes the staging directory. Only a kill inside that short final step leaves a part of the new
set without ``shards.json`` (never shards of two runs side by side); the next run replaces it. On object stores
a move is a copy and a delete: correct, but the final step is longer and not atomic.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import posixpath
import re
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.records import SCHEMA_VERSION, SCHEMAS, RecordKind, conform, to_table  # noqa: F401 (to_table: callers use it from here)
from transforms.io.arrow_input import parquet_input
from transforms.io.filesystems import atomic_write

LOG = logging.getLogger(__name__)

INDEX_NAME = "shards.json"
STAGED_SUFFIX = ".staged"  # a staged shard's name: <final name>.staged, so "*.parquet" never matches it
INDEX_FORMAT = "inverse_instruct.shards/v1"
BUCKET_BITS = 12  # 4096 ordered hash buckets for ranking
DEFAULT_COMPRESSION = "zstd"
DEFAULT_ROW_GROUP_SIZE = 1024
METADATA_SHARD_KEY = b"inverse_instruct.shard"

SortKey = tuple[int, str, bytes]  # (hash, id, record digest): see sort_key
ShardInfo = dict  # {"index", "path", "rows", "bytes", "sha256", "payload_bytes"}


# --------------------------------------------------------------------------- ordering


def record_digest(record: Any) -> bytes:
    """16 bytes of blake2b over the record's canonical JSON (sorted keys, every value in full): the last tiebreak
    of the row order, so records sharing an id are written in one order whatever order they arrived in."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def sort_key(record_id: str, seed: int | None, tiebreak: bytes = b"") -> SortKey:
    """Deterministic shuffle key ``(hash, id, tiebreak)``. The id breaks (astronomically rare) hash ties, and
    ``tiebreak`` (``record_digest``, given by the writers) orders records that share an id, so the order is total
    over records, not only over ids."""
    if seed is None:
        return (0, record_id, tiebreak)
    h = hashlib.blake2b(digest_size=8)
    h.update(str(int(seed)).encode())
    h.update(b"\x00")
    h.update(record_id.encode("utf-8", "surrogatepass"))
    return (int.from_bytes(h.digest(), "big"), record_id, tiebreak)


def sort_key_bytes(key: SortKey) -> bytes:
    """``key`` as bytes that sort as the key does: the hash as 8 big-endian bytes, the id in UTF-8 (whose byte order
    is code point order) with each NUL written as NUL 0xff and ended by two NULs (so a shorter id sorts first, as in
    the tuple), then the tiebreak. Compact for shuffles: one bytes object instead of a tuple."""
    record_id = key[1].encode("utf-8", "surrogatepass").replace(b"\x00", b"\x00\xff")
    return key[0].to_bytes(8, "big") + record_id + b"\x00\x00" + key[2]


def bucket_of(key: SortKey, seed: int | None) -> int:
    """Ordered bucket of a sort key: buckets cover increasing key ranges."""
    if seed is None:  # ordering by id: bucket by the first id bytes so buckets stay ordered
        first = key[1].encode("utf-8", "surrogatepass")[:2].ljust(2, b"\x00")
        return int.from_bytes(first, "big") >> (16 - BUCKET_BITS)
    return key[0] >> (64 - BUCKET_BITS)


def record_nbytes(value: Any) -> int:
    """Payload size used for byte-bounded shards: UTF-8 bytes of strings, 8 per scalar, recursively."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, Mapping):
        return sum(record_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(record_nbytes(v) for v in value)
    return 8


def shard_name(prefix: str, index: int, count: int) -> str:
    return f"{prefix}-{index:05d}-of-{count:05d}.parquet"


def _shard_name_pattern(prefix: str) -> re.Pattern:
    return re.compile(re.escape(prefix) + r"-(\d{5,})-of-(\d{5,})\.parquet$")


def check_bounds(shard_records: int | None, shard_mb: float | None) -> None:
    if (shard_records is None) == (shard_mb is None):
        raise ValueError("give exactly one of shard_records or shard_mb")
    if shard_records is not None and shard_records <= 0:
        raise ValueError(f"shard_records must be positive, got {shard_records}")
    if shard_mb is not None and shard_mb <= 0:
        raise ValueError(f"shard_mb must be positive, got {shard_mb}")


def bytes_per_shard(shard_mb: float) -> int:
    return max(1, int(shard_mb * 1024 * 1024))


# --------------------------------------------------------------------------- atomic files


class _HashingSink(io.RawIOBase):
    """Counts and hashes bytes on their way to the real file, so the digest costs no re-read."""

    def __init__(self, raw):
        super().__init__()
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.nbytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self.sha256.update(data)
        self.nbytes += len(data)
        self._raw.write(data)
        return len(data)

    def tell(self) -> int:
        return self.nbytes


def _fs_and_path(path: str):
    fs, local = fsspec.core.url_to_fs(path)
    return fs, local


def _atomic_write(path: str, write_body) -> tuple[int, str]:
    """``filesystems.atomic_write`` through a hashing sink: (bytes written, sha256)."""
    sinks = []

    def body(raw):
        sinks.append(_HashingSink(raw))
        write_body(sinks[0])

    atomic_write(path, body)
    return sinks[0].nbytes, sinks[0].sha256.hexdigest()


def write_table_atomic(
    table: pa.Table,
    path: str,
    *,
    compression: str = DEFAULT_COMPRESSION,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
) -> ShardInfo:
    """Write ``table`` as one Parquet file at ``path`` (any fsspec URL), atomically. Keeps schema metadata."""

    def body(sink):
        pq.write_table(table, sink, compression=compression, row_group_size=row_group_size)

    nbytes, digest = _atomic_write(path, body)
    return {"path": path, "rows": table.num_rows, "bytes": nbytes, "sha256": digest}


def write_records_atomic(
    records: Iterable[Mapping[str, Any]],
    path: str,
    kind: RecordKind | str,
    *,
    extra_metadata: Mapping[str, str] | None = None,
    compression: str = DEFAULT_COMPRESSION,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
) -> ShardInfo:
    """Conform ``records`` to ``SCHEMAS[kind]`` (metadata included) and write them atomically, in order.

    Streams: one row group of records is converted and written at a time, so a shard of any size costs the
    memory of one row group (the file is the one ``write_table_atomic`` writes for the whole table)."""
    schema = SCHEMAS[RecordKind(kind)]
    if extra_metadata:
        meta = dict(schema.metadata or {})
        meta.update({k.encode(): v.encode() for k, v in extra_metadata.items()})
        schema = schema.with_metadata(meta)
    rows = iter(records)
    first = list(itertools.islice(rows, row_group_size))
    if not first:  # no row group at all: as write_table writes an empty table
        return write_table_atomic(schema.empty_table(), path, compression=compression, row_group_size=row_group_size)
    count = 0

    def body(sink):
        nonlocal count, first
        with pq.ParquetWriter(sink, schema, compression=compression) as writer:
            chunk, first = first, None  # one row group held at a time: neither the first nor the last kept
            while chunk:
                writer.write_table(pa.Table.from_pylist([conform(r, kind) for r in chunk], schema=schema),
                                   row_group_size=row_group_size)
                count += len(chunk)
                chunk = None  # freed before the next is read, so two row groups are never held
                chunk = list(itertools.islice(rows, row_group_size))

    nbytes, digest = _atomic_write(path, body)
    return {"path": path, "rows": count, "bytes": nbytes, "sha256": digest}


def write_index_atomic(path: str, index: Mapping[str, Any]) -> None:
    text = json.dumps(index, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    _atomic_write(path, lambda sink: sink.write(text.encode("utf-8")))


def read_index(output_dir: str) -> dict[str, Any]:
    fs, local = _fs_and_path(output_dir)
    with fs.open(posixpath.join(local, INDEX_NAME), "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def shard_urls(output_dir: str, index: Mapping[str, Any] | None = None) -> list[str]:
    """Full URLs of the shards listed in the index, in shard order."""
    index = index if index is not None else read_index(output_dir)
    base = output_dir.rstrip("/")
    return [f"{base}/{s['path']}" for s in index["shards"]]


def read_rows(output_dir: str, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every row of an output directory's shards, in shard order (for launchers reading small outputs back)."""
    rows: list[dict[str, Any]] = []
    for url in shard_urls(output_dir):
        rows.extend(read_shard_rows(url, columns))
    return rows


def iter_rows(output_dir: str, columns: Sequence[str] | None = None, batch_size: int = 256
              ) -> Iterator[dict[str, Any]]:
    """Every row of an output directory's shards, in shard order, ``batch_size`` rows read at a time (for outputs
    too large to hold)."""
    from transforms.io.filesystems import open_seekable

    for url in shard_urls(output_dir):
        with parquet_input(url, open_seekable) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_size, use_threads=False,
                                                             columns=list(columns) if columns else None):
                yield from batch.to_pylist()


def read_shard_rows(url: str, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of one shard file."""
    from transforms.io.filesystems import open_seekable

    with parquet_input(url, open_seekable) as handle:
        # ParquetFile, use_threads=False, never pq.read_table: else an abort at exit (transforms.io.arrow_input)
        return pq.ParquetFile(handle).read(columns=list(columns) if columns else None,
                                           use_threads=False).to_pylist()


def verify_shards(output_dir: str) -> dict[str, Any]:
    """Re-hash every shard listed in ``shards.json``; raise ``ValueError`` on any mismatch. Returns the index."""
    index = read_index(output_dir)
    for shard, url in zip(index["shards"], shard_urls(output_dir, index)):
        fs, local = _fs_and_path(url)
        h = hashlib.sha256()
        n = 0
        with fs.open(local, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                n += len(block)
        if n != shard["bytes"] or h.hexdigest() != shard["sha256"]:
            raise ValueError(f"shard {shard['path']} does not match {INDEX_NAME}")
        with parquet_input(url) as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        if rows != shard["rows"]:
            raise ValueError(f"shard {shard['path']} has {rows} rows, index says {shard['rows']}")
    return index


# --------------------------------------------------------------------------- planning


def plan_from_bucket_stats(
    bucket_stats: Iterable[tuple[int, int, int]],
) -> dict[str, Any]:
    """Prefix sums over ordered buckets: ``{"offsets": {bucket: (row_offset, byte_offset)}, totals}``."""
    offsets = {}
    rows = nbytes = 0
    for bucket, count, size in sorted(bucket_stats):
        offsets[bucket] = (rows, nbytes)
        rows += count
        nbytes += size
    return {"offsets": offsets, "total_rows": rows, "total_payload_bytes": nbytes}


def assign_in_bucket(
    items: Iterable[tuple[SortKey, int, Any]],
    row_offset: int,
    byte_offset: int,
    *,
    shard_records: int | None,
    shard_bytes: int | None,
) -> list[tuple[int, tuple[SortKey, int, Any]]]:
    """Sort one bucket's ``(key, nbytes, record)`` items and give each its provisional shard number."""
    out = []
    rank, start = row_offset, byte_offset
    for item in sorted(items, key=lambda it: it[0]):
        shard = rank // shard_records if shard_records is not None else start // shard_bytes
        out.append((shard, item))
        rank += 1
        start += item[1]
    return out


def build_index(
    infos: Iterable[ShardInfo],
    *,
    kind: RecordKind | str,
    seed: int | None,
    shard_records: int | None,
    shard_mb: float | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    shards = sorted(infos, key=lambda s: s["index"])
    index = {
        "format": INDEX_FORMAT,
        "record_kind": RecordKind(kind).value,
        "schema_version": SCHEMA_VERSION,
        "order": "sort_key(id, seed)" if seed is not None else "id",
        "seed": seed,
        "shard_records": shard_records,
        "shard_mb": shard_mb,
        "total_rows": sum(s["rows"] for s in shards),
        "total_bytes": sum(s["bytes"] for s in shards),
        "shards": shards,
    }
    if extra:
        index.update(dict(extra))
    return index


def write_one_shard(
    output_dir: str,
    prefix: str,
    index: int,
    count: int,
    items: Sequence[tuple[SortKey, int, Any]],
    kind: RecordKind | str,
    compression: str,
    unpack: Callable[[Any], Mapping[str, Any]] | None = None,
) -> ShardInfo:
    """Write one shard's ``(key, nbytes, record)`` items in key order, to its staged path (``staged_shard_path``:
    invisible to readers until ``finalize_index`` moves it into place); ``unpack`` turns each item's third
    element into its record (packed records are unpacked one row group at a time). ``path`` in the returned info
    is the shard's final name."""
    items = sorted(items, key=lambda it: it[0])
    name = shard_name(prefix, index, count)
    info = write_records_atomic(
        (unpack(it[2]) if unpack else it[2] for it in items),
        staged_shard_path(output_dir, prefix, name),
        kind,
        extra_metadata={METADATA_SHARD_KEY.decode(): f"{index}/{count}"},
        compression=compression,
    )
    info["path"] = name
    info["index"] = index
    info["payload_bytes"] = sum(it[1] for it in items)
    return info


def staging_dir(output_dir: str, prefix: str) -> str:
    """``<output_dir>/.staging-<prefix>``: where this prefix's shards are written before ``finalize_index``."""
    return f"{output_dir.rstrip('/')}/.staging-{prefix}"


def staged_shard_path(output_dir: str, prefix: str, name: str) -> str:
    """Where shard ``name`` is written before it is moved to ``<output_dir>/<name>``."""
    return f"{staging_dir(output_dir, prefix)}/{name}{STAGED_SUFFIX}"


def clear_staging(output_dir: str, prefix: str) -> bool:
    """Remove the staging directory of ``prefix`` (what a killed run left there), before a run writes any shard.
    The previous run's shards and ``shards.json`` are left alone: they stay a complete set until
    ``finalize_index`` replaces them. Returns whether there was something to remove."""
    fs, local = _fs_and_path(staging_dir(output_dir, prefix))
    if not fs.exists(local):
        return False
    fs.rm(local, recursive=True)
    LOG.info("removed %s, left by an unfinished run", staging_dir(output_dir, prefix))
    return True


def remove_stale_shards(output_dir: str, prefix: str, keep: Iterable[str]) -> list[str]:
    """Delete ``prefix-NNNNN-of-MMMMM.parquet`` files not in ``keep`` (left by an earlier run)."""
    fs, local = _fs_and_path(output_dir)
    keep = set(keep)
    pattern = _shard_name_pattern(prefix)
    removed = []
    fs.invalidate_cache(local)  # an object store's cached listing may predate this run's moves
    if not fs.exists(local):
        return removed
    for entry in fs.ls(local, detail=False):
        name = posixpath.basename(entry.rstrip("/"))
        if pattern.match(name) and name not in keep:
            fs.rm(entry)
            removed.append(name)
    if removed:
        LOG.warning("removed %d stale shard(s) from %s: %s", len(removed), output_dir, removed[:5])
    return removed


def remove_index(output_dir: str) -> None:
    """Delete ``output_dir/shards.json`` if present. ``finalize_index`` calls it before it removes or replaces
    any shard of the previous set: an old index next to a half-replaced set would claim a mix of runs is
    complete."""
    fs, local = _fs_and_path(output_dir)
    path = posixpath.join(local, INDEX_NAME)
    if fs.exists(path):
        fs.rm(path)
        LOG.info("removed the old %s of %s before rewriting its shards", INDEX_NAME, output_dir)


def finalize_index(output_dir: str, index: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Put the staged shards of ``index`` in place of the previous set and write ``shards.json`` last.

    Order: the previous ``shards.json`` is removed, then every previous shard of ``prefix`` (those not reused by
    name are reported as stale by ``remove_stale_shards``), then each staged shard is moved to its final name,
    then ``shards.json`` is written and the staging directory removed. So ``<dir>/*.parquet`` never holds shards
    of two runs: before this call it is the previous complete set (with its index), after it the new one."""
    fs, local = _fs_and_path(output_dir)
    fs.makedirs(local, exist_ok=True)
    if not index["shards"]:
        # One empty shard with the schema: a reader of ``DIR/*.parquet`` (datasets, pandas) gets zero rows, not
        # "no data files" (a probe, 2026-12-03: a run with no rejected record left rejected/ without any).
        empty = write_one_shard(output_dir, prefix, 0, 1, [], index["record_kind"], DEFAULT_COMPRESSION)
        index = {**index, "shards": [empty], "total_bytes": empty["bytes"]}
    names = [s["path"] for s in index["shards"]]
    staged = {name: _fs_and_path(staged_shard_path(output_dir, prefix, name))[1] for name in names}
    missing = [name for name, path in staged.items() if not fs.exists(path)]
    if missing:  # before anything of the previous set is touched
        raise FileNotFoundError(f"staged shard(s) missing from {staging_dir(output_dir, prefix)}: {missing[:5]}")
    remove_index(output_dir)
    remove_stale_shards(output_dir, prefix, names)
    for name in names:  # the previous run's shards of the same names: gone before any new one is in place
        path = posixpath.join(local, name)
        if fs.exists(path):
            fs.rm(path)
    for name in names:
        fs.mv(staged[name], posixpath.join(local, name))
    write_index_atomic(f"{output_dir.rstrip('/')}/{INDEX_NAME}", index)
    staging = _fs_and_path(staging_dir(output_dir, prefix))[1]
    if fs.exists(staging):  # empty now, but for temp files of retried writes
        fs.rm(staging, recursive=True)
    return dict(index)


def write_shards(
    records: Iterable[Mapping[str, Any]],
    output_dir: str,
    kind: RecordKind | str,
    *,
    seed: int | None,
    shard_records: int | None = None,
    shard_mb: float | None = None,
    prefix: str = "part",
    compression: str = DEFAULT_COMPRESSION,
    index_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """In-memory twin of ``WriteParquetShards``: identical shard files and index for the same input."""
    check_bounds(shard_records, shard_mb)
    clear_staging(output_dir, prefix)
    buckets: dict[int, list] = {}
    for record in records:
        key = sort_key(record["id"], seed, record_digest(record))
        buckets.setdefault(bucket_of(key, seed), []).append((key, record_nbytes(record), record))
    plan = plan_from_bucket_stats((b, len(v), sum(it[1] for it in v)) for b, v in buckets.items())
    by_shard: dict[int, list] = {}
    for b, items in buckets.items():
        row_off, byte_off = plan["offsets"][b]
        for shard, item in assign_in_bucket(
            items, row_off, byte_off,
            shard_records=shard_records, shard_bytes=None if shard_mb is None else bytes_per_shard(shard_mb),
        ):
            by_shard.setdefault(shard, []).append(item)
    order = sorted(by_shard)
    infos = [
        write_one_shard(output_dir, prefix, i, len(order), by_shard[s], kind, compression)
        for i, s in enumerate(order)
    ]
    index = build_index(infos, kind=kind, seed=seed, shard_records=shard_records, shard_mb=shard_mb,
                        extra=index_extra)
    return finalize_index(output_dir, index, prefix)


def write_sorted_shards(
    records: Iterable[Mapping[str, Any]],
    total: int,
    output_dir: str,
    kind: RecordKind | str,
    *,
    seed: int | None,
    shard_records: int,
    prefix: str = "part",
    compression: str = DEFAULT_COMPRESSION,
    index_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Streaming twin of ``write_shards`` with ``shard_records``: the same files and index, byte for byte, for
    ``total`` records that arrive already in ``sort_key(id, seed, record_digest)`` order (an out-of-core sort
    made them so). Holds one row group of records at a time, whatever ``total``. ``ValueError`` when the records
    are out of that order or not ``total`` in number (nothing of the previous set is replaced then)."""
    check_bounds(shard_records, None)
    if shard_records is None or total < 0:
        raise ValueError("write_sorted_shards needs shard_records and a total of at least 0")
    clear_staging(output_dir, prefix)
    rows = iter(records)
    count = -(-total // shard_records)  # ranks 0..total-1 fill shards 0..count-1, each but the last full
    previous: list = []  # the last record's (key, record), to check the order

    def in_order(record: Mapping[str, Any]) -> None:
        key = sort_key(record["id"], seed)
        if previous:
            last_key, last = previous
            if key[:2] < last_key[:2] or (key[:2] == last_key[:2] and record_digest(record) < record_digest(last)):
                raise ValueError(f"records out of sort_key order: {record['id']!r} after {last['id']!r}")
        previous[:] = [key, record]

    def shard_rows(payload: list[int]) -> Iterable[Mapping[str, Any]]:
        for record in itertools.islice(rows, shard_records):
            in_order(record)
            payload[0] += record_nbytes(record)
            yield record

    infos = []
    for index in range(count):
        payload = [0]
        name = shard_name(prefix, index, count)
        info = write_records_atomic(shard_rows(payload), staged_shard_path(output_dir, prefix, name), kind,
                                    extra_metadata={METADATA_SHARD_KEY.decode(): f"{index}/{count}"},
                                    compression=compression)
        if info["rows"] != min(shard_records, total - index * shard_records):
            raise ValueError(f"write_sorted_shards was promised {total} records but got fewer")
        info["path"] = name
        info["index"] = index
        info["payload_bytes"] = payload[0]
        infos.append(info)
    if next(rows, None) is not None:
        raise ValueError(f"write_sorted_shards was promised {total} records but got more")
    index_ = build_index(infos, kind=kind, seed=seed, shard_records=shard_records, shard_mb=None, extra=index_extra)
    return finalize_index(output_dir, index_, prefix)
