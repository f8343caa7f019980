"""feeder.job: a workflow script run as ``python -m feeder.job`` sees what it sees under ``script:``.

The oracle is Snakemake itself: one throw-away workflow runs the same script both ways, with named
single files, named lists (one of them empty), params and a wildcard, and the script writes down
what it read. The clean and resample rules run this way in every end-to-end build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from feeder.job import JobFiles, main

REPO = Path(__file__).resolve().parent.parent

# What a workflow script reads of `snakemake`, written down (and whether Snakemake was imported).
SCRIPT = """
import json, sys
seen = {
    "input": list(snakemake.input), "keys": sorted(snakemake.input.keys()),
    "one": snakemake.input.one, "many": list(snakemake.input.many), "none": list(snakemake.input.none),
    "output": snakemake.output.table, "log": snakemake.log[0],
    "params": [snakemake.params.factor, list(snakemake.params.freqs)], "day": snakemake.wildcards.day,
    "snakemake_imported": "snakemake" in sys.modules,
}
open(snakemake.output.table, "w").write(json.dumps(seen))
"""

SNAKEFILE = """
from feeder.job import job_json

PARAMS = dict(factor=50, freqs=["1min", "day"])


def job(wildcards, input, output):
    return job_json(input=input, output=output, wildcards=wildcards, params=PARAMS)


rule all:
    input: expand("out/{way}/2024-03-01.json", way=["script", "job"])


rule via_script:
    input: one="in/a.txt", many=["in/b.txt", "in/c.txt"], none=[]
    output: table="out/script/{day}.json"
    log: "logs/script/{day}.log"
    params: factor=PARAMS["factor"], freqs=PARAMS["freqs"]
    script: "see.py"


rule via_job:
    input: one="in/a.txt", many=["in/b.txt", "in/c.txt"], none=[]
    output: table="out/job/{day}.json"
    log: "logs/job/{day}.log"
    params: job=job
    shell: '"$PYTHON_FOR_TEST" -m feeder.job see.py {params.job:q} {log:q}'
"""


def test_a_script_reads_the_same_job_as_under_script_without_importing_snakemake(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "see.py").write_text(SCRIPT)
    (tmp_path / "in").mkdir()
    for name in "abc":
        (tmp_path / "in" / f"{name}.txt").write_text(name)
    env = {**os.environ, "PYTHON_FOR_TEST": sys.executable, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--quiet"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    under_script, under_job = (json.loads((tmp_path / "out" / way / "2024-03-01.json").read_text())
                               for way in ("script", "job"))
    assert under_script.pop("snakemake_imported") is True  # the cost feeder.job avoids
    assert under_job.pop("snakemake_imported") is False
    assert under_script["output"] == "out/script/2024-03-01.json" and under_script["log"] == "logs/script/2024-03-01.log"
    for seen in (under_script, under_job):
        seen["output"], seen["log"] = seen["output"].replace("/script/", "/job/"), seen["log"].replace("/script/", "/job/")
    assert under_job == under_script
    assert under_job["many"] == ["in/b.txt", "in/c.txt"] and under_job["none"] == []
    assert under_job["keys"] == ["many", "none", "one"] and under_job["day"] == "2024-03-01"


def test_a_name_the_job_does_not_have_says_which_it_has() -> None:
    files = JobFiles(["a", "b", "c"], {"one": [0, None], "many": [1, 3]})
    assert files.one == "a" and files.many == ["b", "c"] and list(files) == ["a", "b", "c"]
    with pytest.raises(AttributeError, match=r"no file named 'stream' \(it has \['many', 'one'\]\)"):
        _ = files.stream


def test_a_wrong_command_line_says_how_to_call_it() -> None:
    with pytest.raises(SystemExit, match="usage: python -m feeder.job <workflow script> <job JSON> <log file>"):
        main(["script.py", "{}"])


def test_a_failing_script_fails_the_job(tmp_path: Path) -> None:
    """The script's exception ends the process with a traceback and a non-zero status: Snakemake
    marks the job failed and removes its outputs, as under ``script:``."""
    script = tmp_path / "fails.py"
    script.write_text(textwrap.dedent("""
        raise ValueError(f"no bars for {snakemake.wildcards.day}")
    """))
    spec = json.dumps({"input": {"files": [], "names": {}}, "output": {"files": [], "names": {}},
                       "wildcards": {"day": "2024-03-01"}, "params": {}})
    done = subprocess.run([sys.executable, "-m", "feeder.job", str(script), spec, str(tmp_path / "x.log")],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1 and "ValueError: no bars for 2024-03-01" in done.stderr
