"""Fixtures the decontamination tests share: HumanEval's items and the default method set's index over them."""
from __future__ import annotations

import pytest

from transforms.decontam import benchmarks as B
from transforms.decontam.methods import DecontamConfig, DecontamIndex


@pytest.fixture(scope="module")
def items():
    return B.load_humaneval()


@pytest.fixture(scope="module")
def index(items):
    return DecontamIndex.build(items, DecontamConfig())
