"""Shared test fixtures and the test tiers.

Every test that starts a real model engine carries ``@pytest.mark.engine``. The fast tier
(``-m "not engine and not compile"``) forbids real engines in this process and in the jobs it launches
(``runners.engines.FORBID_REAL_ENGINES_ENV``), so a test that starts one without the marker fails instead of
silently slowing the tier down. A test that asks for an engine fixture without the marker is an error at
collection.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, NoReturn

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


def missing(reason: str) -> NoReturn:
    """A prerequisite that CI's ``make`` installs (Makefile, setup.py) is absent: a broken set-up under CI, so it
    fails there; elsewhere (a user's machine) the test skips."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


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
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # One compute thread per xdist worker (and per process it starts): the workers already fill the cores,
        # and two workers with a thread per core each fight over them.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
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
    spread_heavy_tests(items)


def spread_heavy_tests(items: list) -> None:
    """Space the ``heavy`` tests evenly through the run. pytest-xdist hands each worker a contiguous slice of the
    collection (and steals from the slices' tails), so heavy tests bunched in one file or at one end would all
    land on one worker while the other runs out of work."""
    heavy = [item for item in items if item.get_closest_marker("heavy") is not None]
    if not heavy:
        return
    light = [item for item in items if item.get_closest_marker("heavy") is None]
    step = len(items) / len(heavy)
    spread = []
    for index, item in enumerate(heavy):
        take = round(index * step) - len(spread)  # light tests before this heavy one
        spread.extend(light[:take])
        del light[:take]
        spread.append(item)
    items[:] = spread + light
