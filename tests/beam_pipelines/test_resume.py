"""Resume without redoing inference: the main job is killed with SIGKILL once some inference results are cached,
then re-run into the same directory.

* transformers (deterministic): the re-run's outputs equal an uninterrupted run's, and its manifest shows the
  cache hits;
* vLLM: no request the killed run had cached is sent to the engine again, and no engine process survives.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runners.cache import MISS_LOG_ENV
from tests.conftest import REPO
from tests.golden.digest import output_digest
from tests.runners.test_model_handler import engine_processes

pytestmark = pytest.mark.engine  # every test here starts a real model engine

FUNCTIONS = [
    "def area(r):\n    return 3.14159 * r * r",
    "def is_even(n):\n    return n % 2 == 0",
    "def reverse_words(s):\n    return ' '.join(reversed(s.split()))",
    "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s.lower())",
]
# Small jobs: each test runs the job two or three times (the vLLM engine alone takes about a minute to start here).
NUM_CANDIDATES = 2


def _corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Task {i}", "response": f"```python\n{code}\n```"}) + "\n"
                            for i, code in enumerate(FUNCTIONS)))
    return path


def _command(corpus: Path, output: Path, engine: str) -> list[str]:
    return [sys.executable, "-m", "beam_pipelines.inverse_instruct", f"--input={corpus}", f"--output={output}",
            f"--engine={engine}", f"--num-candidates={NUM_CANDIDATES}", "--max-new-tokens=16",
            "--max-model-len=2048", "--temperature=0", "--min-batch-size=1", "--max-batch-size=2", "--quiet"]


def _env(**extra) -> dict:
    return {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **extra}


def _cache_keys(output: Path) -> set[str]:
    keys = set()
    for part in (output / "cache").glob("part-*.jsonl"):
        keys |= {json.loads(line)["key"] for line in part.read_text().splitlines() if line.strip()}
    return keys


def _kill_once_cached(command: list[str], output: Path, env: dict, min_parts: int = 2) -> set[str]:
    """Start the job, SIGKILL its whole process group once ``min_parts`` cache files exist; the cached keys."""
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while len(list((output / "cache").glob("part-*.jsonl"))) < min_parts:
            assert proc.poll() is None, "the job ended before it was killed: make it longer"
            assert time.monotonic() < deadline, "no inference result was cached in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return _cache_keys(output)


def test_killed_run_resumes_to_the_uninterrupted_outputs_on_transformers(tmp_path):
    corpus = _corpus(tmp_path)
    whole = tmp_path / "whole"
    subprocess.run(_command(corpus, whole, "transformers"), cwd=REPO, env=_env(), check=True, timeout=900,
                   capture_output=True)
    resumed = tmp_path / "resumed"
    cached = _kill_once_cached(_command(corpus, resumed, "transformers"), resumed, _env())
    assert cached and not (resumed / "manifest.json").exists()
    subprocess.run(_command(corpus, resumed, "transformers"), cwd=REPO, env=_env(), check=True, timeout=900,
                   capture_output=True)
    assert output_digest(str(resumed)) == output_digest(str(whole))
    manifest = json.loads((resumed / "manifest.json").read_text())
    assert manifest["inference_cache"]["hits"] >= len(cached)
    stages = manifest["stages"]
    total = stages["summarize"]["records_in"] * NUM_CANDIDATES + stages["self_evaluate"]["records_in"]
    assert manifest["inference_cache"]["hits"] + manifest["inference_cache"]["misses"] == total


def test_killed_vllm_run_answers_no_cached_request_twice_and_leaves_no_engine(tmp_path):
    corpus = _corpus(tmp_path)
    output = tmp_path / "out"
    before = {p.pid for p in engine_processes(set())}
    cached = _kill_once_cached(_command(corpus, output, "vllm"), output, _env())
    assert cached
    time.sleep(8)  # the watchdog stops the killed run's engine processes
    assert [p.pid for p in engine_processes(before)] == []
    misses = tmp_path / "misses.log"
    subprocess.run(_command(corpus, output, "vllm"), cwd=REPO, env=_env(**{MISS_LOG_ENV: str(misses)}), check=True,
                   timeout=900, capture_output=True)
    sent_again = set(misses.read_text().split()) if misses.exists() else set()
    assert not sent_again & cached
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["balanced"] and manifest["inference_cache"]["hits"] >= len(cached)
    assert manifest["inference_cache"]["misses"] == len(sent_again)
    time.sleep(3)
    assert [p.pid for p in engine_processes(before)] == []
