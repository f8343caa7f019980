"""Where a rebuild's time goes: Snakemake's own process, the jobs' start-up, the jobs' work.

    python -m bench.rebuild_profile [--run-dir bench-data/pipeline] [--repeat 3]

Run after ``python -m bench.run`` (it reuses that run's directory and raw store: no REST is
needed, ``--forcerun clean`` rebuilds everything downstream of the raw store). Each repeat is
one ``snakemake --cores 2 --forcerun clean`` in a fresh process that records, at its exit, the
CPU time of Snakemake's own process and of all the jobs it waited for (``getrusage``). Then, per
rule that ran, the CPU a job of it spends before its work starts: a fresh Python running the
preamble Snakemake wrote into that rule's script (it unpickles the ``snakemake`` object; kept from
one more, untimed rebuild with ``--skip-script-cleanup``) and the script's import statements.

Printed (medians over the repeats): wall time; CPU of Snakemake's process; CPU of the jobs; the
jobs' start-up CPU (jobs x start-up per rule); the rest of the jobs' CPU, which is their work.
On N cores, wall >= (Snakemake CPU + jobs' CPU) / N: the table shows how much of that bound each
part takes. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.run import job_stats, snakemake

REPO = Path(__file__).resolve().parent.parent
CORES = 2  # bench.run.snakemake's --cores

# Runs Snakemake in this process and prints its own and its children's CPU time at exit.
RUSAGE_WRAPPER = """
import atexit, json, resource, runpy, sys, time
t0 = time.perf_counter()
def report():
    me, jobs = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print("RUSAGE " + json.dumps({"wall_s": time.perf_counter() - t0,
                                  "snakemake_cpu_s": me.ru_utime + me.ru_stime,
                                  "jobs_cpu_s": jobs.ru_utime + jobs.ru_stime}), file=sys.stderr)
atexit.register(report)
sys.argv = ["snakemake", *sys.argv[1:]]
runpy.run_module("snakemake", run_name="__main__")
"""


def rebuild(run_dir: Path, *extra: str) -> tuple[dict[str, float], dict[str, int]]:
    """One ``--forcerun clean`` rebuild: (wall and CPU figures, jobs per rule)."""
    command = snakemake(run_dir, run_dir / "config.yaml", "--forcerun", "clean", *extra)
    argv = [sys.executable, "-c", RUSAGE_WRAPPER, *command[command.index("snakemake") + 1:]]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stderr.splitlines() if x.startswith("RUSAGE "))
    jobs = job_stats(proc.stdout + proc.stderr)
    jobs.pop("total", None)
    return json.loads(line.removeprefix("RUSAGE ")), jobs


def script_of_rule(rule: str) -> tuple[Path, bool] | None:
    """The script a rule runs, and whether through ``python -m feeder.job`` (the day rules) rather
    than ``script: "../scripts/x.py"`` (workflow/rules/*.smk)."""
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        match = re.search(rf"^\s*(?:rule|checkpoint) {re.escape(rule)}:\n(.*?)(?=^\s*(?:rule|checkpoint) |\Z)",
                          text, flags=re.MULTILINE | re.DOTALL)
        if match:
            script = re.search(r'script:\s*\n\s*"([^"]+)"', match.group(1))
            if script:
                return (smk.parent / script.group(1)).resolve(), False
            lean = re.search(r'-m feeder\.job "\$FEEDER_JOB_SCRIPTS/([^"]+)"', match.group(1))
            return (REPO / "workflow" / "scripts" / lean.group(1), True) if lean else None
    return None


PREAMBLE_END = "######## snakemake preamble end #########"


def script_imports(script: str) -> str:
    """A script's top-level import statements."""
    tree = ast.parse(script)
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))


def job_start(kept: Path) -> str:
    """What a ``script:`` job does before its work: Snakemake's preamble of ``kept`` (a script
    Snakemake wrote for a job, kept with --skip-script-cleanup) and the script's imports."""
    preamble, _, script = kept.read_text().partition(PREAMBLE_END)
    return preamble + "\n" + script_imports(script)


def lean_job_start(script: Path) -> str:
    """What a ``python -m feeder.job`` job does before its work: feeder.job and the script's imports."""
    return "import feeder.job\n" + script_imports(script.read_text())


def startup_cpu_s(code: str, *, repeat: int) -> float:
    """Median CPU seconds of a fresh Python running ``code`` (a job's start, see :func:`job_start`)."""
    measure = code + "\nimport resource\nr = resource.getrusage(resource.RUSAGE_SELF)\nprint(r.ru_utime + r.ru_stime)"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.py"
        path.write_text(measure)
        runs = [float(subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=True,
                                     env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}).stdout.split()[-1])
                for _ in range(repeat)]
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=REPO / "bench-data" / "pipeline")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (args.run_dir / "config.yaml").exists():
        raise SystemExit(f"{args.run_dir} has no config.yaml: run `python -m bench.run` first")
    runs = []
    for i in range(args.repeat):
        figures, jobs = rebuild(args.run_dir)
        runs.append(figures)
        print(f"  rebuild {i + 1}/{args.repeat}: {figures['wall_s']:.1f} s", flush=True)
    wall = statistics.median(r["wall_s"] for r in runs)
    smk = statistics.median(r["snakemake_cpu_s"] for r in runs)
    jobs_cpu = statistics.median(r["jobs_cpu_s"] for r in runs)
    # one more rebuild, untimed, keeping the scripts Snakemake writes for its jobs (their preambles)
    scripts_dir = args.run_dir / ".snakemake" / "scripts"
    before = set(scripts_dir.glob("tmp*.py")) if scripts_dir.exists() else set()
    rebuild(args.run_dir, "--skip-script-cleanup")
    kept = sorted(set(scripts_dir.glob("tmp*.py")) - before)
    print(f"\njobs per rule, and a job's start-up CPU (preamble or feeder.job, + imports, median of {args.repeat}):")
    startup_total = 0.0
    try:
        for rule, n in sorted(jobs.items()):
            script, lean = script_of_rule(rule) or (None, False)
            sample = next((k for k in kept if script and k.name.endswith(f".{script.name}")), None)
            start = lean_job_start(script) if script and lean else job_start(sample) if sample else None
            each = startup_cpu_s(start, repeat=args.repeat) if start else 0.0
            startup_total += n * each
            print(f"  {rule:<18} {n:>4} jobs  {each * 1000:6.0f} ms each  {n * each:6.1f} s")
    finally:
        for path in kept:  # only the scripts this run made Snakemake keep
            path.unlink(missing_ok=True)
    total = smk + jobs_cpu
    print(f"\nrebuild, snakemake --cores {CORES} --forcerun clean, medians of {args.repeat}:")
    print(f"  wall                                  {wall:7.1f} s")
    print(f"  CPU, all processes                    {total:7.1f} s   (/ {CORES} cores = {total / CORES:.1f} s)")
    for name, cpu in (("Snakemake's own process", smk), ("jobs' start-up (preamble + imports)", startup_total),
                      ("jobs' work (the rest of the jobs' CPU)", jobs_cpu - startup_total)):
        print(f"  {name:<38}{cpu:7.1f} s   {100 * cpu / total:4.0f} %")


if __name__ == "__main__":
    main()
