"""Beam glue of deduplication: ``DedupSnippets`` (exact, by snippet id) and ``NearDedup`` (MinHash LSH).

Both return a ``StageOutput``: the survivors in ``main``, the others in ``rejected`` (``duplicate`` or
``near_duplicate``, with the survivor named in ``detail``). The survivor rules do not depend on arrival
order, so every run and runner keeps the same records.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np

from schemas.records import RecordKind, payload_json
from transforms.dedup import minhash as nd
from transforms.dedup.exact import choose_survivor
from transforms.io.beam import FetchRecordsFn, StashRecordsFn
from transforms.io.spill import new_spill_dir
from transforms.stage import REJECTED, StageBooks, StageOutput

DEDUP_STAGE = "dedup"
REASON_DUPLICATE = "duplicate"
REASON_NEAR_DUPLICATE = "near_duplicate"


class _KeyById(StashRecordsFn):
    """snippet -> (id, stashed snippet): its spill handle when the dedup spills, else the packed snippet."""

    def process(self, snippet: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
        yield snippet["id"], self.stash(snippet)


class _KeepOnePerKey(FetchRecordsFn):
    def __init__(self, spill_dir: str | None):
        super().__init__(spill_dir)
        self.books = StageBooks(DEDUP_STAGE, RecordKind.CODE_SNIPPET)

    def process(self, element: tuple[str, Iterable[bytes]]) -> Iterator[Any]:
        _, group = element
        survivor, duplicates = choose_survivor(self.fetch(value) for value in group)
        self.books.took(1 + len(duplicates))
        yield self.books.kept(survivor)
        for duplicate in duplicates:
            yield self.books.reject(duplicate, REASON_DUPLICATE,
                                    f"same normalized code as {survivor['source_uri']}:{survivor['source_row']}")


class DedupSnippets(beam.PTransform):
    """Exact dedup by normalized-code hash (the snippet id).

    The group holds each snippet packed (``transforms.io.packed``: ~1/6 of the record's size in memory, which
    is what a runner holding the shuffle in memory keeps per record), unpacked once on the way out. With
    ``spill_dir`` (``--spill-dir``), the snippets wait in spill files under it and the group holds 28-byte
    handles (``transforms.io.spill``); the job removes the files when it ends."""

    def __init__(self, spill_dir: str | None = None, label: str | None = None):
        super().__init__(label)
        self._spill_parent = spill_dir

    def expand(self, snippets):  # -> StageOutput (see there why unannotated)
        spill = new_spill_dir(self._spill_parent, "dedup") if self._spill_parent else None
        return StageOutput.of(
            snippets
            | "KeyById" >> beam.ParDo(_KeyById(spill))
            | "GroupById" >> beam.GroupByKey()
            | "KeepOne" >> beam.ParDo(_KeepOnePerKey(spill)).with_outputs(REJECTED, main="main")
        )


class _Signature(beam.DoFn):
    """(id, record) -> (id, signature bytes); the MinHash permutations are drawn once per worker."""

    def __init__(self, config: nd.NearDedupConfig) -> None:
        self.config = config
        self.hasher: nd.MinHasher | None = None

    def setup(self) -> None:
        self.hasher = nd.MinHasher(self.config.num_perm, self.config.seed, self.config.ngram)

    def process(self, keyed: tuple[str, dict[str, Any]]) -> Iterable[tuple[str, bytes]]:
        rid, record = keyed
        yield rid, self.hasher.signature(nd.record_text(record, self.config.columns)).tobytes()


def _band_entries(item: tuple[str, bytes], bands: int, rows: int, dtype: str) -> Iterable[tuple[bytes, str]]:
    rid, sig = item
    for key in nd.band_keys(np.frombuffer(sig, dtype=dtype), bands, rows):
        yield key, rid


def _fan_out_first(joined: tuple[str, dict[str, list]]) -> Iterable[tuple[str, tuple[str, bytes]]]:
    """Pairs keyed by their first id, joined with its signature -> keyed by the second id."""
    a, groups = joined
    if not groups["sig"]:
        return
    sig_a = groups["sig"][0]
    for b in groups["pair"]:
        yield b, (a, sig_a)


class _Verify(beam.DoFn):
    def __init__(self, stage: str, threshold: float, dtype: str) -> None:
        self.threshold, self.dtype = threshold, dtype
        self.books = StageBooks(stage, RecordKind.SCORED_PAIR)

    def process(self, joined: tuple[str, dict[str, list]]) -> Iterable[tuple[str, str, float]]:
        b, groups = joined
        if not groups["sig"]:
            return
        sig_b = np.frombuffer(groups["sig"][0], dtype=self.dtype)
        for a, sig_a in groups["half"]:
            self.books.count("candidate_pairs")
            j = nd.jaccard(np.frombuffer(sig_a, dtype=self.dtype), sig_b)
            if j >= self.threshold:
                self.books.count("verified_pairs")
                yield a, b, j


def nearest_neighbours(edges: Iterable[tuple[str, str, float]]) -> dict[str, tuple[str, float]]:
    """Each record's most similar verified neighbour: highest Jaccard estimate, ties to the smallest id. The
    edges come from ``ToList`` in no fixed order, so the choice must not depend on it (the rejection evidence
    would differ between runs)."""
    best: dict[str, tuple[str, float]] = {}
    for a, b, j in edges:
        for rid, other in ((a, b), (b, a)):
            held = best.get(rid)
            if held is None or (-j, other) < (-held[1], held[0]):
                best[rid] = (other, j)
    return best


def _removals(edges: list[tuple[str, str, float]]) -> list[tuple[str, dict[str, Any]]]:
    similarity = nearest_neighbours(edges)
    removed = nd.duplicates_to_remove((a, b) for a, b, _ in sorted(edges))
    out = []
    for rid, (survivor, size) in sorted(removed.items()):
        neighbour, j = similarity[rid]
        out.append((rid, {"survivor_id": survivor, "cluster_size": size, "nearest_id": neighbour,
                          "jaccard_estimate": round(j, 4)}))
    return out


class _Split(beam.DoFn):
    def __init__(self, stage: str, record_kind: str, config: nd.NearDedupConfig, bands: int, rows: int) -> None:
        self.config = config
        self.bands, self.rows = bands, rows
        self.books = StageBooks(stage, record_kind)

    def _reject(self, record: dict[str, Any], evidence: dict[str, Any]) -> beam.pvalue.TaggedOutput:
        detail = {
            "method": "minhash_lsh", "columns": list(self.config.columns), "ngram": self.config.ngram,
            "num_perm": self.config.num_perm, "threshold": self.config.threshold, "bands": self.bands,
            "rows": self.rows, "survivor_rule": "smallest id in the connected component", **evidence,
        }
        return self.books.reject(record, REASON_NEAR_DUPLICATE, json.dumps(detail, sort_keys=True))

    def process(self, joined: tuple[str, dict[str, list]]) -> Iterable[Any]:
        rid, groups = joined
        # Records sharing an id are exact duplicates of whatever the id hashes: keep one, by a rule that
        # does not depend on arrival order.
        records = sorted(groups["record"], key=payload_json)
        self.books.took(len(records))
        removal = groups["removal"][0] if groups["removal"] else None
        for i, record in enumerate(records):
            if removal is not None:
                yield self._reject(record, removal)
            elif i > 0:
                yield self._reject(record, {"survivor_id": rid, "cluster_size": len(records),
                                            "nearest_id": rid, "jaccard_estimate": 1.0, "same_id": True})
            else:
                yield self.books.kept(record)


class NearDedup(beam.PTransform):
    """Remove near-duplicate records (MinHash LSH); see ``neardedup`` for the algorithm and survivor rule.

    Returns a ``StageOutput``: ``main`` (survivors) and ``rejected`` (``near_duplicate``).
    """

    def __init__(
        self,
        columns: Sequence[str] = ("instruction", "response"),
        stage: str = "near_dedup",
        record_kind: RecordKind | str = RecordKind.SCORED_PAIR,
        config: nd.NearDedupConfig | None = None,
        label: str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(label)
        base = config or nd.NearDedupConfig()
        self.config = nd.NearDedupConfig(**{**base.__dict__, "columns": tuple(columns), **overrides})
        self.stage = stage
        self.record_kind = RecordKind(record_kind).value

    def expand(self, records: beam.PCollection):  # -> StageOutput (see there why unannotated)
        config = self.config
        bands, rows = config.lsh_params()
        dtype = nd.MinHasher(config.num_perm, config.seed, config.ngram).signature("").dtype.str
        id_column = config.id_column
        keyed = records | "KeyById" >> beam.Map(lambda r: (r[id_column], r))
        signatures = (
            keyed
            | "Signature" >> beam.ParDo(_Signature(config))
            # One signature per id even if several records share it (deterministic pick).
            | "OnePerId" >> beam.CombinePerKey(min)
        )
        pairs = (
            signatures
            | "BandKeys" >> beam.FlatMap(_band_entries, bands, rows, dtype)
            | "Buckets" >> beam.GroupByKey()
            | "CandidatePairs" >> beam.FlatMap(lambda kv: nd.bucket_pairs(kv[1], config.max_bucket_pairs))
            | "DistinctPairs" >> beam.Distinct()
        )
        half = (
            {"sig": signatures, "pair": pairs}
            | "JoinFirst" >> beam.CoGroupByKey()
            | "FanOut" >> beam.FlatMap(_fan_out_first)
        )
        removals = (
            {"sig": signatures, "half": half}
            | "JoinSecond" >> beam.CoGroupByKey()
            | "Verify" >> beam.ParDo(_Verify(self.stage, config.threshold, dtype))
            | "Edges" >> beam.combiners.ToList()
            | "Components" >> beam.FlatMap(_removals)
        )
        return StageOutput.of(
            {"record": keyed, "removal": removals}
            | "JoinRecords" >> beam.CoGroupByKey()
            | "Split" >> beam.ParDo(_Split(self.stage, self.record_kind, config, bands, rows))
            .with_outputs(REJECTED, main="main")
        )
