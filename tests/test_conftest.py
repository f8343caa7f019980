"""tests/conftest.py's file order: the longest files first, from tests/file_seconds.json."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("suite_conftest", TESTS / "conftest.py")
suite_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(suite_conftest)


def test_the_recorded_seconds_name_test_files_that_exist():
    """A renamed or deleted file left in the record would order nothing; a new file is ordered by its markers."""
    seconds = suite_conftest.read_file_seconds()
    assert seconds and all(v >= 0 for v in seconds.values())
    missing = sorted(name for name in seconds if not (TESTS / name).is_file())
    assert not missing, f"{missing} are in tests/file_seconds.json but not in tests/: rerun with --record-file-seconds"


def test_files_start_longest_first():
    """The collected order of the real suite: every file's tests together, files by falling recorded seconds."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(TESTS)],
                         capture_output=True, text=True, cwd=TESTS.parent, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    nodeids = [line for line in out.stdout.splitlines() if "::" in line]
    files = [Path(nid.split("::", 1)[0]).name for nid in nodeids]
    files = [f for i, f in enumerate(files) if i == 0 or files[i - 1] != f]  # one entry per run of a file
    seconds = suite_conftest.read_file_seconds()
    assert len(files) == len(set(files)), "a file's tests were split apart"
    known = [seconds[f] for f in files if f in seconds]
    assert known == sorted(known, reverse=True)
    assert files[0] == max(seconds, key=seconds.get)


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"seconds": [1]}', '{"seconds": {"a.py": "slow"}}',
                                  '{"other": {}}'])
def test_a_damaged_record_orders_by_markers_alone(tmp_path, text):
    record = tmp_path / "file_seconds.json"
    record.write_text(text, encoding="utf-8")
    assert suite_conftest.read_file_seconds(record) == {}
    assert suite_conftest.read_file_seconds(tmp_path / "absent.json") == {}


def test_recording_a_partial_run_keeps_the_other_files(tmp_path):
    record = tmp_path / "file_seconds.json"
    record.write_text(json.dumps({"_about": "kept", "seconds": {"test_a.py": 50.0, "test_b.py": 3.0}}), encoding="utf-8")
    written = json.loads(suite_conftest.recorded_json(record, {"test_b.py": 70.04, "test_c.py": 1.0}))
    assert written == {"_about": "kept", "seconds": {"test_b.py": 70.0, "test_a.py": 50.0, "test_c.py": 1.0}}
    assert list(written["seconds"]) == ["test_b.py", "test_a.py", "test_c.py"]
    record.write_text("[garbled", encoding="utf-8")
    assert json.loads(suite_conftest.recorded_json(record, {"test_c.py": 2.0})) == {"seconds": {"test_c.py": 2.0}}
