"""Shared pytest fixtures. Keep this file small: helpers specific to one stage live in its test module."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def okx_samples_dir() -> Path:
    """Real OKX payload samples (tests/fixtures/okx-samples, provenance in its README)."""
    return FIXTURES_DIR / "okx-samples"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the files holding slow tests first, then those holding end-to-end or install tests, then
    the rest (each file's tests in their order; ties in collection order).

    With ``-n 4 --dist loadfile --no-loadscope-reorder`` (scripts/test.sh) each file goes to one
    worker as a unit, in this order. A file of builds takes one to two minutes, a file of unit tests
    seconds: pytest-xdist's own order (the files with the most tests first) starts the builds last,
    so the run ended with one build alone on one core while the other idled. Started first, the
    builds overlap each other and the quick files fill the gaps.
    """
    rank: dict[Path, int] = {}  # a file's rank is that of its heaviest test
    for item in items:
        own = 0 if item.get_closest_marker("slow") else 1 if any(
            item.get_closest_marker(m) for m in ("e2e", "install")) else 2
        rank[item.path] = min(rank.get(item.path, 2), own)
    items.sort(key=lambda item: rank[item.path])  # stable: ties keep the collection order
