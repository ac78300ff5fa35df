"""A damaged line in an inference-cache part (cut short by a kill) is skipped with one warning naming the file; its
request is asked of the engine again and the rest of the cache still answers."""
from __future__ import annotations

import json
import logging

from runners.cache import CachingModelHandler, request_key
from tests.runners.test_cache import IDENTITY, ReportingHandler, requests


def test_a_line_cut_short_in_a_part_is_skipped_with_a_warning_and_its_request_asked_again(tmp_path, caplog):
    root = tmp_path / "cache"
    batch = requests(3)
    CachingModelHandler(ReportingHandler(), str(root), IDENTITY, flush_seconds=0).run_inference(batch, model=None)
    torn_key = request_key(IDENTITY, batch[2])
    holding = [p for p in root.glob("part-*.jsonl") if torn_key in p.read_text()]
    assert len(holding) == 1
    part = holding[0]
    lines = part.read_text().splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line)["key"] != torn_key]
    torn = next(line for line in lines if json.loads(line)["key"] == torn_key)
    part.write_text("".join(kept) + torn[: len(torn) // 2])  # the write a kill cut short
    other = sorted(p for p in root.glob("part-*.jsonl") if p != part)[0]
    with other.open("a") as f:
        f.write('{"key": "x", "val')  # and a partial line appended after the last complete one

    base = ReportingHandler()
    with caplog.at_level(logging.WARNING, logger="runners.cache"):
        results = CachingModelHandler(base, str(root), IDENTITY).run_inference(batch, model=None)
    assert base.calls == [[batch[2].prompt]]
    assert len(results) == 3 and all(p.inference.texts for p in results)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any(part.name in w and "1 unreadable line" in w for w in warnings)
    assert any(other.name in w and "1 unreadable line" in w for w in warnings)
