"""Shared pytest fixtures. Keep this file small: helpers specific to one stage live in its test module."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).parent / "fixtures"
FILE_SECONDS = Path(__file__).parent / "file_seconds.json"
# A file missing from FILE_SECONDS (a new one) is estimated from its heaviest marker.
UNMEASURED_SECONDS = {"slow": 40.0, "e2e": 30.0, "install": 30.0}


@pytest.fixture(scope="session")
def okx_samples_dir() -> Path:
    """Real OKX payload samples (tests/fixtures/okx-samples, provenance in its README)."""
    return FIXTURES_DIR / "okx-samples"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--record-file-seconds", action="store_true",
                     help=f"after the run, write each test file's seconds to {FILE_SECONDS.name} "
                          "(the order the files start in)")


def _read_record(path: Path) -> dict:
    """The record at ``path`` as a JSON object; empty when there is none or it is not one."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _seconds_of(record: dict) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in record["seconds"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}


def read_file_seconds(path: Path = FILE_SECONDS) -> dict[str, float]:
    """The recorded seconds per test file name; empty when there is no record or it is damaged
    (the markers alone then order the files: the order changes the run's length, never its result)."""
    return _seconds_of(_read_record(path))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the longest test files first (each file's tests in their order; ties in collection order).

    With ``-n 4 --dist loadfile --no-loadscope-reorder`` (scripts/test.sh) each file goes to one
    worker as a unit, in this order, and a worker takes its next file when it has two tests
    left. A file of builds takes one to two minutes, a file of unit tests seconds: started
    longest first (what the file took in the recorded run, tests/file_seconds.json; a new file
    by its markers), the builds overlap each other and the quick files fill the gaps, so the workers
    finish together instead of one running a long build alone at the end (simulated on a
    recorded run: the busiest worker 257 s in marker order, 231 s longest first).
    """
    recorded = read_file_seconds()
    cost: dict[Path, float] = {}
    for item in items:
        estimate = max([s for m, s in UNMEASURED_SECONDS.items() if item.get_closest_marker(m)], default=1.0)
        cost[item.path] = recorded.get(item.path.name, estimate)
    items.sort(key=lambda item: -cost[item.path])  # stable: ties keep the collection order


_seconds_by_file: defaultdict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _seconds_by_file[Path(report.nodeid.split("::", 1)[0]).name] += report.duration


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not session.config.getoption("--record-file-seconds") or hasattr(session.config, "workerinput"):
        return  # only the controller (or a run without xdist) writes the record
    FILE_SECONDS.write_text(recorded_json(FILE_SECONDS, _seconds_by_file), encoding="utf-8")


def recorded_json(path: Path, measured: dict[str, float]) -> str:
    """The record at ``path`` with the files of this run replaced by what they took now.

    Files this run did not include keep their recorded seconds, so a partial run
    (``pytest tests/test_clean.py --record-file-seconds``) does not drop the rest; a deleted
    file's entry is what tests/test_conftest.py reports. A damaged record starts afresh.
    """
    record = _read_record(path)
    seconds = {**_seconds_of(record), **{name: round(value, 1) for name, value in measured.items()}}
    record["seconds"] = dict(sorted(seconds.items(), key=lambda kv: -kv[1]))
    return json.dumps(record, indent=1, ensure_ascii=False) + "\n"
