"""Beam glue of the io package: corpus readers, ``--limit`` sampling, and the Parquet and training-shard writers.

Readers return a ``StageOutput`` (SOURCE_PAIR records and dead letters of the ``read`` stage). Parquet is read
one row group at a time after a reshuffle (``ReadFromParquet`` cannot tell which row a record came from, and the
row is part of provenance). ``WriteParquetShards`` writes any record kind as bounded, deterministic shards with
a ``shards.json`` index (``transforms.io.parquet``); ``WriteTrainingShards`` turns selected pairs (and the
original pairs) into training examples (``transforms.io.training_examples``) and writes them.
"""
from __future__ import annotations

import collections
import logging
import os
import posixpath
import re
from typing import Any, Callable, Iterator, Mapping

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from schemas.records import RecordKind
from transforms.io import filesystems
from transforms.io.options import ShardOptions, shard_bounds, spill_dir
from transforms.io.parquet import (
    DEFAULT_COMPRESSION,
    assign_in_bucket,
    bucket_of,
    build_index,
    bytes_per_shard,
    check_bounds,
    clear_staging,
    finalize_index,
    plan_from_bucket_stats,
    record_digest,
    record_nbytes,
    sort_key,
    sort_key_bytes,
    write_one_shard,
)
from transforms.io.readers import (
    READ_STAGE,
    TEST_RULE,
    ColumnMapping,
    CorpusConfigError,
    check_parquet_columns,
    default_source_root,
    detect_format,
    input_problem,
    iter_json_rows,
    make_source_pair,
    open_parquet,
    parquet_rows,
    short_text,
    source_file_pairs,
    source_tree_listing,
    validate_files,
)
from transforms.io.source_tree import UndecodableSource
from transforms.io.spill import RecordFetch, RecordStash, new_spill_dir, remove_spill_dir
from transforms.io.training_examples import (
    DEFAULT_SHARD_MB,
    EMIT_ORIGINAL_MODES,
    GENERATED,
    ORIGINAL,
    ORIGINAL_RESPONSE_MODES,
    SHARDS_STAGE,
    ExampleRejected,
    generated_example,
    original_example,
    pick_duplicate,
    source_pair_example,
)
from transforms.stage import REJECTED, Reject, StageBooks, StageFn, StageOutput, flatten
from transforms.stats.progress import WRITER_PREFIX

LOG = logging.getLogger(__name__)

# --------------------------------------------------------------------------- readers

def corpus_files(pattern: str, mapping: ColumnMapping, input_format: str = "auto") -> list[str]:
    """The files ``pattern`` (paths or globs, comma-separated) matches, each checked (``validate_files``);
    ``CorpusConfigError`` when a part of it matches nothing, a file's name is not UTF-8 or a file shows a
    configuration error. The launcher calls it before any work (``check_corpus_options``), the reader when the
    pipeline is built."""
    files = matched_corpus_files(pattern)
    validate_files(files, mapping, input_format)
    return files


def matched_corpus_files(pattern: str) -> list[str]:
    """``corpus_files`` without the check of each file's contents: for a caller after the launcher's check (the
    compile choice's request estimate), which need not open every file again."""
    # A set: a file two patterns match (``a.jsonl,*.jsonl``, or one given twice) is read once, as its rows
    # are one each; read twice, each row would be two records with one id.
    def local(path: str, test) -> bool:
        return "://" not in path and test(path)

    # A file that exists is read as named, though its name holds a comma or glob characters ("data[1].jsonl").
    parts = [pattern] if local(pattern, os.path.isfile) else [p.strip() for p in pattern.split(",") if p.strip()]
    for part in parts:
        if local(part, os.path.isdir):  # Beam would list it as a file, or only its top level
            suffix = _corpus_suffix(part)
            top, every = os.path.join(part, f"*{suffix}"), os.path.join(part, f"**{suffix}")
            raise CorpusConfigError(f"{part!r} is a directory; give its files as a glob, e.g. {top!r} (its top "
                                    f"level) or {every!r} (every level)")
    files: set[str] = set()
    for part in parts:
        matched = {path for variant in globstar_variants(part)
                   for path in ([variant] if local(variant, os.path.isfile) else filesystems.match(variant))}
        if not matched:  # each part: a misspelled one among others would be dropped silently
            where = "(--input)" if len(parts) == 1 else f"(one of the {len(parts)} comma-separated parts of --input)"
            raise CorpusConfigError(f"no file matches {part!r} {where}")
        files |= matched
    for path in sorted(files):
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:  # Beam carries paths as UTF-8, and so do the records' source_uri
            raise CorpusConfigError(f"the file name {path!r} is not valid UTF-8 (matched by --input): rename it") \
                from None
    return sorted(files)


