"""Peak memory and wall time of each rule's jobs: the figures behind the rules' `resources:`.

    python -m bench.rule_memory --run-dir bench-data/pipeline [--forcerun clean] [-- extra snakemake args]

Runs Snakemake on an existing run directory (e.g. the one `python -m bench.run` leaves in
bench-data/pipeline) and samples every job process every 50 ms: Snakemake runs each `script:`
job as `python .../.snakemake/scripts/tmpXXXX.<script>.py`, and the day rules run
`python -m feeder.job .../workflow/scripts/<script>.py`, so the script name identifies the rule. Prints, per script, the number of jobs, the largest peak RSS and the longest wall time.
Sampling can miss a peak shorter than 50 ms; the figures are a floor, which is why the rules
declare several times more.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from harness.processes import REPO

# a `script:` job runs Snakemake's copy of the script; a day job (clean, resample) `python -m feeder.job <script>`
SCRIPT = re.compile(r"\.snakemake/scripts/tmp[^.]+\.([A-Za-z0-9_]+)\.py|-m feeder\.job \S*/workflow/scripts/([A-Za-z0-9_]+)\.py")


def job_processes(run_dir: Path) -> dict[int, str]:
    """pid -> script name of the Snakemake script jobs running now in ``run_dir``."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            match = SCRIPT.search(text)
            if match and Path(cmdline.parent / "cwd").resolve() == run_dir:
                found[int(cmdline.parent.name)] = match.group(1) or match.group(2)
        except OSError:
            continue
    return found


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):  # the kernel's own high-water mark of the resident set
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="directory holding config.yaml")
    parser.add_argument("--forcerun", default="clean", help="rule to force (and everything after it)")
    parser.add_argument("--cores", default="2")
    args, extra = parser.parse_known_args(argv)
    run_dir = args.run_dir.resolve()
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(run_dir),
           "--configfile", str(run_dir / "config.yaml"), "--cores", args.cores, "--quiet",
           *(["--forcerun", args.forcerun] if args.forcerun else []), *[a for a in extra if a != "--"]]
    jobs: dict[int, dict[str, float | str]] = {}
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        now = time.monotonic()
        for pid, script in job_processes(run_dir).items():
            job = jobs.setdefault(pid, {"script": script, "start": now, "end": now, "rss": 0.0})
            job["end"] = now
            job["rss"] = max(float(job["rss"]), rss_mb(pid))
        time.sleep(0.05)
    if proc.returncode != 0:
        print(proc.stderr.read()[-3000:] if proc.stderr else "", file=sys.stderr)
        return proc.returncode
    by_script: dict[str, list[dict[str, float | str]]] = {}
    for job in jobs.values():
        by_script.setdefault(str(job["script"]), []).append(job)
    print(f"{'script (rule)':24} {'jobs':>5} {'peak RSS MB':>12} {'longest s':>10}")
    for script, runs in sorted(by_script.items()):
        peak = max(float(r["rss"]) for r in runs)
        longest = max(float(r["end"]) - float(r["start"]) for r in runs)
        print(f"{script:24} {len(runs):>5} {peak:>12.0f} {longest:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
