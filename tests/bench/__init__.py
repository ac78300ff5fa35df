"""Tests of bench/ scripts' pure parts."""
from __future__ import annotations

import importlib.util
import sys

from tests.conftest import REPO


def load_bench(script: str, monkeypatch):
    """``bench/<script>`` as a fresh module; the ``sys.path`` entries it adds are undone after the test."""
    spec = importlib.util.spec_from_file_location(f"bench_{script.removesuffix('.py')}_under_test",
                                                  REPO / "bench" / script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the bench puts the repository first
    spec.loader.exec_module(module)
    return module
