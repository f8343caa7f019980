"""Snakemake handles the workflow's params without importing pandas, numpy or polars into its own
process (feeder.snakemake_params).

End to end: tests/test_workflow_params.py (test_changing_universe_size_or_the_websocket_urls_refetches_nothing)
finds a params change on a built store with no such import.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: Run as ``python -c PROBE original|patched``: what Snakemake makes of config-like params, and
#: which dataframe libraries that imported.
PROBE = """
import json, sys
from snakemake.iocontainers import Params, Snakemake
from snakemake.persistence import UNREPRESENTABLE
from snakemake.persistence.file import FilePersistence  # the default persistence; no __init__ needed here

if sys.argv[1] == "patched":
    from feeder.snakemake_params import handle_params_without_dataframe_libraries
    assert handle_params_without_dataframe_libraries()
    assert handle_params_without_dataframe_libraries()  # the Snakefile parsed again: no change

def named(*values, **named_values):
    params = Params(toclone=[*values, *named_values.values()])
    for i, name in enumerate(named_values, start=len(values)):
        params._add_name(name)
        params._set_name(name, i)
    return params

def stored(params):
    obj = Snakemake.__new__(Snakemake)
    obj._safely_store_params(params)
    return obj._params_store, obj._params_types

serialize = FilePersistence.__new__(FilePersistence)._serialize_param
values = ["top50", 50, 2.5, ["1min", "day"], {"size": 50, "rank_by": "quote_volume"}, None, True, object]
store, types = stored(named("2024-03-03", freqs=["1min", "day"], spike_factor=50, market="top50"))
out = {"serialised": [repr(s) if s is not UNREPRESENTABLE else "unrepresentable" for s in map(serialize, values)],
       "stored": [repr(list(store)), repr(list(store._get_names())), repr(types), store.freqs],
       "loaded": [m for m in ("pandas", "numpy", "polars") if m in sys.modules]}
import numpy as np, pandas as pd, polars as pl
frame = pd.DataFrame({"a": [1, 2]})
out["frame_hashed"] = serialize(frame) == repr(pd.util.hash_pandas_object(frame).tolist())
out["converted"] = stored(named(frame, np.arange(3), pl.DataFrame({"b": [1]})))[1]
print(json.dumps(out))
"""


def probe(mode: str) -> dict:
    res = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_config_params_are_handled_alike_without_dataframe_libraries() -> None:
    """Params made from the config (text, numbers, lists, dicts) serialise to the same text and are
    stored for the script alike, with and without the change; only without it does that import
    pandas, numpy and polars. Objects of those libraries still take Snakemake's own paths (hashed
    with pandas, converted for the script)."""
    original, patched = probe("original"), probe("patched")
    assert patched["serialised"] == original["serialised"]
    assert patched["stored"] == original["stored"] and patched["stored"][3] == ["1min", "day"]
    assert original["loaded"] == ["pandas", "numpy", "polars"] and patched["loaded"] == []
    for out in (original, patched):
        assert out["frame_hashed"] and out["converted"] == {"0": "pd.DataFrame", "1": "np.ndarray",
                                                            "2": "pl.DataFrame"}