_GLOBSTAR_DIR = re.compile(r"(?:^|(?<=/))\*\*/")


def globstar_variants(part: str) -> list[str]:
    """``part`` and, for each ``**/`` that is a whole path component, the pattern without it: ``DIR/**/*.jsonl``
    is also ``DIR/*.jsonl``, as in Python's and the shell's recursive glob (``**/`` matches zero directories too);
    Beam's glob alone needs a ``/`` after ``DIR/``, so it would skip the top level."""
    found = _GLOBSTAR_DIR.search(part)
    if found is None:
        return [part]
    head = part[:found.start()]
    return [head + keep + rest for rest in globstar_variants(part[found.end():]) for keep in ("**/", "")]


_CORPUS_SUFFIX = re.compile(r"\.(parquet|pq|jsonl|ndjson|json)(\.(gz|bz2|zst))?$", re.IGNORECASE)


def _corpus_suffix(directory: str, limit: int = 10_000) -> str:
    """The suffix of a format read (``.parquet``, ``.jsonl.gz``...) most common among the first ``limit`` files
    under ``directory``; ``.jsonl`` when there is none."""
    counts: collections.Counter = collections.Counter()
    seen = 0
    for _, _, names in os.walk(directory):
        for name in names:
            found = _CORPUS_SUFFIX.search(name)
            if found:
                counts[found.group()] += 1
        seen += len(names)
        if seen >= limit:
            break
    return counts.most_common(1)[0][0] if counts else ".jsonl"


# (root, the paths left out) whose warning this process has logged: the job's preflight check and its reader both
# list the tree, and the warning is said once (again only when the tree leaves out other paths).
_LEFT_OUT_SAID: set[tuple[str, tuple[str, ...]]] = set()


def source_tree_files(root: str) -> list[str]:
    """The source files of a known language under ``root`` (``source_tree_listing``); ``CorpusConfigError`` when
    there is none, or no ``root`` at all. What is left out is said: a warning for what is not a regular file (a
    dangling link, a FIFO; once per process for the same tree and paths), and the count of test files when nothing
    else is left."""
    if "://" not in root and not os.path.exists(root):
        raise CorpusConfigError(f"source tree {root!r} does not exist (--source-tree)")
    listing = source_tree_listing(root)
    said = (root, tuple(sorted(listing.not_regular)))
    if listing.not_regular and said not in _LEFT_OUT_SAID:
        _LEFT_OUT_SAID.add(said)
        LOG.warning("--source-tree %s: left out %d path%s that %s not a regular file (a dangling link, a FIFO...): "
                    "%s", root, len(listing.not_regular), "" if len(listing.not_regular) == 1 else "s",
                    "is" if len(listing.not_regular) == 1 else "are",
                    ", ".join(repr(p) for p in listing.not_regular[:5]) + (
                        ", ..." if len(listing.not_regular) > 5 else ""))
    if not listing.files:
        left = []
        if listing.tests:
            left.append(f"{listing.tests} test file{'s' if listing.tests != 1 else ''} ({TEST_RULE}), which are "
                        f"never read: a corpus of the code users write, not of its tests")
        if listing.not_regular:
            left.append(f"{len(listing.not_regular)} that {'is' if len(listing.not_regular) == 1 else 'are'} not a "
                        f"regular file")
        raise CorpusConfigError(f"no source file of a known language under {root!r} (--source-tree)"
                                + (f"; left out: {'; '.join(left)}" if left else ""))
    return listing.files


class _ListParquetRowGroups(beam.DoFn):
    def __init__(self, mapping: ColumnMapping):
        self._mapping = mapping

    def process(self, path: str) -> Iterator[tuple[str, int, int]]:
        parquet = open_parquet(path)
        check_parquet_columns(parquet.schema_arrow, self._mapping, path)
        offset = 0
        for index in range(parquet.num_row_groups):
            yield path, index, offset
            offset += parquet.metadata.row_group(index).num_rows


