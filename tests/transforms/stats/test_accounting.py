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
