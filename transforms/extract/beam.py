"""Beam glue of extraction: ``ExtractCode`` (SOURCE_PAIR -> CODE_SNIPPET, or a dead letter with the reason)."""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam

from schemas.records import RecordKind
from transforms.extract.policies import ExtractionConfig
from transforms.extract.snippets import STAGE, snippet_from_pair
from transforms.stage import Reject, StageFn


class ExtractCodeFn(StageFn):
    stage = STAGE
    record_kind = RecordKind.SOURCE_PAIR

    def __init__(self, config: ExtractionConfig):
        super().__init__()
        self._config = config

    def process_record(self, pair: dict[str, Any]) -> Iterator[Any]:
        outcome = snippet_from_pair(pair, self._config)
        if isinstance(outcome, dict):
            self.books.count(f"language.{outcome['language']}")
            yield outcome
        else:
            yield Reject(*outcome)


class ExtractCode(beam.PTransform):
    """SOURCE_PAIR dicts -> ``StageOutput(main=CODE_SNIPPET dicts, rejected=dead letters)``."""

    def __init__(self, config: ExtractionConfig):
        super().__init__()
        self._config = config

    def expand(self, pairs):  # -> StageOutput (see there why unannotated)
        return ExtractCodeFn(self._config).apply(pairs, "Extract")
