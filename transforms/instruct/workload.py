"""How many engine requests the main job will make, estimated before it starts from the first records of its corpus.
Pure: the caller gives the records and the extraction.

Each extracted (deduplicated) snippet gets ``per_snippet`` candidate instructions, and each candidate is generated
once and judged once: one request here is one such candidate. The engine's compile choice needs only to know
whether a job reaches a threshold (``enough``), so reading stops there; a job smaller than the threshold reads
at most its whole corpus, or ``max_records`` of it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable

# At 5,000 records/s (the extraction DoFn on one core) the sample costs at most about 4 s before a job starts.
MAX_SAMPLE_RECORDS = 20_000

EXACT, AT_LEAST, AT_MOST, EXTRAPOLATED = "exact", "at least", "at most", "extrapolated"


@dataclasses.dataclass(frozen=True)
class RequestEstimate:
    requests: int
    bound: str  # EXACT, AT_LEAST, AT_MOST or EXTRAPOLATED (from the sample's yield to --limit records)
    records_read: int
    snippets: int

    def describe(self) -> str:
        if self.bound == AT_MOST:
            return f"at most {self.requests:,} requests (--limit x --num-candidates)"
        read = f"{self.snippets:,} snippets in {'its' if self.bound == EXACT else 'the first'} " \
               f"{self.records_read:,} records"
        if self.bound == EXTRAPOLATED:
            return f"about {self.requests:,} requests ({read}, at that yield over --limit records)"
        return f"{'at least ' if self.bound == AT_LEAST else ''}{self.requests:,} requests ({read})"


def estimate_requests(pairs: Iterable[dict[str, Any]], snippet_key: Callable[[dict[str, Any]], str | None],
                      per_snippet: int, limit: int | None, enough: int,
                      max_records: int = MAX_SAMPLE_RECORDS) -> RequestEstimate:
    """Requests of a job over ``pairs`` (its corpus in file order) that keeps ``limit`` records (None: all).
    ``snippet_key`` is a pair's snippet key (its dedup key), or None when extraction rejects it; equal keys count
    once. Reading stops once the snippets found make ``enough`` requests, or at ``limit`` or ``max_records``
    records."""
    if limit is not None and limit * per_snippet < enough:  # even a snippet from every record stays below
        return RequestEstimate(limit * per_snippet, AT_MOST, 0, 0)
    keys: set[str] = set()
    records = 0
    exhausted = True
    for pair in pairs:
        if records >= max_records or (limit is not None and records >= limit):
            exhausted = False
            break
        records += 1
        key = snippet_key(pair)
        if key is not None:
            keys.add(key)
            if len(keys) * per_snippet >= enough:
                exhausted = False
                break
    requests = len(keys) * per_snippet
    if exhausted or (limit is not None and records >= limit):
        # the whole corpus, or the --limit records the job keeps (the sample's yield stands for theirs)
        return RequestEstimate(requests, EXACT if exhausted else EXTRAPOLATED, records, len(keys))
    if limit is not None:  # --limit records at the yield of the records read
        return RequestEstimate(round(requests * limit / records), EXTRAPOLATED, records, len(keys))
    return RequestEstimate(requests, AT_LEAST, records, len(keys))
