"""Benchmarks. Prints one table of measured figures; nothing here asserts a speed target.

    python -m bench.run [--symbols 50] [--days 30] [--repeat 3] [--no-baselines]
                        [--incremental [--history-days 365]] [--workdir bench-data]

Every timed step runs in a fresh process (bench/measure.py): figures are medians of --repeat
runs, peak RSS is that of the largest single process (one Snakemake job, or Snakemake itself).

Scenario "rebuild": a seeded store of N symbols x D days of 1m stream shards (bench/workload.py)
is turned into a Qlib directory by `snakemake --cores 2` (all configured frequencies: 1min,
5min, 60min, day), with the local simulator serving the REST side (instrument list, daily
turnover for the universe, funding history, backfill). An untimed warm-up run does the REST
fetches once; each timed run is `--forcerun clean`, i.e. everything downstream of the raw store
(clean, resample, coverage, export) from scratch. Reported: wall time, candles/s, peak RSS.

Baselines, same run, same raw store (bench/baselines.py), as ratios to the polars limit and to
the pipeline: pandas per symbol-day (the seed's approach), pandas -> CSV -> Qlib's official
dump_bin.py (what a user would do today), and one polars process (the limit).

Correctness (bench/check.py), after the runs: the pipeline's Qlib output must equal each
baseline's slot by slot at float32 (timestamps with a value and the values) for every common
instrument, field and frequency (sums over minutes may differ by one float32 ulp at a rounding
tie, counted and printed; see there); otherwise SystemExit with the first mismatches, after the
table. Also printed: how many slots of the 24/7 calendars dump_bin's calendars (the union of the
observed timestamps) lack.

Scenario "incremental" (--incremental): a store of --history-days days (its own workload, in
WORKDIR/incremental), built untimed first; then (a) a full rebuild of those days (`--forcerun
clean`, the denominator) and (b) adding one day (config `end` + 1, plain `snakemake`), as a
share of (a), with the jobs Snakemake ran (its "Job stats" table, printed under the table).
Repeats of (b) add successive days (N+1, N+2, ...: one day onto N, N+1, ... days), so each is a
real one-day add with no state to rewind; the history grows by one day per repeat (negligible).
The run's raw store holds the shards of the built days only (hard links into the workload),
plus hour 00 of the day after the last one, which holds its 23:59 candle: the store as it is
at a daily build after 01:00 UTC. The new day's shards appear with the add, so the REST side
does what a daily run does (instrument list, turnover, universe, funding), and the backfill
finds nothing missing. Also printed: the peak RSS of the D-day rebuild, the N-day rebuild and
the one-day add, to judge whether memory grows with history length.

Scenario "dag": `snakemake -n` DAG build time for 365 days x 300 instruments.

History acquisition (archive+rest versus REST only, at OKX's rate limits) is its own benchmark:
`python -m bench.history_sources [--instruments 50] [--days 365] [--rest-days 2]`, see there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.check import Comparison, compare_dirs, implied_calendar, read_calendar
from bench.workload import generate
from harness.processes import REPO, SimulatorEndpoints, simulator, write_config

SEED = 7
HISTORY_START = "2024-01-01"
FIRST_DAY = dt.date(2024, 2, 1)
CHECK_FIELDS = ["open", "high", "low", "close", "volume", "amount", "vwap", "factor"]
BASELINES = (  # (row name, bench.measure kind)
    ("pandas per symbol-day (seed approach)", "pandas"),
    ("pandas + CSV + qlib dump_bin", "dumpbin"),
    ("polars single process (limit)", "polars"),
)

REBUILD_ROW = "full rebuild raw->qlib, snakemake --cores 2"

Result = dict[str, Any]


@dataclass
class Notes:
    """What is printed under the table."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def measured(args: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.measure", *args], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench step {args[:2]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def day_list(first: dt.date, n: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(n)]


def ensure_workload(workdir: Path, symbols: int, days: list[dt.date], label: str, *,
                    by_day: bool = False) -> dict[str, Any]:
    """Generate ``workdir/raw`` once per (symbols, days); a stamp file records it (``by_day``:
    regenerate a store whose stamp predates the per-day candle counts)."""
    raw = workdir / "raw"
    stamp = workdir / f"workload-{symbols}x{len(days)}.json"
    clock = clock_after(days[-1])  # the simulator's clock in the runs below: the same market
    stale = stamp.exists() and json.loads(stamp.read_text()).get("clock_start") != clock
    if not stamp.exists() or stale or (by_day and "candles_by_day" not in json.loads(stamp.read_text())):
        shutil.rmtree(raw, ignore_errors=True)
        for old in workdir.glob("workload-*.json"):
            old.unlink()
        gen = generate(raw_root=raw, seed=SEED, history_start=HISTORY_START, days=days, n_symbols=symbols,
                       clock_start=clock)
        stamp.write_text(json.dumps({**gen, "clock_start": clock}))
    gen = json.loads(stamp.read_text())
    print(f"workload ({label}): {gen['symbols']} symbols/day x {len(days)} days = {gen['candles']:,} candles, "
          f"{gen['lines']:,} lines, {gen['bytes'] / 1e6:.0f} MB", flush=True)
    return gen


def clock_after(last_day: dt.date) -> str:
    return (last_day + dt.timedelta(days=1)).isoformat() + "T01:00:00Z"


def configure(run_dir: Path, endpoints: SimulatorEndpoints, first: dt.date, last: dt.date, symbols: int) -> Path:
    cfg = run_dir / "config.yaml"
    write_config(cfg, endpoints=endpoints, data_dir=run_dir, start=first.isoformat(), end=last.isoformat(),
                 size=symbols)
    return cfg


def snakemake(run_dir: Path, cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(run_dir),
            "--configfile", str(cfg), "--cores", "2", *extra]


def summarise(name: str, runs: list[dict[str, float]], candles: float) -> Result:
    wall = statistics.median(r["wall_s"] for r in runs)
    return {"scenario": name, "median_s": wall, "candles_per_s": candles / wall if candles else float("nan"),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs), "runs": [round(r["wall_s"], 1) for r in runs]}


