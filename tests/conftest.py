"""Shared fixtures: tiny random-initialised reference models saved by
transformers, and the engine's SIMD level reset after tests that force one."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def simd_reset():
    import ecomlm._core as core

    yield core
    core.set_simd_level(core.simd_detected())
