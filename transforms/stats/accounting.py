"""Per-stage accounting: records in, records out, rejected by reason, and the manifest that proves it adds up.

Beam ``Metrics`` counters (``transforms.stage``) are for live monitoring; they are best-effort on some runners
and are not part of a pipeline's output. The manifest is computed *inside* the pipeline from the PCollections
themselves, so it is exact on every runner, and written next to the outputs.
"""
from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any, Iterable

import apache_beam as beam

from transforms.stage import StageOutput


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


def _count(pcoll, label: str, key: str):
    """``(key, n)``: the records of ``pcoll``, or of a tuple of PCollections counted part by part (flattening
    the records only to count them would make runners that materialize a Flatten hold them all)."""
    if isinstance(pcoll, (tuple, list)):
        parts = [_count(part, f"{label}{i}", key) for i, part in enumerate(pcoll)]
        return parts | f"{label}Parts" >> beam.Flatten() | f"{label}SumParts" >> beam.CombinePerKey(sum)
    return (
        pcoll
        | f"{label}Ones" >> beam.Map(lambda _: 1)
        | f"{label}Sum" >> beam.CombineGlobally(sum)
        | f"{label}Key" >> beam.Map(lambda n: (key, n))
    )


def _count_reasons(pcoll, label: str, stage: str):
    return (
        pcoll
        | f"{label}Reason" >> beam.Map(lambda r: (f"{stage}|rejected|{r['reason']}", 1))
        | f"{label}SumReasons" >> beam.CombinePerKey(sum)
    )


class CollectCounts(beam.PTransform):
    """All stage tallies as one dict: ``{"stage|in": n, "stage|out": n, "stage|rejected|reason": n}``."""

    def __init__(self, stages: list[StageTally]):
        super().__init__()
        self._stages = stages

    def expand(self, pbegin):
        parts = []
        for stage in self._stages:
            parts.append(_count(stage.inputs, f"{stage.name}In", f"{stage.name}|in"))
            parts.append(_count(stage.outputs, f"{stage.name}Out", f"{stage.name}|out"))
            if stage.rejected is not None:
                parts.append(_count_reasons(stage.rejected, f"{stage.name}Rejected", stage.name))
        return parts | "FlattenCounts" >> beam.Flatten() | "AsDict" >> beam.combiners.ToDict()


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


def manifest_json(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
