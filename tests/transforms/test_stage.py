"""The stage contract's counting: a StageFn sums its counts per bundle and publishes them all."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from transforms import stage as stage_module
from transforms.stage import NAMESPACE, Reject, StageBooks, StageFn
from transforms.stats import progress


class _KeepEvens(StageFn):
    stage = "test_evens"

    def process_record(self, n):
        if n % 2:
            yield Reject("odd", f"{n} is odd")
        else:
            yield n


def _committed_counters(result) -> dict[str, int]:
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    return {c.key.metric.name: c.committed for c in counters}


def test_every_count_of_a_stage_fn_reaches_beam_and_the_live_view():
    numbers = list(range(1, 1001))
    evens = sum(1 for n in numbers if n % 2 == 0)  # 500
    progress.LIVE.reset()
    pipeline = beam.Pipeline(options=PipelineOptions(["--direct_num_workers=1"]))
    out = _KeepEvens().apply(pipeline | beam.Create(numbers, reshuffle=True), "Evens")
    _ = out.main | "Main" >> beam.Map(lambda x: x)
    result = pipeline.run()
    result.wait_until_finish()
    counters = _committed_counters(result)
    assert counters["test_evens.in"] == 1000
    assert counters["test_evens.out"] == evens == 500
    assert counters["test_evens.rejected.odd"] == 500
    live = progress.LIVE.snapshot()
    assert (live["test_evens.in"], live["test_evens.out"], live["test_evens.rejected.odd"]) == (1000, 500, 500)


def test_summed_books_publish_only_on_flush_or_after_the_flush_interval(monkeypatch):
    progress.LIVE.reset()
    books = StageBooks("test_summed", "source_pair", summed=True)
    for _ in range(3):
        books.took()
    assert "test_summed.in" not in progress.LIVE.snapshot()  # waiting for the bundle's end
    books.flush()
    assert progress.LIVE.snapshot()["test_summed.in"] == 3
    monkeypatch.setattr(stage_module, "FLUSH_SECONDS", 0.0)  # a long bundle: the live view still moves
    books.took()
    assert progress.LIVE.snapshot()["test_summed.in"] == 4


def test_unsummed_books_publish_each_count():
    progress.LIVE.reset()
    books = StageBooks("test_unsummed", "source_pair")
    books.took(2)
    assert progress.LIVE.snapshot()["test_unsummed.in"] == 2
