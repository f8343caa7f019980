"""Rules take only the config keys they use (issue 13): Snakemake re-runs a job whose params
change, so a REST job given a whole config block would re-fetch when an unrelated key changes.
Checked with real Snakemake dry runs over a work directory built against the simulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import okxsim
from harness.processes import REPO, write_config

DAY = "2024-03-04"
REST_RULES = {"daily_metrics", "archive", "backfill", "funding_history"}


def snakemake(cwd: Path, config_path: Path, targets: list[str], *, dry_run: bool, importtime: bool = False) -> str:
    """Snakemake's output (``importtime``: with Python's import log, ``import time: ... | module``)."""
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "snakemake", "--snakefile",
           str(REPO / "Snakefile"), "--configfile", str(config_path), "--cores", "2", *(["-n"] if dry_run else []),
           *targets]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def imported_modules(output: str) -> set[str]:
    """The modules Snakemake's own process imported (its output with ``importtime``)."""
    return {line.rsplit("|", 1)[1].strip() for line in output.splitlines() if line.startswith("import time:")}


def dataframe_libraries(output: str) -> set[str]:
    return {m for m in imported_modules(output) if m.split(".")[0] in ("pandas", "polars", "pyarrow")}


def planned(output: str) -> dict[str, list[str]]:
    """Rule name -> the reasons Snakemake gives for each job it would run."""
    jobs: dict[str, list[str]] = {}
    rule = None
    for line in output.splitlines():
        head = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line)
        if head:
            rule = head.group(1)
        elif rule and line.strip().startswith("reason:"):
            jobs.setdefault(rule, []).append(line.split("reason:", 1)[1].strip())
            rule = None
    return jobs


@pytest.mark.slow
def test_changing_universe_size_or_the_websocket_urls_refetches_nothing(tmp_path):
    with okxsim.Simulator(seed=7, clock_start="2024-03-06T01:00:00Z", speed=1, history_start="2024-02-20", n_swaps=6,
                          history_limit_max=300) as sim:
        config_path = tmp_path / "config.yaml"
        config = write_config(config_path, endpoints=sim, data_dir=tmp_path / "data", start=DAY, end=DAY, size=2,
                              frequencies=["day"])
        config["universe"]["window_days"] = 1  # the day before only: one daily_metrics job
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        work, raw = tmp_path / "data" / "work", tmp_path / "data" / "raw"
        targets = [str(work / "universe" / f"{DAY}.parquet"), str(work / "backfill" / f"{DAY}.json"),
                   str(raw / "rest" / "funding-rate" / f"{DAY}.jsonl")]
        output = snakemake(tmp_path, config_path, targets, dry_run=False, importtime=True)
        built = planned(output)
        assert REST_RULES <= set(built), built  # every REST job ran once, with its params recorded
        # Snakemake handed each job its params without importing a dataframe library (feeder.snakemake_params)
        assert "snakemake.script" in imported_modules(output) and not dataframe_libraries(output)

    # a bigger universe re-ranks the day (no REST) and never re-fetches the metrics of any instrument;
    # the day's backfill and funding history follow its new members (their input), and only that:
    # the WebSocket endpoints, changed too, are the collector's and no job takes them
    config["universe"]["size"] = 3
    config["exchange"]["ws_public_url"] = "wss://ws.example.org/ws/v5/public"
    config["exchange"]["ws_business_url"] = "wss://ws.example.org/ws/v5/business"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    output = snakemake(tmp_path, config_path, targets, dry_run=True, importtime=True)
    jobs = planned(output)
    assert "daily_metrics" not in jobs, jobs
    [reason] = jobs["universe"]
    assert reason.startswith("Params have changed since last execution") and "before: 2 now: 3" in reason, jobs
    # Snakemake compared every job's params without importing pandas (feeder.snakemake_params)
    assert "snakemake.persistence" in imported_modules(output) and not dataframe_libraries(output)
    universe_file = str(work / "universe" / f"{DAY}.parquet")
    # the day's archive job follows the new members too; the backfill follows the universe and the
    # archive shard (both inputs); nothing is re-run for a params change of its own
    day_outputs = {universe_file, str(raw / "archive" / "candle1m" / f"{DAY}.jsonl"),
                   str(work / "archive" / f"{DAY}.json")}
    for rule in REST_RULES & set(jobs):
        [reason] = jobs[rule]
        prefix = "Input files updated by another job: "
        assert reason.startswith(prefix), (rule, jobs)
        assert set(reason[len(prefix):].split(", ")) <= day_outputs, (rule, jobs)


