"""History without holes, end to end against the simulator with injected faults.

* A collector that was stopped for an hour and whose connections were dropped, plus REST 429s,
  5xx and timeouts during the backfill: after ONE `snakemake` run every 1m bar the exchange has
  for every universe member is in Qlib exactly once, with the exchange's values, and the coverage
  report says where each came from. The backfill stays inside OKX's rate limits.
* Survivorship: an instrument delisted inside the history is a member until it is delisted, and
  not after, because the instrument snapshot recorded while it was live is kept.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import okxsim
from feeder.publish import MANIFEST_NAME
from harness.processes import PYTHON, REPO, snakemake, stop, write_config

pytestmark = pytest.mark.e2e

DAY = "2024-03-04"
DAY_MS = 86_400_000


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def start_collector(cfg: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "collector", "--config", str(cfg)], cwd=REPO,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def wait_sim(sim, iso: str) -> None:
    while sim.sim_now_ms() < ms(iso):
        time.sleep(0.05)


def qlib_features(qlib_dir: Path, insts: list[str], start: str, end: str, freq: str) -> dict:
    prog = (
        "import json, qlib\nfrom qlib.data import D\n"
        f"qlib.init(provider_uri={str(qlib_dir)!r}, region='us', kernels=1)\n"
        f"df = D.features({insts!r}, ['$open','$high','$low','$close','$volume','$amount'], {start!r}, {end!r}, freq={freq!r})\n"
        "print(json.dumps({i: {str(ts): [float(x) for x in row] for ts, row in g.droplevel(0).iterrows()}"
        " for i, g in df.groupby(level=0)}))")
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_faults_and_outages_leave_no_hole_and_no_double(tmp_path):
    size = 8
    with okxsim.Simulator(seed=7, clock_start=f"{DAY}T21:30:00Z", speed=300, history_start="2024-02-01",
                          history_limit_max=300) as sim:
        cfg = tmp_path / "config.yaml"
        write_config(cfg, endpoints=sim, data_dir=tmp_path, start=DAY, end=DAY, size=size,
                     frequencies=["1min", "day"], channels=["candle1m"])
        config = __import__("yaml").safe_load(cfg.read_text())
        config["exchange"]["timeout_s"] = 2
        # rank on the day before only: the 1Dutc faults below hit the first daily_metrics job,
        # which fetches every instrument's history at the rate limit whatever the window
        config["universe"]["window_days"] = 1
        cfg.write_text(__import__("yaml").safe_dump(config))
        log = tmp_path / "collector.log"

        # 21:30-22:00 streaming (one connection drop), 22:00-23:00 collector stopped,
        # 23:00-00:03 streaming again (another drop)
        proc = start_collector(cfg, log)
        wait_sim(sim, f"{DAY}T21:45:00")
        sim.drop_ws()
        wait_sim(sim, f"{DAY}T22:00:00")
        assert stop(proc) == 0
        wait_sim(sim, f"{DAY}T23:00:00")
        proc = start_collector(cfg, log)
        wait_sim(sim, f"{DAY}T23:30:00")
        sim.drop_ws()
        wait_sim(sim, "2024-03-05T00:03:00")
        assert stop(proc) == 0, log.read_text()[-2000:]

        # REST faults during the one workflow run: 5xx, a 429 burst and a timeout, once while
        # ranking (1Dutc) and again when the backfill's first 1m page is served
        def inject() -> None:
            sim.fail_next("history-candles", 2, status=500)
            sim.fail_next("history-candles", 2, status=429)
            sim.delay_next("history-candles", 1, seconds=3)

        inject()
        requests_before = len(sim.requests())
        stop_watch = threading.Event()

        def inject_when_backfill_starts() -> None:
            while not stop_watch.wait(0.005):
                if any(r.params.get("bar") == "1m" for r in sim.requests("history-candles")[requests_before:]):
                    inject()
                    return

        watcher = threading.Thread(target=inject_when_backfill_starts)
        watcher.start()
        try:
            # what the assertions read (the quality report is test_report's subject)
            snakemake(cfg, "--directory", str(tmp_path), str(tmp_path / "work" / MANIFEST_NAME),
                      str(tmp_path / "work" / "coverage.parquet"), cores=4, log_path=tmp_path / "snakemake.log")
        finally:
            stop_watch.set()
            watcher.join()
        faults_seen = [r for r in sim.requests()[requests_before:] if r.fault]
        assert len(faults_seen) >= 8, "the injected faults did not all fire"

        # rate limits: nothing beyond what we injected was refused, and no 2-s window exceeded OKX's 20
        ours = sim.requests()[requests_before:]
        assert not [r for r in ours if r.status == 429 and not r.fault], "the pipeline tripped OKX's rate limit"
        assert sim.max_requests_per_window("history-candles", 2.0, status=None) <= 20

        members = pl.read_parquet(tmp_path / "work" / "universe" / f"{DAY}.parquet").filter("member")["inst"].to_list()
        assert len(members) == size
        truth = {inst: sim.market.candles_1m(inst, DAY) for inst in members}
    got = qlib_features(tmp_path / "qlib", members, DAY, f"{DAY} 23:59:00", "1min")
    n_bars = 0
    for inst in members:
        want = {dt.datetime.fromtimestamp(int(r[0]) / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"):
                np.float32([r[1], r[2], r[3], r[4], r[6], r[7]]) for r in truth[inst]}
        have = {ts: np.float32(v) for ts, v in got[inst].items() if not np.isnan(v[3])}
        assert have.keys() == want.keys(), (inst, len(have), len(want))
        for ts, values in want.items():
            assert np.array_equal(have[ts], values), (inst, ts)
        n_bars += len(want)

    coverage = pl.read_parquet(tmp_path / "work" / "coverage.parquet").filter("member")
    ws, rest = int(coverage["from_ws"].sum()), int(coverage["from_rest"].sum())
    none = int(coverage["missing_exchange_none"].sum())
    print(f"\n{n_bars} bars for {size} members: {ws} from the stream, {rest} repaired from REST, "
          f"{none} minutes the exchange has no candle for, "
          f"{int(coverage['missing_fetch_failed'].sum())} failed, {int(coverage['missing_not_attempted'].sum())} not attempted")
    assert ws + rest == n_bars and ws > 0 and rest > 0
    assert int(coverage["missing"].sum()) == none
    assert (coverage["expected"] == coverage["from_ws"] + coverage["from_rest"] + coverage["missing"]).all()
    gaps = pl.read_csv(tmp_path / "work" / "gaps.csv")
    assert set(gaps.filter(pl.col("member"))["inst"].to_list()) <= set(members)


def test_delisted_instrument_stays_in_history_until_its_delisting(tmp_path):
    """FLOW-like delisting: member while listed, gone after; known only from a kept snapshot."""
    clock = "2024-03-04T23:00:00Z"
    market = okxsim.Market(seed=7, history_start="2024-02-01", clock_start=clock)
    (gone,) = [e for e in market.lifecycle() if e["delistTime"]]
    delist_day = dt.datetime.fromtimestamp(gone["delistTime"] / 1000, dt.timezone.utc).date()
    # the day before the delisting (a member), its day (a member until it), the day after (not one)
    days = [delist_day + dt.timedelta(days=k) for k in (-1, 0, 1)]
    # a small field: the delisted coin plus three quieter ones, so it ranks in a top 3
    def turnover(inst: str, day: dt.date = days[0] - dt.timedelta(days=1)) -> float:
        return market.day_quote_volume(inst, day.isoformat())

    before_ms = ms(days[0].isoformat()) - 1
    listed = [i["instId"] for i in market.instruments(before_ms, "SWAP")
              if i["instId"].endswith("-USDT-SWAP") and i.get("instCategory") == "1"]
    quieter = sorted((i for i in listed if i != gone["instId"] and 0 < turnover(i) < turnover(gone["instId"])),
                     key=turnover, reverse=True)[:3]
    field = [gone["instId"], *quieter]
    # on the day after, its trailing 7-day turnover (window_days 7) still ranks it in the top 3:
    # only the delisting known from the kept snapshot keeps it out
    window = [delist_day - dt.timedelta(days=k) for k in range(7)]
    means = {i: sum(turnover(i, d) for d in window) / 7 for i in field}
    assert sorted(means, key=means.get, reverse=True).index(gone["instId"]) < 3, means
    bases = {i.split("-")[0] for i in listed} - {i.split("-")[0] for i in field}

    # the project recorded the instrument list every day while the coin was still live (the
    # listing published before its delisting carries the delisting time in expTime)
    snapshot_dir = tmp_path / "raw" / "rest" / "instruments"
    snapshot_dir.mkdir(parents=True)
    for day in (d for d in days if d <= delist_day):
        at = ms(day.isoformat()) + 3_600_000
        (snapshot_dir / f"{day}.jsonl").write_text("".join(
            json.dumps({"v": 1, "source": "rest", "channel": "instruments", "inst": i["instId"], "ts": at,
                        "recv_ts": at, "data": i}) + "\n" for i in market.instruments(at, "SWAP")))

    with okxsim.Simulator(seed=7, clock_start=clock, speed=1, history_start="2024-02-01",
                          history_limit_max=300) as sim:
        assert gone["instId"] not in {i["instId"] for i in sim.market.instruments(sim.sim_now_ms(), "SWAP")}
        cfg = tmp_path / "config.yaml"
        config = write_config(cfg, endpoints=sim, data_dir=tmp_path, start=days[0].isoformat(),
                              end=days[-1].isoformat(), size=3, frequencies=["day"])
        config["universe"]["exclude_bases"] = sorted(set(config["universe"]["exclude_bases"]) | bases)
        cfg.write_text(__import__("yaml").safe_dump(config))
        snakemake(cfg, "--directory", str(tmp_path), str(tmp_path / "work" / MANIFEST_NAME), cores=4,
                  log_path=tmp_path / "snakemake.log")

    spans = [line.split("\t") for line in (tmp_path / "qlib" / "instruments" / "top3.txt").read_text().splitlines()]
    mine = [(s, e) for inst, s, e in spans if inst == gone["instId"]]
    assert mine, f"{gone['instId']} vanished from history: survivorship bias"
    assert mine == [(f"{days[0]} 00:00:00", f"{delist_day} 23:59:00")], mine
    # after the delisting its place goes to the next one
    after = {inst for inst, s, e in spans if s <= f"{days[-1]} 00:00:00" <= e}
    assert gone["instId"] not in after and len(after) == 3
