"""Order-book fields end to end, for real: simulator books5 -> collector (sampled per second, zstd
shards) -> Snakemake -> Qlib, compared with the simulator's own feature computation.

The simulator logs every books5 element it pushed and computes the five fields from that log with
its own code (okxsim/book_truth.py, written from the definition alone), so a bug in the pipeline's
computation cannot cancel itself out. The collector is stopped with SIGTERM while the simulator is
still pushing: books in flight then were sent but never received, so each instrument's truth is
asked for the books sent up to the last one the collector recorded (``until_ms``).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import requests

from harness.processes import REPO, simulator, snakemake, stop, write_config
from harness.readback import qlib_read

pytestmark = pytest.mark.e2e

DAY = "2024-03-04"
FREQS = ["1min", "60min", "day"]
FIELDS = ["spread_bps", "depth_bid_25bps", "depth_ask_25bps", "imbalance", "book_coverage"]
SIZE = 3


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def slot_text(ts_ms: int, freq: str) -> str:
    moment = dt.datetime.fromtimestamp(ts_ms / 1000, dt.timezone.utc)
    return moment.strftime("%Y-%m-%d" if freq == "day" else "%Y-%m-%d %H:%M:%S")


def recorded_books(raw: Path) -> dict[str, list[dict]]:
    """The books5 records of the sealed shards, read with a few lines of this test's own."""
    books: dict[str, list[dict]] = {}
    for path in sorted((raw / "ws" / "books5").glob("*/*/*.jsonl.zst")):
        with pa.input_stream(str(path), compression="zstd") as stream:
            for line in stream.read().decode().splitlines():
                record = json.loads(line)
                books.setdefault(record["inst"], []).append(record)
    return books


def truth(sim, inst: str, freq: str, *, start: int, end: int, until: int | None = None) -> list[dict]:
    params = {"instId": inst, "freq": freq, "start": start, "end": end, "max_age_s": 60}
    if until is not None:
        params["until_ms"] = until
    answer = requests.get(f"{sim.rest}/sim/books/features", params=params, verify=sim.ca_file, timeout=60).json()
    assert answer["code"] == "0", answer
    return answer["data"]


