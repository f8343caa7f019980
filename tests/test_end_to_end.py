"""End to end, for real: simulator -> collector (cryptofeed over TLS) -> snakemake -> Qlib.

The simulator's REST history is the ground truth. The test reads it with its own few lines of
code (not the pipeline's parsers), so a parsing bug cannot cancel itself out.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import requests

import okxsim
from feeder.publish import MANIFEST_NAME
from harness.processes import run_collector, simulator, snakemake, write_config
from harness.readback import qlib_read

pytestmark = pytest.mark.e2e

START, END = "2024-03-03", "2024-03-04"
SIZE = 5
WINDOW = 7
FREQS = ["1min", "60min", "day"]


def market_of(sim):
    """The simulator's own ground truth (the same rows its REST API serves), rebuilt in-process."""
    state = requests.get(f"{sim.rest}/sim/state", verify=sim.ca_file, timeout=10).json()
    return okxsim.Market(**state["market_args"]), state


def truth_candles(market, inst: str, bar: str, start_ms: int, end_ms: int, now_ms: int) -> list[list[str]]:
    """Closed candles in [start_ms, end_ms), oldest first, exactly as REST history-candles pages them."""
    rows, after = [], end_ms
    while True:
        page = market.candles(inst, bar, now_ms, after=after, limit=100)
        rows += [r for r in page if int(r[0]) >= start_ms]
        if not page or min(int(r[0]) for r in page) <= start_ms:
            break
        after = min(int(r[0]) for r in page)
    return sorted((r for r in rows if r[8] == "1"), key=lambda r: int(r[0]))


def ms(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def expected_members(market, state: dict, day: str) -> list[str]:
    """Top-N by trailing 7-day mean of 1Dutc volCcyQuote before `day`, computed independently."""
    insts = market.instruments(state["sim_now"], "SWAP")
    stable = {"USDT", "USDC", "DAI", "FDUSD", "TUSD", "USDE", "PYUSD", "USDD", "USDP", "BUSD", "EURT", "USTC"}
    eligible = [i["instId"] for i in insts
                if i["settleCcy"] == "USDT" and i["ctType"] == "linear" and i.get("instCategory", "1") == "1"
                and i["instId"].split("-")[0] not in stable]
    day_ms = ms(day)
    scores = []
    for inst in eligible:
        rows = truth_candles(market, inst, "1Dutc", day_ms - WINDOW * 86_400_000, day_ms, state["sim_now"])
        if rows:
            scores.append((-np.mean([float(r[7]) for r in rows]), inst))
    return [inst for _, inst in sorted(scores)[:SIZE]]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data = tmp_path_factory.mktemp("e2e")
    with simulator(clock_start="2024-03-04T23:00:00Z", speed=300, cert_dir=data / "certs",
                   log_path=data / "logs" / "simulator.log") as sim:
        cfg = data / "config.yaml"
        write_config(cfg, endpoints=sim, data_dir=data, start=START, end=END, size=SIZE, frequencies=FREQS,
                     channels=["candle1m"])
        code = run_collector(cfg, duration_s=25, log_path=data / "logs" / "collector.log")
        assert code == 0, (data / "logs" / "collector.log").read_text()[-3000:]
        # what the tests read: the published dataset (the quality report is test_report's subject)
        snakemake(cfg, "--directory", str(data), str(data / "work" / MANIFEST_NAME), cores=4,
                  log_path=data / "logs" / "snakemake.log")
        yield sim, data


@pytest.fixture(scope="module")
def members_by_day(built) -> dict[str, list[str]]:
    """The independently computed top N of each day, once for the module (it replays 7 days of
    daily candles of every instrument)."""
    sim, _ = built
    market, state = market_of(sim)  # one market for both days: their windows overlap
    return {day: expected_members(market, state, day) for day in (START, END)}


def test_stream_shards_were_written_and_sealed(built):
    sim, data = built
    sealed = list((data / "raw" / "ws" / "candle1m").glob("*/*/*.jsonl"))
    assert sealed, "the collector wrote no sealed candle shard"
    assert not list((data / "raw").rglob("*.open")), "a shard was left unsealed after SIGTERM"
    streamed_last_day = [json.loads(line) for p in sealed for line in p.read_text().splitlines()]
    assert any(r["ts"] >= ms(END) for r in streamed_last_day)
    assert all(r["data"][8] == "1" for r in streamed_last_day), "an unconfirmed candle reached a shard"


def test_qlib_1min_and_day_equal_the_ground_truth(built, members_by_day):
    """Every bar of every member-day equals the simulator's REST truth; no bar is invented."""
    sim, data = built
    market, state = market_of(sim)
    insts = sorted({i for m in members_by_day.values() for i in m})
    got = qlib_read(data / "qlib", (
        f"insts = {insts!r}\nout = {{}}\n"
        "for freq, s, e in (('1min', '" + START + "', '" + END + " 23:59:00'), ('day', '" + START + "', '" + END + "')):\n"
        "    df = D.features(insts, ['$open','$high','$low','$close','$volume','$amount'], s, e, freq=freq)\n"
        "    out[freq] = {i: {str(ts): [float(x) for x in row] for ts, row in g.droplevel(0).iterrows()} for i, g in df.groupby(level=0)}\n"
        "print(json.dumps(out))"))
    compared = 0
    for day, members in members_by_day.items():
        for inst in members:
            truth_1m = truth_candles(market, inst, "1m", ms(day), ms(day) + 86_400_000, state["sim_now"])
            assert len(truth_1m) > 1000, (inst, day)
            got_1m = got["1min"][inst]
            for row in truth_1m:
                ts = dt.datetime.fromtimestamp(int(row[0]) / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                want = np.float32([row[1], row[2], row[3], row[4], row[6], row[7]])  # swap volume = volCcy
                assert np.array_equal(np.float32(got_1m[ts]), want), (inst, ts, got_1m[ts], row)
                compared += 1
            present = {ts for ts, vals in got_1m.items() if ts.startswith(day) and not np.isnan(vals[3])}
            assert len(present) == len(truth_1m), (inst, day, "Qlib has minutes the exchange does not")
            (daily,) = truth_candles(market, inst, "1Dutc", ms(day), ms(day) + 86_400_000, state["sim_now"])
            vals = np.float32(got["day"][inst][f"{day} 00:00:00"])
            want = np.float32([daily[1], daily[2], daily[3], daily[4], daily[6], daily[7]])
            assert np.allclose(vals, want, rtol=2e-6), (inst, day, vals, want)
    print(f"compared {compared} one-minute bars with the simulator's ground truth")
    assert compared > 2 * 5 * 1000


def test_point_in_time_membership_spans(built, members_by_day):
    sim, data = built
    spans = qlib_read(data / "qlib", (
        f"d = D.list_instruments(D.instruments('top{SIZE}'), as_list=False, freq='1min')\n"
        "print(json.dumps({k: [[str(a), str(b)] for a, b in v] for k, v in d.items()}))"))
    for day in (START, END):
        want = set(members_by_day[day])
        have = {inst for inst, ss in spans.items()
                if any(a <= f"{day} 00:00:00" and f"{day} 23:59:00" <= b for a, b in ss)}
        assert have == want, (day, have, want)
