"""Shared fixtures: devices (CUDA skipped without a GPU) and a deterministic seed per test; the
hypothesis profiles (README, "Testing")."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

# `make test` and CI: the examples depend on the code only (no random draw, no example database
# replaying an earlier run's failures), so a run is reproducible; timing never fails a test.
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, deadline=None)
# HYPOTHESIS_PROFILE=search: ten times the examples, drawn at random (--hypothesis-seed=N
# repeats a draw), to look for failures beyond the fixed ones before a change is merged.
settings.register_profile("search", max_examples=1000, database=None, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param
