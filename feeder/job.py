"""Run a workflow script as a ``shell:`` job, without importing Snakemake into the job.

    python -m feeder.job <workflow script> <job JSON> <log file>

Snakemake's ``script:`` directive starts each job with a preamble that imports the
``snakemake`` package to unpickle the job's ``snakemake`` object: about 95 ms of CPU in every
job (measured: the imports of a resample job took 0.36 s with it, 0.27 s without), paid by the
two rules that run once a day (clean and resample, 60 of the 64 jobs of a 30-day rebuild). Those
rules run their scripts through this module instead. The rule hands the job's named input and
output files, wildcards and params as one JSON argument (built by :func:`job_json`, called from
``workflow/rules/common.smk``), and the script gets an object with the same attributes it reads
under ``script:`` (``snakemake.input.<name>``, ``snakemake.output.<name>``, ``snakemake.log[0]``,
``snakemake.params.<name>``, ``snakemake.wildcards.<name>``), so the script is the same file
either way. Anything else of Snakemake's object is not provided: a script that needs it runs
under ``script:``.
"""

from __future__ import annotations

import json
import runpy
import sys
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["JobFiles", "ScriptJob", "job_json", "main"]


class JobFiles(list):
    """A job's files in Snakemake's order, with the rule's names as attributes (``input.stream``).

    ``names`` maps a name to ``[start, end]``: one file (``end`` None) or the files
    ``[start:end]`` (a name whose input function returned a list), as in Snakemake's Namedlist.
    """

    def __init__(self, files: Iterable[str], names: Mapping[str, list[int | None]]) -> None:
        super().__init__(files)
        self._names = dict(names)

    def __getattr__(self, name: str) -> Any:
        try:
            start, end = self._names[name]
        except KeyError:
            raise AttributeError(f"this job has no file named {name!r} (it has {sorted(self._names)})") from None
        return self[start] if end is None else list(self[start:end])

    def keys(self) -> list[str]:
        return list(self._names)


class _Names(dict):
    """Params and wildcards: a mapping read as attributes (``params.freqs``, ``wildcards.day``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this job has no {name!r} (it has {sorted(self)})") from None


class ScriptJob:
    """What a workflow script reads as ``snakemake`` when it runs through this module."""

    def __init__(self, spec: Mapping[str, Any], log: str) -> None:
        self.input = JobFiles(spec["input"]["files"], spec["input"]["names"])
        self.output = JobFiles(spec["output"]["files"], spec["output"]["names"])
        self.params = _Names(spec["params"])
        self.wildcards = _Names(spec["wildcards"])
        self.log = JobFiles([log], {})


def _files(named: Any) -> dict[str, Any]:
    """A Snakemake Namedlist (a job's input or output) as JSON: its files and its names' spans."""
    return {"files": [str(f) for f in named],
            "names": {name: [start, end] for name, (start, end) in named._get_names()}}


def job_json(*, input: Any, output: Any, wildcards: Any, params: Mapping[str, Any]) -> str:
    """The job argument of ``python -m feeder.job``, from the job's Snakemake objects (a params
    function of the rule: Snakemake hands it the job's input, output and wildcards)."""
    return json.dumps({"input": _files(input), "output": _files(output),
                       "wildcards": dict(wildcards.items()), "params": dict(params)})


def main(argv: list[str] | None = None) -> None:
    """Run ``script`` with ``snakemake`` set to the job described by the JSON argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        raise SystemExit("usage: python -m feeder.job <workflow script> <job JSON> <log file>")
    script, spec, log = args
    runpy.run_path(script, init_globals={"snakemake": ScriptJob(json.loads(spec), log)}, run_name="__main__")


if __name__ == "__main__":
    main()
