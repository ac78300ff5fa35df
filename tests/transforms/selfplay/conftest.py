"""Fixtures of the self-play tests.

``run_in_process`` executes a program in this process and says whether it ran cleanly. It stands in for the
sandbox (``transforms.execute``) and is only ever given puzzles the tests wrote themselves: trusted, tiny and
fast, so no isolation or timeout is needed.
"""
from __future__ import annotations

import pytest


def _run_in_process(program: str) -> bool:
    try:
        exec(compile(program, "<selfplay-test>", "exec"), {"__name__": "__selfplay_test__"})
    except Exception:  # noqa: BLE001 - any failure is "did not run cleanly", as in the judge
        return False
    return True


@pytest.fixture
def run_in_process():
    return _run_in_process


@pytest.fixture(scope="session")
def p3_data(shared_data):
    from transforms.selfplay.p3 import load_p3

    return load_p3(shared_data / "p3")