class _ReadParquetRowGroup(beam.DoFn):
    def __init__(self, mapping: ColumnMapping):
        self._mapping = mapping
        self.books = StageBooks(READ_STAGE, RecordKind.SOURCE_PAIR)

    def process(self, element: tuple[str, int, int]) -> Iterator[dict[str, Any]]:
        path, index, offset = element
        try:
            table = open_parquet(path).read_row_group(index, columns=self._mapping.columns, use_threads=False)
        except (pa.ArrowException, OSError) as err:  # a corrupt page: its rows are unknown, no dead letter can stand
            raise CorpusConfigError(f"{path} cannot be read to its end (row group {index}, from row {offset}): "
                                    f"{type(err).__name__}: {short_text(err)}") from err
        for i, (raw, problem) in enumerate(parquet_rows(table)):
            self.books.took()
            problem = problem or input_problem(raw, self._mapping)
            if problem is not None:
                yield self.books.reject({"raw": raw}, *problem, source_uri=path, source_row=offset + i)
                continue
            yield self.books.kept(make_source_pair(raw, self._mapping, path, offset + i))


class _ReadJsonFile(beam.DoFn):
    """Streams a JSON array or JSON Lines file; one bad line or item is one dead-letter record."""

    def __init__(self, mapping: ColumnMapping, fmt: str):
        self._mapping = mapping
        self._format = fmt
        self.books = StageBooks(READ_STAGE, RecordKind.SOURCE_PAIR)

    def process(self, path: str) -> Iterator[Any]:
        for row, raw, problem in iter_json_rows(path, self._format, self._mapping):
            self.books.took()
            if problem is not None:
                reason, detail = problem
                yield self.books.reject({"raw": raw}, reason, detail, source_uri=path, source_row=row)
                continue
            yield self.books.kept(make_source_pair(raw, self._mapping, path, row))


class ReadSourcePairs(beam.PTransform):
    """Read (instruction, response) pairs from Parquet, JSON or JSONL files matching ``pattern``."""

    def __init__(self, pattern: str, mapping: ColumnMapping = ColumnMapping(), input_format: str = "auto"):
        super().__init__()
        self._pattern = pattern
        self._mapping = mapping
        self._format = input_format

    def expand(self, pbegin):
        files = corpus_files(self._pattern, self._mapping, self._format)
        formats = {detect_format(f) if self._format == "auto" else self._format for f in files}
        paths = pbegin | "ListFiles" >> beam.Create(files)
        outputs = []
        rejected_outputs = []
        if "parquet" in formats:
            parquet = (
                paths
                | "OnlyParquet" >> beam.Filter(
                    lambda p, fmt=self._format: (fmt if fmt != "auto" else detect_format(p)) == "parquet")
                | "ListRowGroups" >> beam.ParDo(_ListParquetRowGroups(self._mapping))
                | "SpreadRowGroups" >> beam.Reshuffle()
                | "ReadRowGroup" >> beam.ParDo(
                    _ReadParquetRowGroup(self._mapping)).with_outputs(REJECTED, main="main")
            )
            outputs.append(parquet.main)
            rejected_outputs.append(parquet.rejected)
        if formats & {"json", "jsonl"}:
            json_result = (
                paths
                | "OnlyJson" >> beam.Filter(
                    lambda p, fmt=self._format: (fmt if fmt != "auto" else detect_format(p)) != "parquet")
                | "SpreadJsonFiles" >> beam.Reshuffle()
                | "ReadJson" >> beam.ParDo(
                    _ReadJsonFile(self._mapping, self._format)).with_outputs(REJECTED, main="main")
            )
            outputs.append(json_result.main)
            rejected_outputs.append(json_result.rejected)
        return StageOutput(flatten(outputs, "FlattenPairs", pbegin.pipeline),
                           flatten(rejected_outputs, "FlattenPairsRejected", pbegin.pipeline))


