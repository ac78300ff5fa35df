"""Shared test fixtures and the test tiers.

Every test that starts a real model engine carries ``@pytest.mark.engine``. The fast tier (``-m "not engine"``)
forbids real engines in this process and in the jobs it launches (``runners.engines.FORBID_REAL_ENGINES_ENV``), so
a test that starts one without the marker fails instead of silently slowing the tier down. A test that asks for
an engine fixture without the marker is an error at collection.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INVERSE_INSTRUCT_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real corpora). Skips when a user's clone has no ``../shared``."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"real-data test: {data} is absent (only CI and dev machines have ../shared)")
    return data


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A session fixture's directory, built once per test session even under pytest-xdist: the first worker to
    ask builds it under a file lock in the session's shared temp root, the others wait and reuse it (each
    worker otherwise builds its own copy of every session fixture). Fixtures built this way must be read-only
    to their tests."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        out = tmp_path_factory.mktemp(name)
        build(out)
        return out
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # shared by this session's workers, new each session
    out, built = root / name, root / f"{name}.built"
    with FileLock(str(root / f"{name}.lock")):
        if not built.exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            build(out)
            built.touch()
    return out


# Session-scoped engines (one vLLM and one transformers engine for the whole run), shared by every test file.
pytest_plugins = ["tests.engine_fixtures"]

ENGINE_FIXTURES = {"vllm_engine", "transformers_engine"}


def pytest_configure(config):
    from runners.engines import FORBID_REAL_ENGINES_ENV

    if "not engine" in (config.getoption("markexpr") or ""):
        os.environ[FORBID_REAL_ENGINES_ENV] = "1"


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items
                if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("engine") is None]
    if unmarked:
        raise pytest.UsageError("tests that use an engine fixture must be marked @pytest.mark.engine:\n  "
                                + "\n  ".join(unmarked))
    # Longest first: parallel workers (pytest-xdist) then finish together instead of one waiting on a long tail.
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)
