"""Session-wide real engines on the embedded SmolLM2: ONE vLLM engine and ONE transformers engine per test run.

Use them from any test module with ``from tests.engine_fixtures import vllm_engine, transformers_engine``, or
(better: one registration for the whole run) ``pytest_plugins = ["tests.engine_fixtures"]`` in tests/conftest.py.

Importing a fixture into several modules makes pytest create one fixture per module, so the engines are kept in
a module-level cache: every module gets the same engine object, started once. They are closed at interpreter
exit by the engines' own atexit hook (which also shuts down vLLM's subprocesses), not by a fixture teardown, so
one module finishing cannot close an engine another module still uses.
"""
from __future__ import annotations

import os
import threading

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from runners.engines import EngineConfig, build_engine
from runners.model_resolution import resolve_model
from runners.options import engine_config_from_options

# Small enough to start fast on CPU, long enough for every test prompt.
TEST_MAX_MODEL_LEN = 2048
# The test vLLM engine, as job options and as the config they give. A job run in the test process with these
# options uses the model handler's shared engine that the handler tests already started (the engine is named by
# its config), instead of starting its own: each vLLM start costs about a minute on a 2-core CPU.
VLLM_JOB_OPTIONS = ("--engine=vllm", f"--max-model-len={TEST_MAX_MODEL_LEN}", "--kv-cache-gb=1")
VLLM_TEST_CONFIG = engine_config_from_options(PipelineOptions(list(VLLM_JOB_OPTIONS)))
TRANSFORMERS_TEST_CONFIG = EngineConfig(engine="transformers", max_model_len=TEST_MAX_MODEL_LEN)

_ENGINES: dict[EngineConfig, object] = {}
_LOCK = threading.Lock()


def shared_test_engine(config: EngineConfig):
    """The process-wide engine for ``config`` (started on first use)."""
    with _LOCK:
        engine = _ENGINES.get(config)
        if engine is None:
            engine = build_engine(config)
            _ENGINES[config] = engine
        return engine


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The dequantized SmolLM2 directory (built once into the model cache)."""
    return resolve_model("smollm2")


@pytest.fixture(scope="session")
def vllm_engine(smollm2_dir):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return shared_test_engine(VLLM_TEST_CONFIG)


@pytest.fixture(scope="session")
def transformers_engine(smollm2_dir):
    return shared_test_engine(TRANSFORMERS_TEST_CONFIG)
