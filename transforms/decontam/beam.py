"""Beam glue: ``Decontaminate`` over record dicts.

Returns a ``StageOutput`` with ``main`` (kept records, unchanged) and ``rejected`` (dead letters with reason
``contaminated`` and the evidence JSON in ``detail``), counted by ``transforms.stage.StageBooks``.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import apache_beam as beam

from schemas.records import RecordKind
from transforms.decontam.benchmarks import BenchmarkSpec, load_benchmarks
from transforms.decontam.methods import DecontamConfig, DecontamIndex
from transforms.stage import REJECTED, StageBooks, StageOutput

REASON_CONTAMINATED = "contaminated"


def build_index(specs: Sequence[BenchmarkSpec], config: DecontamConfig) -> DecontamIndex:
    return DecontamIndex.build(load_benchmarks(specs), config)


class _DecontaminateBatch(beam.DoFn):
    def __init__(self, columns: Sequence[str], stage: str, record_kind: str, language_column: str | None):
        self.columns = tuple(columns)
        self.language_column = language_column
        self.books = StageBooks(stage, record_kind)

    def process(self, batch: list[dict[str, Any]], index: DecontamIndex) -> Iterable[Any]:
        self.books.took(len(batch))
        languages = [r.get(self.language_column) if self.language_column else None for r in batch]
        for record, evidence in zip(batch, index.check_batch(batch, self.columns, languages)):
            if not evidence:
                yield self.books.kept(record)
                continue
            for method in sorted({ev["method"] for ev in evidence}):
                self.books.count(f"contaminated_by.{method}")
            first = evidence[0]
            detail = json.dumps({
                "benchmark": first["benchmark"], "task_id": first["task_id"], "method": first["method"],
                "columns": list(self.columns), "evidence": evidence,
            }, ensure_ascii=False, sort_keys=True)
            yield self.books.reject(record, REASON_CONTAMINATED, detail)


class Decontaminate(beam.PTransform):
    """Reject records that contain benchmark material.

    ``benchmarks``: ``BenchmarkSpec``s (or ``NAME``/``NAME=PATH`` strings); loaded and indexed once, on a
    worker, into a ``DecontamIndex`` that every bundle reads as an ``AsSingleton`` side input. Pass a
    prebuilt ``index`` instead to skip loading. ``columns`` are the record columns to check (each is
    checked in both the code and the word view). ``language_column`` (if present in the record) selects
    the comment syntax of the code view. Returns a ``StageOutput``.
    """

    def __init__(
        self,
        benchmarks: Sequence[BenchmarkSpec | str] = ("humaneval",),
        methods: Sequence[str] | None = None,
        columns: Sequence[str] = ("instruction", "code"),
        stage: str = "decontaminate",
        record_kind: RecordKind | str = RecordKind.SCORED_PAIR,
        config: DecontamConfig | None = None,
        index: DecontamIndex | None = None,
        language_column: str | None = "language",
        batch_size: int = 256,
        label: str | None = None,
    ) -> None:
        super().__init__(label)
        self.specs = tuple(b if isinstance(b, BenchmarkSpec) else BenchmarkSpec.parse(b) for b in benchmarks)
        config = config or DecontamConfig()
        if methods is not None:
            config = DecontamConfig(**{**config.__dict__, "methods": tuple(methods)})
        self.config = config
        self.index = index
        self.columns = tuple(columns)
        self.stage = stage
        self.record_kind = RecordKind(record_kind).value
        self.language_column = language_column
        self.batch_size = batch_size

    def expand(self, records: beam.PCollection):  # -> StageOutput (see there why unannotated)
        if self.index is not None:
            index = records.pipeline | f"{self.label}/Index" >> beam.Create([self.index])
        else:
            specs, config = self.specs, self.config
            index = (
                records.pipeline
                | f"{self.label}/Benchmarks" >> beam.Create([specs])
                | f"{self.label}/BuildIndex" >> beam.Map(build_index, config)
            )
        return StageOutput.of(
            records
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self.batch_size)
            | "Check" >> beam.ParDo(
                _DecontaminateBatch(self.columns, self.stage, self.record_kind, self.language_column),
                index=beam.pvalue.AsSingleton(index),
            ).with_outputs(REJECTED, main="main")
        )