class _ReadDefinitions(beam.DoFn):
    """A source file's definitions. Its path comes as bytes (UTF-8, a name that is not UTF-8 kept by
    ``surrogateescape``): Beam's str coder refuses such a name, and the file is read all the same, its records'
    ``source_uri`` showing the odd bytes as ``\\xe9``. A file that cannot be opened or read (gone since the listing,
    no permission) is one ``unreadable`` dead letter, not a failed bundle."""

    def __init__(self):
        self.books = StageBooks(READ_STAGE, RecordKind.SOURCE_PAIR)

    def process(self, encoded: bytes) -> Iterator[Any]:
        path, uri = encoded.decode("utf-8", "surrogateescape"), encoded.decode("utf-8", "backslashreplace")
        try:
            with filesystems.open_binary(path) as handle:
                data = handle.read()
        except OSError as err:
            self.books.took()
            reason = (err.strerror or str(err)).encode("utf-8", "backslashreplace").decode("utf-8")
            yield self.books.reject({"path": uri}, "unreadable", f"{uri} cannot be read: {type(err).__name__}: "
                                    f"{reason}", source_uri=uri, source_row=0)
            return
        try:
            pairs = source_file_pairs(uri, data)
        except UndecodableSource as err:
            self.books.took()
            yield self.books.reject({"path": uri, "head": data[:200]}, "not_utf8", str(err), source_uri=uri,
                                    source_row=0)
            return
        for pair in pairs:
            self.books.took()
            yield self.books.kept(pair)


def encode_path(path: str) -> bytes:
    """``path`` as ``_ReadDefinitions`` takes it: UTF-8, the bytes of a name that is not UTF-8 kept."""
    return path.encode("utf-8", "surrogateescape")


class ReadSourceTree(beam.PTransform):
    """Walk a directory of source files and yield one SOURCE_PAIR per top-level definition."""

    def __init__(self, root: str | None = None):
        super().__init__()
        self._root = root or default_source_root()

    def expand(self, pbegin):
        files = source_tree_files(self._root)
        result = (
            pbegin
            | "ListSourceFiles" >> beam.Create([encode_path(f) for f in files])
            | "SpreadSourceFiles" >> beam.Reshuffle()
            | "ReadDefinitions" >> beam.ParDo(_ReadDefinitions()).with_outputs(REJECTED, main="main")
        )
        return StageOutput.of(result)


def limit_records(pcoll, limit: int | None, label: str = "Limit"):
    """Keep ``limit`` records chosen deterministically (smallest content id, ties by provenance): a spread
    sample of the corpus that is the same on every run and every runner. ``None``: every record."""
    if limit is None:
        return pcoll
    if limit < 1:  # --limit refuses it (transforms.io.options.positive_count); 0 must not mean "no limit"
        raise ValueError(f"limit must be at least 1 (None: no limit), got {limit}")
    return (
        pcoll
        | f"{label}Smallest" >> beam.combiners.Top.Smallest(
            limit, key=lambda r: (r["id"], r["source_uri"], r["source_row"]))
        | f"{label}Explode" >> beam.FlatMap(lambda records: records)
    )


# --------------------------------------------------------------------------- Parquet shards


class _PlanShards(beam.CombineFn):
    """``(bucket, (key, payload))`` records -> the shard plan (``plan_from_bucket_stats``). One combine: it
    pre-combines inside each bundle, so only per-bucket (rows, bytes) totals reach the shuffle."""

    def create_accumulator(self) -> tuple[collections.Counter, collections.Counter]:
        return collections.Counter(), collections.Counter()  # rows and payload bytes per bucket

    def add_input(self, stats, keyed):
        bucket, (_, payload) = keyed
        stats[0][bucket] += 1
        stats[1][bucket] += _payload_nbytes(payload)
        return stats

    def merge_accumulators(self, accumulators):
        rows, nbytes = self.create_accumulator()
        for bucket_rows, bucket_bytes in accumulators:
            rows.update(bucket_rows)
            nbytes.update(bucket_bytes)
        return rows, nbytes

    def extract_output(self, stats) -> dict[str, Any]:
        rows, nbytes = stats
        return plan_from_bucket_stats((bucket, rows[bucket], nbytes[bucket]) for bucket in rows)


# A record crosses the writer's two shuffles as ``(sort_key_bytes(key), payload)``, payload = its payload size
# (8 big-endian bytes, for byte-bounded shards) + either the packed record or, when the writer spills, the
# record's 28-byte spill handle (``transforms.io.spill``): two bytes objects per record.
def _payload_nbytes(payload: bytes) -> int:
    return int.from_bytes(payload[:8], "big")


