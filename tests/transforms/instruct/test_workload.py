"""The main job's request estimate (transforms.instruct.workload): how far it reads, and what it concludes."""
import pytest

from transforms.instruct.workload import AT_LEAST, AT_MOST, EXACT, EXTRAPOLATED, estimate_requests


def _pairs(keys, read=None):
    """Pairs carrying their snippet key (None: extraction rejects the pair); ``read`` collects what was read."""
    for i, key in enumerate(keys):
        if read is not None:
            read.append(i)
        yield {"key": key}


def _key(pair):
    return pair["key"]


def _untouchable():
    raise AssertionError("the corpus was read")
    yield  # pragma: no cover


def test_a_limit_too_small_to_reach_the_threshold_reads_nothing():
    estimate = estimate_requests(_untouchable(), _key, per_snippet=5, limit=20, enough=3_300)
    assert (estimate.requests, estimate.bound, estimate.records_read) == (100, AT_MOST, 0)


def test_reading_stops_once_the_threshold_is_reached():
    read = []
    keys = [f"s{i}" if i % 2 == 0 else None for i in range(10_000)]  # every other record yields a snippet
    estimate = estimate_requests(_pairs(keys, read), _key, per_snippet=10, limit=None, enough=300)
    assert estimate.bound == AT_LEAST and estimate.snippets == 30 and estimate.requests == 300
    assert estimate.records_read == 59 and len(read) == 59  # s0, s2, ..., s58


def test_a_small_corpus_is_counted_whole_and_equal_snippets_count_once():
    keys = ["a", "b", None, "a", "c", "b", None]
    estimate = estimate_requests(_pairs(keys), _key, per_snippet=4, limit=None, enough=1_000)
    assert (estimate.requests, estimate.bound, estimate.records_read, estimate.snippets) == (12, EXACT, 7, 3)


def test_a_limit_is_reached_at_the_yield_of_the_records_read():
    keys = [f"s{i}" if i % 4 == 0 else None for i in range(100_000)]  # one record in four yields a snippet
    # the threshold is reached after 400 records: the job's 4,000 records at that yield make 10 x 1,000 requests
    estimate = estimate_requests(_pairs(keys), _key, per_snippet=10, limit=4_000, enough=1_000)
    assert estimate.bound == EXTRAPOLATED and estimate.records_read == 397 and estimate.requests == 10_076
    # a limit the reading reaches first: its records are the sample (100 of 400 yield a snippet)
    estimate = estimate_requests(_pairs(keys), _key, per_snippet=10, limit=400, enough=2_000)
    assert (estimate.requests, estimate.bound, estimate.records_read) == (1_000, EXTRAPOLATED, 400)


def test_a_low_yield_corpus_larger_than_the_sample_is_a_lower_bound():
    keys = [f"s{i}" if i % 1_000 == 0 else None for i in range(50_000)]
    estimate = estimate_requests(_pairs(keys), _key, per_snippet=10, limit=None, enough=3_300, max_records=5_000)
    assert (estimate.requests, estimate.bound, estimate.records_read) == (50, AT_LEAST, 5_000)
    # with a limit, the sample's yield is extrapolated to it
    estimate = estimate_requests(_pairs(keys), _key, per_snippet=10, limit=40_000, enough=3_300, max_records=5_000)
    assert (estimate.requests, estimate.bound) == (400, EXTRAPOLATED)


@pytest.mark.parametrize("bound, words", [(AT_MOST, "at most 100 requests"), (AT_LEAST, "at least 100 requests"),
                                          (EXACT, "100 requests (3 snippets in its 9 records)"),
                                          (EXTRAPOLATED, "about 100 requests")])
def test_descriptions_say_how_sure_they_are(bound, words):
    from transforms.instruct.workload import RequestEstimate

    assert words in RequestEstimate(100, bound, 9, 3).describe()