def job_stats(log_text: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (rule -> job count, plus "total") from its output."""
    lines = log_text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return {}
    stats: dict[str, int] = {}
    for line in lines[start + 3:]:  # skip "Job stats:", the header and the dashes
        match = re.fullmatch(r"\s*(\S+)\s+(\d+)\s*", line)
        if not match:
            break
        stats[match.group(1)] = int(match.group(2))
    return stats


# --------------------------------------------------------------------------------------------
# Scenario: full rebuild, baselines, correctness
# --------------------------------------------------------------------------------------------


def run_rebuild(*, symbols: int, days: int, repeat: int, workdir: Path, baselines: bool,
                notes: Notes) -> list[Result]:
    built = day_list(FIRST_DAY, days)
    gen = ensure_workload(workdir, symbols, built, "rebuild")
    results: list[Result] = []
    run_dir = workdir / "pipeline"
    with simulator(seed=SEED, clock_start=clock_after(built[-1]), speed=1, history_start=HISTORY_START,
                   cert_dir=workdir / "certs", log_path=workdir / "simulator.log") as sim:
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = configure(run_dir, sim, built[0], built[-1], symbols)
        (run_dir / "raw").mkdir(parents=True, exist_ok=True)
        (run_dir / "raw" / "ws").symlink_to(workdir / "raw" / "ws")
        base = snakemake(run_dir, cfg, "--quiet")
        # Warm-up (not timed): the REST side once (instrument list, daily turnover, funding
        # history, backfill of what the stream lacks). Timed runs then rebuild everything
        # downstream of the raw store: clean, resample, coverage, export.
        warm = measured(["cmd", "--", *base])
        print(f"  warm-up run (with REST fetches): {warm['wall_s']:.1f}s", flush=True)
        runs = []
        for i in range(repeat):
            runs.append(measured(["cmd", "--", *base, "--forcerun", "clean"]))
            print(f"  snakemake run {i + 1}/{repeat}: {runs[-1]['wall_s']:.1f}s", flush=True)
        results.append(summarise(REBUILD_ROW, runs, gen["candles"]))
    if not baselines:
        return results
    for name, kind in BASELINES:
        runs = []
        for i in range(repeat):
            # the raw store the pipeline read: stream shards + the REST shards its warm-up wrote
            runs.append(measured([kind, str(run_dir / "raw"), str(workdir / f"out-{kind}"), built[0].isoformat(),
                                  str(days)]))
            print(f"  {kind} run {i + 1}/{repeat}: {runs[-1]['wall_s']:.1f}s", flush=True)
        results.append(summarise(name, runs, gen["candles"]))
    check_outputs(run_dir=run_dir, workdir=workdir, days=built, notes=notes)
    return results


def check_outputs(*, run_dir: Path, workdir: Path, days: list[dt.date], notes: Notes) -> None:
    """Compare the pipeline's Qlib directory with every baseline's (bench/check.py)."""
    qlib = (run_dir / "qlib").resolve()
    freqs = list(yaml.safe_load((run_dir / "config.yaml").read_text())["frequencies"])
    implied = {freq: implied_calendar(days[0], len(days), freq) for freq in freqs}
    dump_dir = workdir / "out-dumpbin" / "qlib"
    comparisons = [
        compare_dirs(baseline=name, reference=qlib, other=other, freqs=freqs, fields=CHECK_FIELDS,
                     other_calendar=None if kind == "dumpbin" else implied)
        for name, kind in BASELINES
        for other in [dump_dir if kind == "dumpbin" else workdir / f"out-{kind}"]
    ]
    for comparison in comparisons:
        report_comparison(comparison, notes)
    missing = {freq: implied[freq].size - read_calendar(dump_dir, freq).size for freq in freqs
               if (dump_dir / "calendars" / f"{freq}.txt").exists()}
    if missing:
        notes.lines.append(
            "dump_bin calendars are the union of observed timestamps, not 24/7: they lack "
            + ", ".join(f"{n:,} of {implied[f].size:,} {f} slots" for f, n in missing.items())
            + " (a minute where no symbol traded vanishes and its neighbours become adjacent bars)")


def report_comparison(comparison: Comparison, notes: Notes) -> None:
    notes.lines.append(comparison.summary())
    if not comparison.ok:
        notes.failures.append(f"{comparison.baseline}: " + "; ".join(comparison.mismatches[:5])
                              if comparison.mismatches else f"{comparison.baseline}: nothing compared")


# --------------------------------------------------------------------------------------------
# Scenario: incremental one-day add
# --------------------------------------------------------------------------------------------


def expose(run_dir: Path, raw_ws: Path, day: dt.date, hours: set[str] | None = None) -> None:
    """Hard-link the stream shards of ``day`` (only ``hours`` if given) into the run's raw store.

    Links, not a directory symlink: Snakemake lists shards with os.walk, which does not follow
    symlinked directories below the root it starts from (and a copy would cost disk and time).
    """
    source = raw_ws / "candle1m" / day.isoformat()
    for hour_dir in sorted(p for p in source.iterdir() if p.is_dir()) if source.is_dir() else []:
        if hours is not None and hour_dir.name not in hours:
            continue
        target = run_dir / "raw" / "ws" / "candle1m" / day.isoformat() / hour_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for shard in hour_dir.iterdir():
            if not (target / shard.name).exists():
                try:
                    os.link(shard, target / shard.name)
                except OSError:  # another filesystem
                    shutil.copy2(shard, target / shard.name)


def expose_through(run_dir: Path, raw_ws: Path, last: dt.date, first: dt.date) -> None:
    """The raw store as it is once ``last`` is complete: its days' shards and hour 00 of the
    next day (which holds the 23:59 candle of ``last``), as at a daily build after 01:00 UTC."""
    for day in day_list(first, (last - first).days + 1):
        expose(run_dir, raw_ws, day)
    expose(run_dir, raw_ws, last + dt.timedelta(days=1), {"00"})


def run_incremental(*, symbols: int, history_days: int, repeat: int, workdir: Path, notes: Notes) -> list[Result]:
    inc_dir = workdir / "incremental"
    inc_dir.mkdir(parents=True, exist_ok=True)
    # the stream of the last day reaches into hour 00 of the day after it (its 23:59 candle)
    all_days = day_list(FIRST_DAY, history_days + repeat)
    history = all_days[:history_days]
    gen = ensure_workload(inc_dir, symbols, all_days, "incremental", by_day=True)
    by_day: dict[str, int] = gen["candles_by_day"]
    run_dir = inc_dir / "pipeline"
    results: list[Result] = []
    with simulator(seed=SEED, clock_start=clock_after(all_days[-1]), speed=1, history_start=HISTORY_START,
                   cert_dir=inc_dir / "certs", log_path=inc_dir / "simulator.log") as sim:
        shutil.rmtree(run_dir, ignore_errors=True)
        cfg = configure(run_dir, sim, history[0], history[-1], symbols)
        expose_through(run_dir, inc_dir / "raw" / "ws", history[-1], history[0])
        warm = measured(["cmd", "--", *snakemake(run_dir, cfg, "--quiet")])
        print(f"  incremental store: {history_days} days built (untimed): {warm['wall_s']:.1f}s", flush=True)
        full = []
        for i in range(repeat):
            full.append(measured(["cmd", "--", *snakemake(run_dir, cfg, "--quiet", "--forcerun", "clean")]))
            print(f"  full rebuild of {history_days} days {i + 1}/{repeat}: {full[-1]['wall_s']:.1f}s", flush=True)
        adds, jobs = [], []
        for i, new_day in enumerate(all_days[history_days:]):
            configure(run_dir, sim, history[0], new_day, symbols)
            expose_through(run_dir, inc_dir / "raw" / "ws", new_day, new_day)
            log = inc_dir / "logs" / f"add-{new_day}.log"
            # no --quiet: Snakemake then prints its "Job stats" table (what was rebuilt)
            adds.append(measured(["cmd", "--log", str(log), "--", *snakemake(run_dir, cfg)]))
            jobs.append(job_stats(log.read_text()))
            print(f"  add day {new_day} to {history_days + i} days: {adds[-1]['wall_s']:.1f}s, "
                  f"{jobs[-1].get('total', '?')} jobs", flush=True)
    full_row = summarise(f"rebuild {history_days} days (incremental store)", full,
                         sum(by_day[d.isoformat()] for d in history))
    add_row = summarise(f"add one day to {history_days} days", adds,
                        statistics.median(by_day[d.isoformat()] for d in all_days[history_days:]))
    add_row["ratio"] = f"{add_row['median_s'] / full_row['median_s']:.1%} of full"
    results += [full_row, add_row]
    for stats in [j for i, j in enumerate(jobs) if j not in jobs[:i]]:  # each distinct job mix once
        rules = ", ".join(f"{rule} {n}" for rule, n in stats.items() if rule != "total")
        notes.lines.append(f"one-day add ran {stats.get('total', '?')} jobs: {rules or '(no Job stats found)'}")
    return results


# --------------------------------------------------------------------------------------------
# Scenario: DAG build time
# --------------------------------------------------------------------------------------------


def run_dag(*, days: int, instruments: int, workdir: Path, repeat: int) -> Result:
    """`snakemake -n` DAG build time for a config of `days` days x `instruments` instruments.

    The workflow's DAG does not depend on the instrument count (jobs are per day; instruments
    live inside each day's files), so this is the cost of a long history.
    """
    run_dir = workdir / "dag"
    shutil.rmtree(run_dir, ignore_errors=True)
    endpoints = SimulatorEndpoints("https://127.0.0.1:9", "wss://127.0.0.1:9/ws/v5/public",
                                   "wss://127.0.0.1:9/ws/v5/business", None, 0)  # type: ignore[arg-type]
    first = dt.date(2023, 1, 1)
    cfg = configure(run_dir, endpoints, first, first + dt.timedelta(days=days - 1), instruments)
    runs = [measured(["cmd", "--", *snakemake(run_dir, cfg, "-n", "--quiet")]) for _ in range(repeat)]
    return summarise(f"snakemake -n, {days} days x {instruments} instruments", runs, 0)


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def add_ratios(results: list[Result]) -> None:
    """``x limit`` for the rebuild rows, and ``x pipeline`` for the baselines (their median over
    the pipeline's: the issue's targets are pipeline <= 2x limit and pandas + dump_bin >= 5x)."""
    limit = next((r for r in results if r["scenario"] == BASELINES[-1][0]), None)
    pipeline = next((r for r in results if r["scenario"] == REBUILD_ROW), None)
    if limit is None:
        return
    for r in [r for r in results if r is pipeline or r["scenario"] in dict(BASELINES)]:
        parts = [f"{r['median_s'] / limit['median_s']:.1f}x limit"]
        if pipeline and r is not pipeline and r is not limit:
            parts.append(f"{r['median_s'] / pipeline['median_s']:.1f}x pipeline")
        r["ratio"] = ", ".join(parts)


def print_table(results: list[Result], header: str, notes: Notes) -> None:
    add_ratios(results)
    print()
    print(header)
    print(f"{'scenario':42} {'median s':>9} {'candles/s':>11} {'peak RSS MB':>12}  {'ratio':26} runs (s)")
    for r in results:
        rate = "-" if r["candles_per_s"] != r["candles_per_s"] else f"{r['candles_per_s']:,.0f}"  # NaN: no candles
        print(f"{r['scenario']:42} {r['median_s']:>9.1f} {rate:>11} {r['peak_rss_mb']:>12.0f}  "
              f"{r.get('ratio', '-'):26} {r['runs']}")
    if notes.lines:
        print()
        for line in notes.lines:
            print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-data")
    parser.add_argument("--no-baselines", action="store_true", help="only the pipeline (and no correctness check)")
    parser.add_argument("--incremental", action="store_true", help="also the one-day add to a long history")
    parser.add_argument("--history-days", type=int, default=365, help="history length of --incremental")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    notes = Notes()
    results = run_rebuild(symbols=args.symbols, days=args.days, repeat=args.repeat, workdir=workdir,
                          baselines=not args.no_baselines, notes=notes)
    if args.incremental:
        results += run_incremental(symbols=args.symbols, history_days=args.history_days, repeat=args.repeat,
                                   workdir=workdir, notes=notes)
        rebuild, full, add = results[0], results[-2], results[-1]
        notes.lines.append(f"peak RSS of any job: {args.days}-day rebuild {rebuild['peak_rss_mb']:.0f} MB, "
                           f"{args.history_days}-day rebuild {full['peak_rss_mb']:.0f} MB, one-day add to "
                           f"{args.history_days} days {add['peak_rss_mb']:.0f} MB")
    results.append(run_dag(days=365, instruments=300, workdir=workdir, repeat=args.repeat))
    print_table(results, f"{args.symbols} symbols x {args.days} days, medians of {args.repeat} run(s)", notes)
    if notes.failures:
        raise SystemExit("benchmark correctness FAILED (the figures above do not compare like with like):\n  "
                         + "\n  ".join(notes.failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