class StashRecordsFn(beam.DoFn):
    """Base of a DoFn whose records cross a shuffle as ``self.stash(record)``: a spill handle under ``spill_dir``,
    else the packed record (``transforms.io.spill.RecordStash``). The other side reads them with a
    ``FetchRecordsFn`` of the same ``spill_dir``."""

    def __init__(self, spill_dir: str | None):
        self._spill_dir = spill_dir
        self._stash: RecordStash | None = None

    def start_bundle(self):
        self._stash = RecordStash(self._spill_dir)

    def stash(self, record: Any) -> bytes:
        return self._stash.put(record)

    def finish_bundle(self):
        if self._stash:
            self._stash.close()  # the handles become readable when the bundle is done (readers follow a shuffle)

    def teardown(self):
        self.finish_bundle()


class FetchRecordsFn(beam.DoFn):
    """Base of a DoFn that reads back, with ``self.fetch(value)``, what a ``StashRecordsFn`` stashed."""

    def __init__(self, spill_dir: str | None):
        self._spill_dir = spill_dir
        self._fetch: RecordFetch | None = None

    def setup(self):
        self._fetch = RecordFetch(self._spill_dir)

    def fetch(self, value: bytes) -> Any:
        return self._fetch.get(value)

    def teardown(self):
        if self._fetch:
            self._fetch.close()


class _KeyByBucket(StashRecordsFn):
    def __init__(self, seed: int | None, spill_dir: str | None):
        super().__init__(spill_dir)
        self._seed = seed

    def process(self, record):
        key = sort_key(record["id"], self._seed, record_digest(record))
        payload = record_nbytes(record).to_bytes(8, "big") + self.stash(record)
        yield bucket_of(key, self._seed), (sort_key_bytes(key), payload)


_SHARD_IDS = "shard_ids"


class _RankBucket(beam.DoFn):
    def __init__(self, shard_records: int | None, shard_bytes: int | None):
        self._shard_records = shard_records
        self._shard_bytes = shard_bytes

    def process(self, element, plan) -> Iterator[Any]:  # else Beam infers a Union with TaggedOutput for GroupShard
        bucket, items = element
        row_off, byte_off = plan["offsets"][bucket]
        ranked = assign_in_bucket(
            [(key, _payload_nbytes(payload), payload) for key, payload in items], row_off, byte_off,
            shard_records=self._shard_records, shard_bytes=self._shard_bytes,
        )
        shards = set()
        for shard, (key, _, payload) in ranked:
            shards.add(shard)
            yield shard, (key, payload)
        for shard in shards:  # once per bucket, not per record: a bucket's records share few shards
            yield beam.pvalue.TaggedOutput(_SHARD_IDS, shard)


class _WriteShard(FetchRecordsFn):
    def __init__(self, output_dir: str, prefix: str, kind: RecordKind, compression: str, spill_dir: str | None):
        super().__init__(spill_dir)
        self._output_dir = output_dir
        self._prefix = prefix
        self._kind = kind
        self._compression = compression
        self._books = StageBooks(f"{WRITER_PREFIX}{posixpath.basename(output_dir.rstrip('/'))}", kind)

    def _record(self, payload: bytes) -> Any:
        return self.fetch(payload[8:])

    def process(self, element, shard_ids):
        provisional, items = element
        final = {s: i for i, s in enumerate(sorted(set(shard_ids)))}  # close gaps left by oversized records
        info = write_one_shard(
            self._output_dir, self._prefix, final[provisional], len(final),
            [(key, _payload_nbytes(payload), payload) for key, payload in items], self._kind,
            self._compression, unpack=self._record,
        )
        self._books.count("files")
        self._books.count("rows", info["rows"])
        self._books.count("bytes", info["bytes"])
        yield info