def test_every_rule_declares_threads_and_polars_uses_them():
    """Parallel jobs must not oversubscribe the cores: every rule says how many threads it uses,
    and a job's polars pool is that size (Snakemake passes threads as OMP_NUM_THREADS; the
    feeder package hands it to polars, which has its own variable)."""
    rules = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        current = None
        for line in path.read_text().splitlines():
            head = re.match(r"^\s*(?:rule|checkpoint) (\w+):", line)
            if head:
                current = head.group(1)
                rules[current] = None
            elif current and re.match(r"^\s+threads:\s*\S", line):
                rules[current] = line.split(":", 1)[1].strip()
    assert rules and not [name for name, threads in rules.items() if threads is None], rules
    probe = "import feeder, polars; print(polars.thread_pool_size())"
    env = {k: v for k, v in __import__("os").environ.items() if k != "POLARS_MAX_THREADS"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                         env={**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}, check=True)
    assert out.stdout.strip() == "1"


def test_clean_books_is_planned_only_with_the_books5_channel(tmp_path):
    """With books5 collected, each day gets a clean_books job reading the day's books5 shards and the
    previous day's last receipt hour, and resample takes its output; without it, no such job."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    data = tmp_path / "data"
    config.update(start=DAY, end=DAY, frequencies=["day"])
    config["paths"] = {"raw": str(data / "raw"), "work": str(data / "work"), "qlib": str(data / "qlib")}
    shards = {hour: data / "raw" / "ws" / "books5" / hour / "1-1.jsonl"
              for hour in ("2024-03-03/22", "2024-03-03/23", f"{DAY}/05", "2024-03-05/00", "2024-03-05/01")}
    for path in shards.values():
        path.parent.mkdir(parents=True)
        path.touch()
    config_path = tmp_path / "config.yaml"
    plans = {}
    for channels in (["candle1m", "books5"], ["candle1m", "funding-rate", "open-interest"]):
        config["collector"]["channels"] = channels
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        plans["books5" in channels] = snakemake(tmp_path, config_path, [], dry_run=True)
    assert planned(plans[True])["clean_books"], plans[True]
    block = plans[True].split("rule clean_books:", 1)[1].split("\n\n", 1)[0]
    inputs = re.search(r"^\s*input: (.*)$", block, re.MULTILINE).group(1).split(", ")
    wanted = [str(shards[h]) for h in ("2024-03-03/23", f"{DAY}/05", "2024-03-05/00")]
    assert [p for p in inputs if "/ws/books5/" in p] == wanted, inputs  # not hour 22 of D-1, not hour 01 of D+1
    assert f"{data}/work/books/{DAY}.parquet" in plans[True].split("rule resample:", 1)[1].split("output:", 1)[0]
    assert "clean_books" not in planned(plans[False]) and "/books/" not in plans[False]


def test_snakemakes_own_process_imports_no_dataframe_library(tmp_path):
    """Snakemake's process parses the workflow on every run (and on a cluster, once more for every
    job): the Snakefile and its input functions must not import polars, which costs about 0.3 s
    of CPU each time and is only needed inside the jobs. `python -X importtime` lists every module
    the dry run imported."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    data = tmp_path / "data"
    config.update(start=DAY, end=DAY, frequencies=["day", "1min"])
    config["paths"] = {"raw": str(data / "raw"), "work": str(data / "work"), "qlib": str(data / "qlib")}
    config["collector"]["channels"] = ["candle1m", "funding-rate", "open-interest", "trades", "books5"]
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    output = snakemake(tmp_path, config_path, [], dry_run=True, importtime=True)
    imported = imported_modules(output)
    assert "snakemake.dag" in imported and "feeder.registry" in imported, sorted(imported)[:20]  # the probe works
    assert planned(output)["clean"], output[-2000:]  # the workflow was planned
    assert not dataframe_libraries(output)
