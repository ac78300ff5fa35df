"""The manifest's counts: a stage whose input is several PCollections counts them part by part, with the same
totals as counting their Flatten."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from transforms.stats.accounting import CollectCounts, StageTally


def test_tuple_inputs_are_counted_as_their_union():
    with beam.Pipeline(runner="DirectRunner") as p:
        kept = p | "Kept" >> beam.Create([{"i": i} for i in range(7)])
        dropped = p | "Dropped" >> beam.Create([{"reason": "bad_record"}] * 3 + [{"reason": "not_utf8"}])
        empty = p | "Empty" >> beam.Create([])
        counts = p | CollectCounts([
            StageTally("read", (kept, dropped, empty), kept, dropped),
            StageTally("again", (kept, kept), kept, None),
        ])
        assert_that(counts, equal_to([{
            "read|in": 11, "read|out": 7, "read|rejected|bad_record": 3, "read|rejected|not_utf8": 1,
            "again|in": 14, "again|out": 7,
        }]))


def test_a_stage_without_counters_of_its_own_shows_in_the_live_progress(tmp_path):
    from transforms.stats import progress

    progress.LIVE.reset()
    with beam.Pipeline(runner="DirectRunner") as p:
        read = p | "Read" >> beam.Create([{"id": i} for i in range(9)])
        sampled = read | "Sample" >> beam.Filter(lambda r: r["id"] < 4)  # like --limit 4
        _ = p | CollectCounts([StageTally("limit", read, sampled, None)])
    snapshot = progress.LIVE.snapshot()
    assert (snapshot.get("limit.in"), snapshot.get("limit.out")) == (9, 4), snapshot
    rows = dict(progress.stage_rows(snapshot, ["read", "limit", "extract"]))
    assert rows["limit"] == {"in": 9, "out": 4, "rejected": 0}
    # a stage with its own counters (a StageFn) is not counted twice
    progress.LIVE.reset()
    with beam.Pipeline(runner="DirectRunner") as p:
        kept = p | "Kept" >> beam.Create([{"i": 1}])
        dropped = p | "Dropped" >> beam.Create([{"reason": "bad"}])
        _ = p | CollectCounts([StageTally("read", (kept, dropped), kept, dropped)])
    assert progress.LIVE.snapshot() == {}
