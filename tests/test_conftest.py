"""tests/conftest.py's file order: the longest files first, from tests/file_seconds.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def test_the_recorded_seconds_name_test_files_that_exist():
    """A renamed or deleted file left in the record would order nothing; a new file is ordered by its markers."""
    record = json.loads((TESTS / "file_seconds.json").read_text(encoding="utf-8"))
    seconds = record["seconds"]
    assert seconds and all(isinstance(v, (int, float)) and v >= 0 for v in seconds.values())
    missing = sorted(name for name in seconds if not (TESTS / name).is_file())
    assert not missing, f"{missing} are in tests/file_seconds.json but not in tests/: rerun with --record-file-seconds"


def test_files_start_longest_first():
    """The collected order of the real suite: every file's tests together, files by falling recorded seconds."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(TESTS)],
                         capture_output=True, text=True, cwd=TESTS.parent, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    nodeids = [line for line in out.stdout.splitlines() if "::" in line]
    files = [nid.split("::", 1)[0].rsplit("/", 1)[-1] for nid in nodeids]
    files = [f for i, f in enumerate(files) if i == 0 or files[i - 1] != f]  # one entry per run of a file
    seconds = json.loads((TESTS / "file_seconds.json").read_text(encoding="utf-8"))["seconds"]
    assert len(files) == len(set(files)), "a file's tests were split apart"
    known = [seconds[f] for f in files if f in seconds]
    assert known == sorted(known, reverse=True)
    assert files[0] == max(seconds, key=seconds.get)
