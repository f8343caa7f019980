"""Snakemake's params check does not import pandas into Snakemake's process (feeder.snakemake_params).

The end-to-end check, on a store with outputs and a changed param, is in
tests/test_workflow_params.py (test_changing_universe_size_or_the_websocket_urls_refetches_nothing).
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from snakemake.persistence.file import FilePersistence  # the default persistence; no __init__ needed here
plain = FilePersistence.__new__(FilePersistence)._serialize_param_builtin
values = ["top50", 50, 2.5, ["1min", "day"], {"size": 50, "rank_by": "quote_volume"}, None, True, object()]
expected = [plain(v) for v in values]
from feeder.snakemake_params import compare_params_without_pandas
assert compare_params_without_pandas()
serialize = FilePersistence.__new__(FilePersistence)._serialize_param
got = [serialize(v) for v in values]
pandas_before = "pandas" in sys.modules
import pandas as pd
frame = pd.DataFrame({"a": [1, 2]})
print(json.dumps({"same": [repr(g) == repr(e) for g, e in zip(got, expected)], "pandas_imported": pandas_before,
                  "frame": serialize(frame) == repr(pd.util.hash_pandas_object(frame).tolist())}))
"""


def test_params_serialise_as_before_and_pandas_only_for_pandas_values() -> None:
    """Config-made params (text, numbers, lists, dicts) give the same text as Snakemake's own plain
    serialiser, without importing pandas; a pandas object is still hashed with pandas."""
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"same": [True] * 8, "pandas_imported": False, "frame": True}
