"""Exact dedup of snippets: which copy of a group of equal snippets survives. Pure."""
from __future__ import annotations

from typing import Any, Iterable


def _provenance_key(snippet: dict[str, Any]) -> tuple:
    return (snippet["source_uri"], snippet["source_row"], snippet["source_id"])


def choose_survivor(snippets: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The copy with the smallest provenance (uri, row) survives, so the choice is the same on every run
    whatever order the runner delivers the group in."""
    ordered = sorted(snippets, key=_provenance_key)
    return ordered[0], ordered[1:]