class _FinalizeIndex(beam.DoFn):
    def __init__(self, output_dir, prefix, kind, seed, shard_records, shard_mb, index_extra, spill_dir):
        self._args = (output_dir, prefix)
        self._index_args = dict(kind=kind, seed=seed, shard_records=shard_records, shard_mb=shard_mb,
                                extra=index_extra)
        self._spill_dir = spill_dir

    def process(self, all_infos):
        output_dir, prefix = self._args
        index = finalize_index(output_dir, build_index(all_infos, **self._index_args), prefix)
        if self._spill_dir:
            remove_spill_dir(self._spill_dir)  # every shard is written: no handle is read any more
        yield index


class WriteParquetShards(beam.PTransform):
    """PCollection[dict] of ``kind`` (or a tuple of them, written as one) -> bounded, deterministic Parquet
    shards + ``shards.json``.

    Output: a one-element PCollection holding the index dict, emitted after ``output_dir/shards.json`` exists.
    ``seed=None`` orders rows by id instead of shuffling (handy for audit outputs such as rejected records).

    Records cross the two shuffles packed (``transforms.io.packed``) and are unpacked one shard at a time. With
    ``spill_dir`` (``--spill-dir``; the launcher resolves it), each record is parked in a spill file under it
    instead and only a 28-byte handle crosses the shuffles (``transforms.io.spill``); the writer removes its
    spill files once the index is written. A tuple of PCollections is keyed (packed or spilled) before it is
    flattened: a runner that materializes a Flatten (the DirectRunner does) then holds small values, not dicts.
    """

    def __init__(
        self,
        output_dir: str,
        kind: RecordKind | str,
        *,
        seed: int | None,
        shard_records: int | None = None,
        shard_mb: float | None = None,
        prefix: str = "part",
        compression: str = DEFAULT_COMPRESSION,
        index_extra: Mapping[str, Any] | None = None,
        spill_dir: str | None = None,
    ):
        super().__init__()
        check_bounds(shard_records, shard_mb)
        self._spill_parent = spill_dir
        self._output_dir = output_dir
        self._kind = RecordKind(kind)
        self._seed = seed
        self._shard_records = shard_records
        self._shard_mb = shard_mb
        self._prefix = prefix
        self._compression = compression
        self._index_extra = dict(index_extra or {})

    def expand(self, records):
        # At construction, so before any shard is written on every runner: what a killed run staged goes. The
        # previous run's shards and index stay a complete set until _FinalizeIndex replaces them (shards are
        # written to a hidden staging directory, see transforms.io.parquet).
        clear_staging(self._output_dir, self._prefix)
        shard_bytes = None if self._shard_mb is None else bytes_per_shard(self._shard_mb)
        spill = new_spill_dir(self._spill_parent, "write") if self._spill_parent else None  # this writer's own
        if isinstance(records, (tuple, list)):
            if not records:
                raise ValueError("WriteParquetShards needs at least one PCollection")
            by_bucket = [part | f"KeyByBucket{i}" >> beam.ParDo(_KeyByBucket(self._seed, spill))
                         for i, part in enumerate(records)]
            by_bucket = by_bucket[0] if len(by_bucket) == 1 else by_bucket | "FlattenBuckets" >> beam.Flatten()
        else:
            by_bucket = records | "KeyByBucket" >> beam.ParDo(_KeyByBucket(self._seed, spill))
        # Without defaults: an empty input has no plan to read, and the side inputs below say what "none" is.
        plan = by_bucket | "Plan" >> beam.CombineGlobally(_PlanShards()).without_defaults()
        ranked = (
            by_bucket
            | "GroupBucket" >> beam.GroupByKey()
            | "Rank" >> beam.ParDo(_RankBucket(self._shard_records, shard_bytes),
                                  plan=beam.pvalue.AsSingleton(plan, default_value=None))
            .with_outputs(_SHARD_IDS, main="records")
        )
        by_shard = ranked.records | "GroupShard" >> beam.GroupByKey()
        # From the ranks, not from by_shard: a side input made from by_shard would keep all of it in memory
        # (twice read) on runners that materialize it.
        shard_ids = ranked[_SHARD_IDS] | "DistinctShardIds" >> beam.combiners.ToSet().without_defaults()
        infos = by_shard | "WriteShard" >> beam.ParDo(
            _WriteShard(self._output_dir, self._prefix, self._kind, self._compression, spill),
            shard_ids=beam.pvalue.AsSingleton(shard_ids, default_value=set()),
        )
        return (
            infos
            | "AllInfos" >> beam.combiners.ToList()
            | "WriteIndex" >> beam.ParDo(
                _FinalizeIndex(self._output_dir, self._prefix, self._kind, self._seed, self._shard_records,
                               self._shard_mb, self._index_extra, spill)
            )
        )


