"""Snakemake's handling of rule params, without importing dataframe libraries into its own process.

Snakemake (9.x) imports pandas, and polars and numpy, into its own process whenever they are
installed, whatever the params are:

* before it runs anything on a store with outputs, it compares every job's params with the ones
  it recorded (to rerun jobs whose params changed), and serialises each param with pandas'
  help (a pandas object is hashed with pandas);
* for every ``script:`` job it runs, it stores the params in the ``snakemake`` object it hands
  to the script, converting pandas, numpy and polars objects on the way.

All three are installed beside this project (Qlib needs pandas, the jobs polars), and only the
jobs need them. Measured on a 368-day store: a run with nothing to do held 273 MB with pandas
imported against 206 MB without (5.1 s against 4.9 s); Snakemake's process during a one-day
add, 288 MB against 201 MB. (numpy is imported anyway, by the scheduler's solver, highspy.)

This workflow's params are built from the YAML config (strings, numbers, lists, dicts), never
dataframes or arrays. :func:`handle_params_without_dataframe_libraries` makes Snakemake take its
plain path for such values (the one it takes when the libraries are not installed, which gives
the same result for them) and keeps its own code for a value that is an object of one of those
libraries. The Snakefile calls it while it is parsed, before Snakemake checks or runs any job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Packages whose objects Snakemake converts or hashes specially when they are params.
DATAFRAME_PACKAGES = frozenset({"pandas", "numpy", "polars"})


def _from_dataframe_library(value: Any) -> bool:
    return type(value).__module__.partition(".")[0] in DATAFRAME_PACKAGES


def _serializer(persistence: Any) -> Callable[[Any], Any]:
    """Snakemake's ``_serialize_param`` property: its plain serialiser but for a pandas object."""
    def serialize(value: Any) -> Any:
        if _from_dataframe_library(value):
            return persistence._serialize_param_pandas(value)
        return persistence._serialize_param_builtin(value)

    return serialize


def _store_params(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """Snakemake's ``Snakemake._safely_store_params`` for the script's ``snakemake`` object."""
    def store(self: Any, params: Any) -> None:
        values = list(params)
        if any(_from_dataframe_library(v) for v in values):
            original(self, params)  # Snakemake's own conversions
            return
        from snakemake.iocontainers import Params

        # what Snakemake's own code stores when no param needs converting
        self._params_store = Params(toclone=values)
        self._params_types = {}
        self._params_store._take_names(params._get_names())

    return store


def handle_params_without_dataframe_libraries() -> bool:
    """Make Snakemake import pandas, numpy or polars for a param only when it is one of their objects.

    Returns whether both places were changed. A Snakemake version without the methods this
    relies on is left as it is (its runs import the libraries, and work the same).
    """
    try:
        from snakemake.iocontainers import Snakemake
        from snakemake.persistence import PersistenceBase
    except ImportError:
        return False
    if not all(hasattr(PersistenceBase, name) for name in
               ("_serialize_param", "_serialize_param_builtin", "_serialize_param_pandas")):
        return False
    if not hasattr(Snakemake, "_safely_store_params"):
        return False
    PersistenceBase._serialize_param = property(_serializer)  # type: ignore[assignment,method-assign]
    if not getattr(Snakemake._safely_store_params, "_feeder", False):  # once per process
        store = _store_params(Snakemake._safely_store_params)
        store._feeder = True  # type: ignore[attr-defined]
        Snakemake._safely_store_params = store  # type: ignore[method-assign]
    log.debug("Snakemake imports dataframe libraries only for params that are their objects")
    return True
