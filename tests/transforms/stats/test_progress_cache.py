"""The engine line of a resumed run: a request answered from the inference cache is answered for its kind (generate
or judge), the cache's share is said per kind, and only a kind that still waits on the engine shows the waiting
clock; a run without a cache reads as before. The counters are written by hand, as the probe's reports saw them."""
from __future__ import annotations

from runners.api import GenerateRequest, GenerateResult, SamplingSpec, ScoreRequest, ScoreResult
from runners.cache import CachingModelHandler, request_key
from tests.transforms.stats.test_progress import DEMO, _engine, _rate, _reports
from transforms.stats import progress

HINT = "; the engine starts on its first batch, then answers whole batches at once"


def test_a_resumed_run_whose_generations_all_came_from_the_cache_waits_on_the_judge_only(tmp_path, monkeypatch):
    # The probe: 48 generations answered from the cache (summarize out 48), the 48 judge requests sent to the engine.
    counters = {"extract.in": 48, "extract.out": 48, "summarize.in": 16, "summarize.out": 48,
                "summarize.requests.generate": 48, "summarize.requests.score": 48,
                "inference_cache.hits": 48, "inference_cache.hits.generate": 48, "inference_cache.misses": 48}
    reports = _reports(tmp_path, monkeypatch, {t: counters for t in (10, 20, 30, 40)})
    line = _engine(reports[40])
    assert line.strip() == ("engine: generate 48/48 (48 from the inference cache), "
                            "judge 0/48 (no answers yet after 40s)" + HINT), line
    assert "ETA" not in line and "/s" not in line and "tokens" not in line, line


def test_a_run_without_a_cache_reads_as_before(tmp_path, monkeypatch):
    reports = _reports(tmp_path, monkeypatch, DEMO)
    assert _engine(reports[90]).strip() == "engine: generate 0/65 (no answers yet after 1m10s)" + HINT
    assert _engine(reports[100]).strip() == "engine: generate 64/100, 7,119 tokens (89/s over 1m20s)"
    assert _engine(reports[110]).strip() == ("engine: generate 100/100, judge 0/65 (no answers yet after 10s), "
                                             "11,088 tokens (123/s over 1m30s)")


def test_a_partial_resume_counts_the_cache_as_answered_and_times_only_the_engine(tmp_path, monkeypatch):
    # 100 generations: 40 from the cache at once, the engine answers none for 50 s, then 30 and 20 more; the 30
    # judge requests planned so far were all in the cache.
    cache = {"summarize.requests.generate": 100, "summarize.requests.score": 30, "inference_cache.hits": 70,
             "inference_cache.hits.generate": 40, "inference_cache.hits.score": 30}
    engine = {60: (30, 3000), 70: (50, 5000)}
    timeline = {t: {**cache, "engine.done.generate": engine.get(t, (0, 0))[0],
                    "engine.generated_tokens": engine.get(t, (0, 0))[1]} for t in range(10, 80, 10)}
    reports = _reports(tmp_path, monkeypatch, timeline)
    waiting = _engine(reports[50]).strip()
    assert waiting == ("engine: generate 40/100 (40 from the inference cache; no engine answers yet after 50s), "
                       "judge 30/30 (30 from the inference cache)" + HINT), waiting
    first = _engine(reports[60]).strip()
    assert first == ("engine: generate 70/100 (40 from the inference cache), judge 30/30 (30 from the inference "
                     "cache), 3,000 tokens (50/s over 1m00s)"), first
    settled = _engine(reports[70]).strip()
    # 10 left; the engine answered 20 in the 10 s after its first answers: the cache's 40 are not in that rate
    assert "generate 90/100 (40 from the inference cache)" in settled and "generate ETA 5s " in settled, settled
    assert abs(_rate(settled) - 5000 / 70) <= 1, settled  # the engine's own tokens over the engine's own time
    assert "no answers yet" not in settled and "judge ETA" not in settled, settled


def test_the_totals_of_a_release_that_counted_hits_only_in_all_still_read(tmp_path, monkeypatch):
    done = {"summarize.requests.generate": 10, "summarize.requests.score": 10, "inference_cache.hits": 20}
    line = _engine(_reports(tmp_path, monkeypatch, {10: done, 20: done})[20])
    assert "20 answered from the inference cache" in line and "no answers yet" not in line, line


class _Prediction:
    def __init__(self, inference):
        self.inference = inference


class _Engine:
    """Answers every request it is sent, and remembers how many."""

    def __init__(self):
        self.sent = 0

    def run_inference(self, batch, model, inference_args=None):
        self.sent += len(batch)
        return [_Prediction(GenerateResult(texts=("x",)) if isinstance(r, GenerateRequest)
                            else ScoreResult(logprobs={1: -0.5})) for r in batch]


def test_the_cache_counts_its_hits_by_kind_and_in_all_once(tmp_path):
    generate = [GenerateRequest(prompt=f"p{i}", spec=SamplingSpec(seed=i)) for i in range(5)]
    score = [ScoreRequest(prompt=f"s{i}", token_ids=(1, 2)) for i in range(3)]
    CachingModelHandler(_Engine(), str(tmp_path), "id").run_inference(generate[:3] + score[:1], model=None)
    progress.LIVE.reset()
    engine = _Engine()
    CachingModelHandler(engine, str(tmp_path), "id").run_inference(generate + score, model=None)
    counts = {k: v for k, v in progress.LIVE.snapshot().items() if k.startswith("inference_cache.")}
    assert engine.sent == 4 and request_key("id", generate[0]) != request_key("id", score[0])
    assert counts["inference_cache.hits"] == 4 and counts["inference_cache.misses"] == 4, counts
    assert counts["inference_cache.hits.generate"] == 3 and counts["inference_cache.hits.score"] == 1, counts
    # launch.counter_totals(result, "inference_cache.") keys by the rest of the name: "hits" is still the total
    rest = {k[len("inference_cache."):]: v for k, v in counts.items()}
    assert rest["hits"] == 4 and set(rest) >= {"hits", "hits.generate", "hits.score", "misses"}