# --------------------------------------------------------------------------- training shards


class _ToExample(StageFn):
    """A record to its training example with ``to_example``; a record it refuses is a dead letter."""

    stage = SHARDS_STAGE

    def __init__(self, record_kind: RecordKind, to_example: Callable[[dict[str, Any]], dict[str, Any]]):
        self.record_kind = record_kind  # before StageFn opens its books with it
        self._to_example = to_example
        super().__init__()

    def process_record(self, record):
        try:
            yield self._to_example(record)
        except ExampleRejected as exc:
            yield Reject(exc.reason, exc.detail)


class _ToOriginal(beam.DoFn):
    """Input: ``(source_id, {"snippets": [...], "sources": [...]})`` in source mode, or a snippet in code mode."""

    def __init__(self, mode: str):
        self._mode = mode
        self.books = StageBooks(SHARDS_STAGE, RecordKind.CODE_SNIPPET)

    def process(self, element):
        if self._mode == "source":
            _, grouped = element
            sources = list(grouped["sources"])
            response = sources[0].get("response") if sources else None
            snippets = list(grouped["snippets"])
        else:
            response, snippets = None, [element]
        for snippet in snippets:
            self.books.took()
            try:
                example = original_example(snippet, mode=self._mode, source_response=response)
            except ExampleRejected as exc:
                yield self.books.reject(snippet, exc.reason, exc.detail)
                continue
            yield self.books.kept(example)


class _DropDuplicateIds(beam.DoFn):
    """Examples grouped by id -> the one kept (``pick_duplicate``) and a ``duplicate_example`` dead letter for each
    other. One set of books, the shards stage's: its counters and its dead letters name the same stage."""

    def __init__(self):
        self.books = StageBooks(SHARDS_STAGE, RecordKind.TRAINING_EXAMPLE)

    def process(self, element):
        _, examples = element
        keep, dups = pick_duplicate(list(examples))
        yield keep
        for dup in dups:
            # The example step counted it out of the stage; it is rejected instead, so the live counts add up as
            # the manifest's do (in = out + rejected).
            self.books.count("out", -1)
            yield self.books.reject(
                dup, "duplicate_example",
                f"same id as the kept example from row {keep['source_row']} of {keep['source_uri']}")


def _dedup(examples, label: str):
    out = (
        examples
        | f"KeyById{label}" >> beam.Map(lambda e: (e["id"], e))
        | f"GroupById{label}" >> beam.GroupByKey()
        | f"DropDuplicates{label}" >> beam.ParDo(_DropDuplicateIds()).with_outputs(REJECTED, main="examples")
    )
    return out.examples, out.rejected


