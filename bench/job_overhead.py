"""What one Snakemake job costs before it does any work: ``script:`` versus ``shell: python -m``.

    python -m bench.job_overhead [--jobs 40] [--repeat 3]

Runs, with ``snakemake --cores 1`` (jobs one after another, so the wall time is the sum of their
costs), a throw-away workflow of N jobs that each only import what a stage job imports
(polars and feeder.resample) and write an empty file:

* ``script:`` (how every rule of this workflow runs its Python): Snakemake writes a copy of the
  script with a preamble that unpickles the ``snakemake`` object (it imports snakemake.script);
* ``shell: "python -m ..."``: the lean entry point the issue suggests measuring;
* ``shell: "true"``: Snakemake's own per-job cost, no Python started.

Prints the median wall time per job of each (medians of ``--repeat`` runs). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMPORTS = "import polars, feeder.resample"

SNAKEFILE = """
N = {jobs}

rule all:
    input: expand("out/{{kind}}/{{i}}.done", kind=["{kind}"], i=range(N))

rule via_script:
    output: "out/script/{{i}}.done"
    script: "job.py"

rule via_module:
    output: "out/module/{{i}}.done"
    shell: "{python} -m job_module {{output}}"

rule via_true:
    output: "out/true/{{i}}.done"
    shell: "touch {{output}}"
"""


def run(kind: str, jobs: int) -> float:
    with tempfile.TemporaryDirectory(prefix="job-overhead-") as tmp:
        root = Path(tmp)
        (root / "Snakefile").write_text(SNAKEFILE.format(jobs=jobs, kind=kind, python=sys.executable))
        (root / "job.py").write_text(f"{IMPORTS}\nopen(snakemake.output[0], 'w').close()\n")
        (root / "job_module.py").write_text(f"import sys\n{IMPORTS}\nopen(sys.argv[1], 'w').close()\n")
        env_path = f"{root}:{REPO}"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--quiet", "--scheduler", "greedy"],
                       cwd=root, check=True, capture_output=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.job_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args(argv)
    times: dict[str, list[float]] = {"true": [], "module": [], "script": []}
    for _ in range(opts.repeat):  # interleaved, so a change in machine load hits every kind alike
        for kind in times:
            times[kind].append(run(kind, opts.jobs))
    print(f"\nSnakemake, {opts.jobs} jobs in a row (--cores 1), medians of {opts.repeat}\n")
    print("| job body | whole run | per job |")
    print("|---|---|---|")
    labels = {"true": 'shell: "touch" (no Python)', "module": 'shell: "python -m job" (imports polars, feeder.resample)',
              "script": 'script: (same imports, the Snakemake preamble)'}
    for kind, runs in times.items():
        med = statistics.median(runs)
        print(f"| {labels[kind]} | {med:.2f} s | {1000 * med / opts.jobs:.0f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