def swap_ids(sim) -> list[str]:
    answer = requests.get(f"{sim.rest}/api/v5/public/instruments", params={"instType": "SWAP"}, verify=sim.ca_file,
                          timeout=10).json()
    return [i["instId"] for i in answer["data"]]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data = tmp_path_factory.mktemp("books-e2e")
    # quiet blocks of 3 simulated minutes are likely, so some 1-minute bars have no book at all
    with simulator(clock_start=f"{DAY}T22:50:00Z", speed=300, cert_dir=data / "certs",
                   log_path=data / "logs" / "simulator.log", extra_args=["--books-quiet-prob", "0.25"]) as sim:
        cfg = data / "config.yaml"
        write_config(cfg, endpoints=sim, data_dir=data, start=DAY, end=DAY, size=SIZE, frequencies=FREQS,
                     channels=["candle1m", "books5"])
        log_path = data / "logs" / "collector.log"
        with open(log_path, "ab") as log:
            collector = subprocess.Popen([sys.executable, "-m", "collector", "--config", str(cfg)], cwd=REPO,
                                         stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while not list((data / "raw" / "ws" / "books5").glob("*/*/*")) and time.monotonic() < deadline:
                    assert collector.poll() is None, log_path.read_text()[-3000:]
                    time.sleep(0.2)
                # books are flowing: extreme books (200x the spread, alone for 20 s) at the next three minute
                # boundaries of every swap
                fault = requests.post(f"{sim.rest}/sim/faults", verify=sim.ca_file, timeout=10, json={
                    "kind": "book_at_close", "inst_ids": swap_ids(sim), "count": 3, "spread_mult": 200, "hold_s": 20})
                assert fault.ok, fault.text
                time.sleep(16)
                assert collector.poll() is None, log_path.read_text()[-3000:]
            finally:
                code = stop(collector, timeout_s=30)
        assert code == 0, log_path.read_text()[-3000:]
        snakemake(cfg, "--directory", str(data), cores=2, log_path=data / "logs" / "snakemake.log")
        yield sim, data


def test_every_book_field_equals_the_simulators_own_computation(built):
    sim, data = built
    books = recorded_books(data / "raw")
    assert books, "the collector recorded no books5 shard"
    insts = sorted(books)
    got = qlib_read(data / "qlib", (
        f"insts = {insts!r}\nout = {{}}\n"
        f"for freq in {FREQS!r}:\n"
        f"    df = D.features(insts, {['$' + f for f in [*FIELDS, 'factor']]!r}, '{DAY}', '{DAY} 23:59:00', freq=freq)\n"
        "    out[freq] = {i: {str(ts)[:19] if freq != 'day' else str(ts)[:10]: [float(x) for x in row]"
        " for ts, row in g.droplevel(0).iterrows()} for i, g in df.groupby(level=0)}\n"
        "print(json.dumps(out))"))
    compared, empty_bars, covered_bars = 0, 0, 0
    for inst in insts:
        last = max(r["ts"] for r in books[inst])
        for freq in FREQS:
            bars = truth(sim, inst, freq, start=ms(DAY), end=ms(DAY) + 86_400_000, until=last + 1)
            assert bars, (inst, freq)
            for bar in bars:
                slot = slot_text(bar["ts"], freq)
                *values, factor = got[freq].get(inst, {}).get(slot, [np.nan] * (len(FIELDS) + 1))
                if np.isnan(factor):
                    continue  # no candle, no bar (the fields ride on the candle's bar)
                mine = dict(zip(FIELDS, values, strict=True))
                want = {f: (np.nan if bar[f] is None else bar[f]) for f in FIELDS}
                assert np.float32(mine["book_coverage"]) == np.float32(want["book_coverage"]), (inst, freq, slot)
                for f in FIELDS[:4]:
                    if np.isnan(want[f]):
                        assert np.isnan(mine[f]), (inst, freq, slot, f, mine[f])
                    else:
                        assert np.isclose(mine[f], np.float32(want[f]), rtol=1e-6, atol=0), (
                            inst, freq, slot, f, mine[f], want[f])
                empty_bars += freq == "1min" and want["book_coverage"] == 0
                covered_bars += freq == "1min" and want["book_coverage"] > 0
                compared += 1
    print(f"compared {compared} bars: {covered_bars} 1-minute bars with books, {empty_bars} without")
    # the recording window is ~80 simulated minutes; quiet blocks and, on a loaded machine, books the
    # simulator was too late to send leave fewer covered bars
    assert covered_bars >= 10 * len(insts) and empty_bars > 0


def spikes_in_force(sent: list[dict]) -> set[int]:
    """The ts of the book_at_close books (the simulator marks them with seqId rank 9) that were sent and
    are the last book of their second, so they are a second's state (a late book may be dropped unsent)."""
    last_of_second: dict[int, dict] = {}
    for book in sorted(sent, key=lambda b: (int(b["ts"]), b["seqId"])):
        last_of_second[int(book["ts"]) // 1000] = book
    return {int(b["ts"]) for b in last_of_second.values() if b["seqId"] % 10 == 9}


def test_a_book_published_at_a_bars_close_never_changes_that_bar(built):
    """The simulator pushed extreme books (200x the spread) with ts exactly at three minute boundaries.
    Each bar that closes at such a boundary equals the truth computed from the books sent before its
    close only, and the first spike shows in the bar that opens at it."""
    sim, data = built
    state = requests.get(f"{sim.rest}/sim/state", verify=sim.ca_file, timeout=10).json()
    (fault,) = {(f["first_boundary"], f["count"]) for f in state["book_faults"]}
    boundaries = [fault[0] + k * 60_000 for k in range(fault[1])]
    insts = sorted(recorded_books(data / "raw"))
    got = qlib_read(data / "qlib", (
        f"df = D.features({insts!r}, ['$spread_bps', '$book_coverage'], '{DAY}', '{DAY} 23:59:00', freq='1min')\n"
        "print(json.dumps({i: {str(ts)[:19]: [float(x) for x in row] for ts, row in g.droplevel(0).iterrows()}"
        " for i, g in df.groupby(level=0)}))"))
    spikes_sent = {inst: spikes_in_force(requests.get(f"{sim.rest}/sim/books/sent", params={"instId": inst},
                                                      verify=sim.ca_file, timeout=30).json()["data"])
                   for inst in insts}
    checked = seen = 0
    for inst in insts:
        for k, close in enumerate(boundaries):
            before, after = slot_text(close - 60_000, "1min"), slot_text(close, "1min")
            if close >= ms(DAY) + 86_400_000 or before not in got[inst] or after not in got[inst]:
                continue
            (blind,) = truth(sim, inst, "1min", start=close - 60_000, end=close, until=close)
            spread, coverage = got[inst][before]
            assert np.float32(coverage) == np.float32(blind["book_coverage"]), (inst, before)
            if blind["spread_bps"] is None:
                assert np.isnan(spread), (inst, before)
            else:
                assert np.isclose(spread, np.float32(blind["spread_bps"]), rtol=1e-6), (inst, before)
            if k == 0 and close in spikes_sent[inst]:
                assert got[inst][after][0] > 2 * np.nanmax([spread, 1e-9]), (inst, close, spread, got[inst][after])
                seen += 1
            checked += 1
    assert checked >= len(insts) and seen, (boundaries, insts, spikes_sent)
