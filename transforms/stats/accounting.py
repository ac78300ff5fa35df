"""Per-stage accounting: records in, records out, rejected by reason, and the manifest that proves it adds up.

Beam ``Metrics`` counters (``transforms.stage``) are for live monitoring; they are best-effort on some runners
and are not part of a pipeline's output. The manifest is computed *inside* the pipeline from the PCollections
themselves, so it is exact on every runner, and written next to the outputs.
"""
from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from transforms.stage import StageOutput
from transforms.stats.progress import LIVE


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """What the manifest needs to know of a stage (no PCollections: it is pickled into the manifest step)."""

    name: str
    fanout: int = 1
    writes_rejected: bool = True
    unwritten_reason: str = "not_sampled"


@dataclasses.dataclass
class StageTally:
    """The PCollections that describe one stage. ``fanout`` is how many outputs one input should make
    (k candidates per snippet for summarization); the books balance when in*fanout == out + rejected.

    A stage with ``rejected=None`` drops nothing but by configuration (``--limit``): what it does not pass on
    is counted under ``unwritten_reason`` and, being a deliberate sample, is not written out.
    """

    name: str
    inputs: Any  # a PCollection, or a tuple of them counted together
    outputs: Any
    rejected: Any = None
    fanout: int = 1
    unwritten_reason: str = "not_sampled"

    def spec(self) -> StageSpec:
        return StageSpec(self.name, self.fanout, self.rejected is not None, self.unwritten_reason)

    @classmethod
    def of(cls, name: str, inputs: Any, output: StageOutput, fanout: int = 1) -> "StageTally":
        """The tally of a stage from its inputs and its typed output."""
        return cls(name, inputs, output.main, output.rejected, fanout)


class _CountPerBundle(beam.DoFn):
    """Counts the records of one PCollection under ``key`` (a string, or a function of the record) and emits
    ``(key, n)`` once per bundle, so only a handful of small pairs, never one per record, reach the shuffle."""

    def __init__(self, key: str | Callable[[Any], str], live_name: str | None = None):
        self._key = key
        self._live_name = live_name  # also add the bundle's count to the live progress under this counter name
        self._counts: collections.Counter = collections.Counter()

    def start_bundle(self):
        self._counts = collections.Counter()

    def process(self, record):
        self._counts[self._key if isinstance(self._key, str) else self._key(record)] += 1

    def finish_bundle(self):
        if self._live_name and self._counts:
            LIVE.add(self._live_name, sum(self._counts.values()))
        for key, n in self._counts.items():
            yield GlobalWindows.windowed_value_at_end_of_window((key, n))


class _SumByKey(beam.CombineFn):
    """``(key, n)`` pairs -> one ``{key: total}`` dict (``{}`` for no input, so an empty job still has books)."""

    def create_accumulator(self) -> collections.Counter:
        return collections.Counter()

    def add_input(self, accumulator: collections.Counter, pair: tuple[str, int]) -> collections.Counter:
        accumulator[pair[0]] += pair[1]
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[collections.Counter]) -> collections.Counter:
        merged = collections.Counter()
        for accumulator in accumulators:
            merged.update(accumulator)
        return merged

    def extract_output(self, accumulator: collections.Counter) -> dict[str, int]:
        return dict(accumulator)


def _rejection_key(stage: str) -> Callable[[dict[str, Any]], str]:
    return lambda record: f"{stage}|rejected|{record['reason']}"


class CollectCounts(beam.PTransform):
    """All stage tallies as one dict: ``{"stage|in": n, "stage|out": n, "stage|rejected|reason": n}``.

    One counting step per PCollection and one combine for the whole job: the books add a step per counted
    PCollection to the graph, not a combine each (which made them half of a small job's transforms). A tuple of
    PCollections is counted part by part (flattening the records only to count them would make runners that
    materialize a Flatten hold them all)."""

    def __init__(self, stages: list[StageTally]):
        super().__init__()
        self._stages = stages

    def expand(self, pbegin):
        parts = []

        def count(pcoll, label: str, key, live_name: str | None = None):
            for i, part in enumerate(pcoll if isinstance(pcoll, (tuple, list)) else (pcoll,)):
                parts.append(part | f"{label}{i}" >> beam.ParDo(_CountPerBundle(key, live_name)))

        for stage in self._stages:
            # A stage that drops only by configuration (--limit, a cap) is no StageFn and counts nothing live
            # itself: these counts are the only ones the live progress could show for it.
            live = stage.rejected is None
            count(stage.inputs, f"{stage.name}In", f"{stage.name}|in", f"{stage.name}.in" if live else None)
            count(stage.outputs, f"{stage.name}Out", f"{stage.name}|out", f"{stage.name}.out" if live else None)
            if stage.rejected is not None:
                count(stage.rejected, f"{stage.name}Rejected", _rejection_key(stage.name))
        if not parts:
            return pbegin | "NoStages" >> beam.Create([{}])
        return parts | "FlattenCounts" >> beam.Flatten() | "AsDict" >> beam.CombineGlobally(_SumByKey())


def build_manifest(counts: dict[str, int], stages: Iterable[StageSpec], extra: dict[str, Any]) -> dict[str, Any]:
    """Turn flat counts into the manifest's ``stages`` section and check that every stage balances."""
    by_stage: dict[str, dict[str, Any]] = {}
    for spec in stages:
        name, fanout = spec.name, spec.fanout
        rejected = collections.Counter()
        for key, n in counts.items():
            stage, kind, *rest = key.split("|")
            if stage == name and kind == "rejected":
                rejected[rest[0]] += n
        records_in = counts.get(f"{name}|in", 0)
        records_out = counts.get(f"{name}|out", 0)
        if not spec.writes_rejected and records_in * fanout > records_out:
            rejected[spec.unwritten_reason] = records_in * fanout - records_out
        total_rejected = sum(rejected.values())
        by_stage[name] = {
            "records_in": records_in,
            "records_out": records_out,
            "rejected": dict(sorted(rejected.items())),
            "rejected_total": total_rejected,
            "fanout": fanout,
            "balanced": records_in * fanout == records_out + total_rejected,
        }
    return {"stages": by_stage, "balanced": all(s["balanced"] for s in by_stage.values()), **extra}


def _write_manifest(manifest: dict[str, Any], path: str, *written: Any) -> str:
    from transforms.io.parquet import write_index_atomic

    write_index_atomic(path, manifest)
    return path


class WriteManifest(beam.PTransform):
    """PCollection[manifest] -> the manifest written at ``path`` once every writer of the job has finished.

    Beam's "wait on": each writer's output (``WriteParquetShards`` emits its index after its shards are written)
    is a side input of the step that writes the manifest, so that step runs only after all of them, and a writer
    that fails leaves no manifest vouching for outputs that were never written. Outputs the written path."""

    def __init__(self, path: str, writers: Iterable[Any]):
        super().__init__()
        self._path = path
        self._writers = list(writers)

    def expand(self, manifests):
        waits = [beam.pvalue.AsList(writer) for writer in self._writers]
        return manifests | "AfterWriters" >> beam.Map(_write_manifest, self._path, *waits)


def manifest_json(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
