"""Universe changes while the collector runs: the new member streams from the change on (within
``collector.universe_poll_s`` plus the time to connect), the dropped member until then, and a
member of both sets has no gap at all. Against the simulator, as real processes."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest
import requests
import yaml

from feeder import shards as S
from harness.processes import PYTHON, REPO, simulator, write_config

SPEED = 60          # one simulated minute per real second
POLL_S = 1.0        # collector.universe_poll_s: the configured delay
MINUTE = 60_000

RANKING_SCHEMA = {"day": pl.Date, "inst": pl.Utf8, "rank": pl.Int32, "metric": pl.Float64,
                  "days_observed": pl.Int32, "member": pl.Boolean}


def write_universe(directory: Path, day: str, members: list[str], others: list[str]) -> Path:
    """A ranking as the workflow's universe rule writes it (feeder.universe.RANKING_SCHEMA),
    published atomically (write, then rename into place)."""
    insts = members + others
    frame = pl.DataFrame({"day": [dt.date.fromisoformat(day)] * len(insts), "inst": insts,
                          "rank": list(range(1, len(insts) + 1)),
                          "metric": [1e9 / (i + 1) for i in range(len(insts))],
                          "days_observed": [7] * len(insts),
                          "member": [i < len(members) for i in range(len(insts))]}, schema=RANKING_SCHEMA)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{day}.parquet.tmp"
    frame.write_parquet(tmp)
    os.replace(tmp, directory / f"{day}.parquet")
    return directory / f"{day}.parquet"


def sim_now(sim) -> int:
    return requests.get(f"{sim.rest}/sim/state", verify=sim.ca_file, timeout=10).json()["sim_now"]


def contiguous(ts: list[int]) -> bool:
    got = sorted(set(ts))
    return got == list(range(got[0], got[-1] + MINUTE, MINUTE))


@pytest.mark.e2e
def test_universe_change_streams_new_member_before_dropping_old(tmp_path: Path) -> None:
    with simulator(clock_start="2024-03-04T22:00:00Z", speed=SPEED, cert_dir=tmp_path / "certs",
                   log_path=tmp_path / "simulator.log") as sim:
        cfg_path = tmp_path / "config.yaml"
        cfg = write_config(cfg_path, endpoints=sim, data_dir=tmp_path, start="2024-03-04", end="2024-03-04", size=2,
                           channels=["candle1m"])
        cfg["collector"]["universe_poll_s"] = POLL_S
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        instruments = requests.get(f"{sim.rest}/api/v5/public/instruments", params={"instType": "SWAP"},
                                   verify=sim.ca_file, timeout=10).json()["data"]
        swaps = [i["instId"] for i in instruments if i["state"] == "live" and i["instId"].endswith("-USDT-SWAP")]
        old, kept, new = swaps[:3]
        udir = tmp_path / "work" / "universe"
        write_universe(udir, "2024-03-03", [old, kept], [new])   # yesterday's universe: old + kept

        log_path = tmp_path / "collector.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([PYTHON, "-m", "collector", "--config", str(cfg_path)], cwd=REPO,
                                    stdout=log, stderr=subprocess.STDOUT)
            try:
                # ~8 simulated minutes of old + kept, counted from the subscription (on a loaded
                # machine the collector's start-up alone can take seconds)
                deadline = time.monotonic() + 60
                while "subscribed" not in log_path.read_text():
                    assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                    time.sleep(0.2)
                time.sleep(8)
                assert proc.poll() is None, log_path.read_text()[-3000:]
                changed_at = sim_now(sim)
                write_universe(udir, "2024-03-04", [kept, new], [old])   # the workflow publishes today's
                time.sleep(10)  # ~10 simulated minutes after the change
                assert proc.poll() is None, log_path.read_text()[-3000:]
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        assert proc.returncode == 0, log_path.read_text()[-3000:]
    text = log_path.read_text()
    assert "universe changed (2024-03-04.parquet): +1" in text and "closing the old ones" in text

    recs = list(S.read_records(S.sealed_shards(tmp_path / "raw", "ws", "candle1m")))
    assert not list((tmp_path / "raw").rglob("*.open"))
    by_inst: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        by_inst[r["inst"]].append(r)
    assert set(by_inst) == {old, kept, new}
    bound = int((POLL_S + 8.0) * SPEED * 1000)   # the configured delay + connecting, in simulated ms

    # the dropped member: recorded without a gap until the change (and not for long after it)
    old_ts = [r["ts"] for r in by_inst[old]]
    assert contiguous(old_ts)
    assert max(old_ts) >= changed_at - changed_at % MINUTE - MINUTE, "the old member stopped before the change"
    assert max(r["recv_ts"] for r in by_inst[old]) <= changed_at + bound
    # the new member: from the change on, within the delay, then without a gap
    new_ts = [r["ts"] for r in by_inst[new]]
    first_new = min(by_inst[new], key=lambda r: r["recv_ts"])
    assert contiguous(new_ts)
    assert changed_at - 2 * MINUTE <= first_new["ts"] and first_new["recv_ts"] <= changed_at + bound, (
        first_new, changed_at)
    # the member of both sets: one unbroken run across the switch (the overlap may repeat a bar, identically)
    kept_ts = [r["ts"] for r in by_inst[kept]]
    assert contiguous(kept_ts) and min(kept_ts) < changed_at - 5 * MINUTE and max(kept_ts) > changed_at + 5 * MINUTE
    data_by_ts: dict[int, list] = {}
    for r in by_inst[kept]:
        assert data_by_ts.setdefault(r["ts"], r["data"]) == r["data"]
    doubled = len(kept_ts) - len(set(kept_ts))
    print(f"\nuniverse change at sim {changed_at}: {old} {len(old_ts)} bars up to the change, {new} from "
          f"{(first_new['recv_ts'] - changed_at) / 1000 / SPEED:.1f} real s after it ({len(new_ts)} bars), "
          f"{kept} {len(set(kept_ts))} bars without a gap ({doubled} repeated during the overlap)")


# --------------------------------------------------------------------------------------------
# The collector's fallback ranking follows universe.rank_by (issue 13): before the workflow has
# written a universe file, the collector ranks the live snapshot that stands in for the config's
# ranking (feeder.universe.RANKINGS), not always the 24h turnover.
# --------------------------------------------------------------------------------------------


def test_fallback_ranking_follows_rank_by_abs_funding_rate(tmp_path: Path) -> None:
    import okxsim

    with okxsim.Simulator(seed=7, clock_start="2024-03-04T22:00:00Z", speed=1, history_start="2024-02-01",
                          n_swaps=12) as sim:
        cfg_path = tmp_path / "config.yaml"
        cfg = write_config(cfg_path, endpoints=sim, data_dir=tmp_path, start="2024-03-04", end="2024-03-04", size=3,
                           channels=["candle1m"])
        cfg["universe"]["rank_by"] = "abs_funding_rate"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

        def okx(path: str, **params: str) -> list[dict]:
            return requests.get(f"{sim.rest}{path}", params=params, verify=sim.ca_file, timeout=10).json()["data"]

        # the exchange's own answers: eligible instruments ranked by |last settled funding rate|
        excluded = set(cfg["universe"]["exclude_bases"])
        eligible = {i["instId"] for i in okx("/api/v5/public/instruments", instType="SWAP")
                    if i["state"] == "live" and i["settleCcy"] == "USDT" and i["ctType"] == "linear"
                    and i.get("instCategory", "1") == "1" and i["instId"].split("-")[0] not in excluded}
        rates = {f["instId"]: abs(float(f["settFundingRate"] or f["fundingRate"]))
                 for f in okx("/api/v5/public/funding-rate", instId="ANY") if f["instId"] in eligible}
        expected = sorted(rates, key=lambda inst: (-rates[inst], inst))[:3]
        by_turnover = [t["instId"] for t in sorted(okx("/api/v5/market/tickers", instType="SWAP"),
                                                  key=lambda t: -float(t["volCcy24h"]) * float(t["last"]))
                       if t["instId"] in eligible][:3]
        assert expected != by_turnover, "pick a seed where the two rankings differ"

        res = subprocess.run([PYTHON, "-m", "collector", "--config", str(cfg_path), "--duration-s", "1",
                              "--metrics-port", "0"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(line for line in res.stderr.splitlines() if "recording candle1m for" in line)
    assert "live funding rates (|last settled funding rate|)" in line, line
    assert line.endswith(": " + ", ".join(expected)), (line, expected)
