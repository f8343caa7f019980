"""Shared pytest fixtures. Keep this file small: helpers specific to one stage live in its test module."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def okx_samples_dir() -> Path:
    """Real OKX payload samples (tests/fixtures/okx-samples, provenance in its README)."""
    return FIXTURES_DIR / "okx-samples"
