"""Dead-letter records (``schemas.records.rejected``): provenance comes from the payload unless given."""
from __future__ import annotations

from schemas.records import RecordKind, rejected


def _dead(record, **provenance):
    return rejected(record, record_kind=RecordKind.SOURCE_PAIR, reason="bad_record", stage="read", **provenance)


def test_row_zero_is_kept_as_row_zero():
    assert _dead({"id": "a", "source_uri": "f.jsonl", "source_row": 0})["source_row"] == 0
    assert _dead({"id": "a", "source_uri": "f.jsonl", "source_row": 5}, source_row=0)["source_row"] == 0
    assert _dead({"id": "a", "source_uri": "f.jsonl", "source_row": 3})["source_row"] == 3


def test_minus_one_only_when_the_row_is_unknown():
    assert _dead({"id": "a", "source_uri": "f.jsonl"})["source_row"] == -1
    assert _dead({"id": "a", "source_uri": "f.jsonl", "source_row": None})["source_row"] == -1
    assert _dead("not a mapping")["source_row"] == -1