class WriteTrainingShards(beam.PTransform):
    """Selected pairs (+ cleaned originals) -> ``<output_dir>/generated`` (+ ``/original``) shards.

    Apply to the PCollection of selected ``SCORED_PAIR`` dicts. Returns a dict of PCollections:
    ``"generated"`` / ``"original"``: one element each, the ``shards.json`` index; ``"examples"``: every training
    example written; ``"made"``: a tuple of PCollections, every example this stage made (the generated ones and
    the originals before ``check_originals``), which with ``"rejected"`` (the stage's dead letters) accounts for
    every input. With ``check_originals`` (a transform from training examples to a ``StageOutput``; the main job
    passes ``Decontaminate`` on ``instruction`` and ``response``), the original examples go through it before they
    are written, exactly as they would be written: ``"original_made"`` is its input and ``"original_check"`` its
    ``StageOutput``, whose rejected examples are its own dead letters and never a shard row.
    """

    def __init__(
        self,
        output_dir: str,
        *,
        seed: int,
        shard_records: int | None = None,
        shard_mb: float | None = None,
        original_snippets=None,
        source_pairs=None,
        original_response: str = "source",
        original_mode: str = "kept",
        spill_dir: str | None = None,
        check_originals: beam.PTransform | None = None,
    ):
        super().__init__()
        self._spill_dir = spill_dir
        self._check_originals = check_originals
        if original_mode not in EMIT_ORIGINAL_MODES:
            raise ValueError(f"original_mode must be one of {EMIT_ORIGINAL_MODES}")
        if original_mode == "all" and source_pairs is None:
            raise ValueError("original_mode='all' writes every source pair: pass source_pairs")
        if original_response not in ORIGINAL_RESPONSE_MODES:
            raise ValueError(f"original_response must be one of {ORIGINAL_RESPONSE_MODES}")
        if original_snippets is not None and original_response == "source" and source_pairs is None:
            raise ValueError("original_response='source' joins the source pairs: pass source_pairs, "
                             "or use original_response='code' (--original-response=code)")
        self._output_dir = output_dir.rstrip("/")
        self._seed = seed
        self._bounds = dict(shard_records=shard_records, shard_mb=shard_mb)
        if shard_records is None and shard_mb is None:
            self._bounds["shard_mb"] = DEFAULT_SHARD_MB
        self._original_mode = original_mode if (original_snippets is not None or original_mode == "all") else "none"
        self._original_snippets = original_snippets
        self._source_pairs = source_pairs
        self._original_response = original_response

    @classmethod
    def from_options(cls, output_dir: str, options: PipelineOptions, *, run_seed: int, **kwargs):
        shard_options = options.view_as(ShardOptions)
        seed = shard_options.shard_seed if shard_options.shard_seed is not None else run_seed
        if shard_options.emit_original == "none":
            kwargs.pop("original_snippets", None)
            kwargs.pop("source_pairs", None)
        return cls(output_dir, seed=seed, original_response=shard_options.original_response,
                   original_mode=shard_options.emit_original, spill_dir=spill_dir(options),
                   **shard_bounds(shard_options), **kwargs)

    def _write(self, examples, name: str):
        return examples | f"Write{name.title()}Shards" >> WriteParquetShards(
            f"{self._output_dir}/{name}", RecordKind.TRAINING_EXAMPLE, seed=self._seed,
            index_extra={"source": name}, spill_dir=self._spill_dir, **self._bounds,
        )

    def expand(self, selected_pairs):
        generated = _ToExample(RecordKind.SCORED_PAIR, generated_example).apply(selected_pairs, "ToGenerated")
        gen_examples, gen_dups = _dedup(generated.main, "Generated")
        outputs = {"generated": self._write(gen_examples, GENERATED)}
        rejected_parts = [generated.rejected, gen_dups]
        example_parts = [gen_examples]
        made = [gen_examples]
        orig_examples = None
        if self._original_mode == "all":
            # ``--emit-original all``: every source pair of the corpus, no dedup (the paper's stage 2).
            original = _ToExample(RecordKind.SOURCE_PAIR, source_pair_example).apply(self._source_pairs, "ToOriginal")
            orig_examples = original.main
            rejected_parts.append(original.rejected)
        elif self._original_mode == "kept":
            if self._original_response == "source":
                grouped = {
                    "snippets": self._original_snippets | "KeySnippetBySource" >> beam.Map(
                        lambda s: (s["source_id"], s)),
                    "sources": self._source_pairs | "KeySourceById" >> beam.Map(lambda s: (s["id"], s)),
                } | "JoinSources" >> beam.CoGroupByKey()
                originals_in = grouped
            else:
                originals_in = self._original_snippets
            original = originals_in | "ToOriginal" >> beam.ParDo(_ToOriginal(self._original_response)).with_outputs(
                REJECTED, main="examples")
            orig_examples, orig_dups = _dedup(original.examples, "Original")
            rejected_parts += [original.rejected, orig_dups]
        if orig_examples is not None:
            made.append(orig_examples)
            if self._check_originals is not None:
                # What is checked is the example itself: the instruction and the response as they are written.
                checked = orig_examples | "CheckOriginals" >> self._check_originals
                outputs["original_made"], outputs["original_check"] = orig_examples, checked
                orig_examples = checked.main
            outputs["original"] = self._write(orig_examples, ORIGINAL)
            example_parts.append(orig_examples)
        outputs["made"] = tuple(made)
        outputs["examples"] = tuple(example_parts) | "AllExamples" >> beam.Flatten()
        outputs["rejected"] = tuple(rejected_parts) | "AllRejected" >> beam.Flatten()
        return outputs
