"""Every Qlib field, point in time, against the simulator's ground truth (end to end, for real).

Simulator -> collector (candle1m, funding-rate, open-interest over TLS) -> snakemake -> Qlib,
over a weekend (Saturday and Sunday), at every configured frequency. The expected values are
computed here from ``okxsim.Market`` (the simulator's own model, i.e. what its REST API serves)
and from the raw open-interest pushes as the collector recorded them, with this file's own
few lines of arithmetic, never with the pipeline's code.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

import okxsim
from feeder.publish import MANIFEST_NAME

from harness.processes import REPO, run_collector, simulator, snakemake, write_config

pytestmark = pytest.mark.e2e

SAT, SUN = "2024-03-02", "2024-03-03"
SIZE = 3
FREQS = ["1min", "5min", "60min", "day"]
STEP_MIN = {"1min": 1, "5min": 5, "60min": 60, "day": 1440}
FIELDS = ["open", "high", "low", "close", "volume", "amount", "vwap", "factor", "coverage", "funding_rate",
          "open_interest"]  # fmt: skip
MIN = 60_000
H = 3_600_000
FUNDING_MAX_AGE_MS = 8 * H
OI_MAX_AGE_MS = 15 * MIN


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def label(ts_ms: int, freq: str) -> str:
    t = dt.datetime.fromtimestamp(ts_ms / 1000, dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def qlib_read(qlib_dir: Path, code: str) -> object:
    prog = ("import json, qlib\nfrom qlib.data import D\n"
            f"qlib.init(provider_uri={str(qlib_dir)!r}, region='us', kernels=1)\n" + code)  # fmt: skip
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data = tmp_path_factory.mktemp("align")
    with simulator(clock_start=f"{SUN}T23:00:00Z", speed=300, cert_dir=data / "certs",
                   log_path=data / "logs" / "simulator.log") as sim:  # fmt: skip
        cfg = data / "config.yaml"
        config = write_config(cfg, endpoints=sim, data_dir=data, start=SAT, end=SUN, size=SIZE, frequencies=FREQS,
                              channels=["candle1m", "funding-rate", "open-interest"])  # fmt: skip
        config["universe"]["window_days"] = 1  # rank on the day before only: fewer REST jobs (ranking is not tested here)
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        code = run_collector(cfg, duration_s=25, log_path=data / "logs" / "collector.log")
        assert code == 0, (data / "logs" / "collector.log").read_text()[-3000:]
        # the published dataset only: the tests read it (the quality report is test_report's subject)
        snakemake(cfg, "--directory", str(data), str(data / "work" / MANIFEST_NAME), cores=4,
                  log_path=data / "logs" / "snakemake.log")
        state = requests.get(f"{sim.rest}/sim/state", verify=sim.ca_file, timeout=10).json()
        market = okxsim.Market(**state["market_args"])
        # one Qlib process reads the instruments, every frequency's features and the calendars
        code = (
            "insts = D.list_instruments(D.instruments('all'), as_list=True)\n"
            f"fields = {['$' + f for f in FIELDS]!r}\nout = {{}}\n"
            f"for freq in {FREQS!r}:\n"
            f"    df = D.features(insts, fields, '{SAT}', '{SUN} 23:59:00' if freq != 'day' else '{SUN}', freq=freq)\n"
            "    out[freq] = {i: {str(ts): [None if x != x else float(x) for x in row] for ts, row in g.droplevel(0).iterrows()}\n"
            "                 for i, g in df.groupby(level=0)}\n"
            f"cal = {{f: [str(t) for t in D.calendar(start_time='{SAT}', end_time='{SUN} 23:59:00', freq=f)]"
            f" for f in {FREQS!r}}}\n"
            "print(json.dumps({'insts': insts, 'features': out, 'calendars': cal}))"
        )  # fmt: skip
        read = qlib_read(data / "qlib", code)
        insts = read["insts"]
        assert len(insts) >= SIZE
        yield {"data": data, "market": market, "now": state["sim_now"], "insts": insts, "got": read["features"],
               "calendars": read["calendars"]}


def field(values: list[float | None], name: str) -> float | None:
    return values[FIELDS.index(name)]


def f32(x: float | str) -> float:
    return float(np.float32(float(x)))


# --------------------------------------------------------------------------------------------


def test_every_configured_frequency_returns_every_field(built):
    """D.features at each frequency: data for every instrument, no field silently all-NaN."""
    for freq in FREQS:
        by_inst = built["got"][freq]
        assert set(by_inst) == set(built["insts"]), freq
        for name in FIELDS:
            values = [field(v, name) for rows in by_inst.values() for v in rows.values()]
            assert any(x is not None for x in values), (freq, name)


def test_calendars_are_24_7_across_the_weekend_and_midnight(built):
    cal = built["calendars"]  # D.calendar at each frequency, over both days
    for freq in FREQS:
        step = STEP_MIN[freq]
        want = [label(ms(SAT) + i * step * MIN, freq) for i in range(2 * 1440 // step)]
        assert cal[freq] == want, freq  # every slot of Saturday and Sunday, nothing skipped
    sat_last, sun_first = f"{SAT} 23:59:00", f"{SUN} 00:00:00"
    assert cal["1min"][cal["1min"].index(sat_last) + 1] == sun_first  # midnight crossing minute
    both_days = [rows for rows in built["got"]["1min"].values() if sat_last in rows and sun_first in rows]
    assert both_days, "no instrument was a member on both days"
    for rows in both_days:  # bars on both sides of midnight, one minute apart
        assert field(rows[sat_last], "close") is not None and field(rows[sun_first], "close") is not None


def truth_funding(market, inst: str, now: int) -> list[tuple[int, float]]:
    rows = market.funding_history(inst, now, after=ms(SUN) + 2 * 86_400_000, before=ms(SAT) - 86_400_000, limit=400)
    return sorted((int(r["fundingTime"]), float(r["fundingRate"])) for r in rows)


def test_funding_rate_is_the_last_settlement_at_or_before_the_close(built):
    market, now = built["market"], built["now"]
    compared = 0
    for inst in built["insts"]:
        settlements = truth_funding(market, inst, now)
        for freq in FREQS:
            step = STEP_MIN[freq] * MIN
            for ts, values in built["got"][freq][inst].items():
                if field(values, "close") is None:
                    continue
                close = ms(ts) + step
                known = [r for t, r in settlements if close - FUNDING_MAX_AGE_MS <= t <= close]
                want = f32(known[-1]) if known else None
                assert field(values, "funding_rate") == want, (inst, freq, ts)
                compared += 1
    assert compared > 3 * 2 * 1440


def test_funding_settled_at_0800_appears_first_in_the_bar_closing_at_0800(built):
    market, now = built["market"], built["now"]
    saturday = [i for i in built["insts"] if f"{SAT} 07:59:00" in built["got"]["1min"][i]]  # members that day
    assert saturday
    for inst in saturday:
        settlements = dict(truth_funding(market, inst, now))
        at_00, at_08 = f32(settlements[ms(f"{SAT}T00:00")]), f32(settlements[ms(f"{SAT}T08:00")])
        for freq in ("1min", "5min", "60min"):
            rows = built["got"][freq][inst]
            step = STEP_MIN[freq] * MIN
            closing_at_8 = label(ms(f"{SAT}T08:00") - step, freq)
            before = label(ms(f"{SAT}T08:00") - 2 * step, freq)
            assert field(rows[closing_at_8], "funding_rate") == at_08, (inst, freq)
            assert field(rows[before], "funding_rate") == at_00, (inst, freq)
        # the day bar of Saturday closes at Sunday 00:00: that settlement is known at its close
        day = built["got"]["day"][inst][f"{SAT} 00:00:00"]
        assert field(day, "funding_rate") == f32(settlements[ms(f"{SUN}T00:00")])
    # the check means something: the two settlements differ for the instruments compared
    assert any(
        dict(truth_funding(market, i, now))[ms(f"{SAT}T00:00")] != dict(truth_funding(market, i, now))[ms(f"{SAT}T08:00")]
        for i in saturday
    )


def oi_pushes(data: Path) -> dict[str, list[tuple[int, str]]]:
    """(exchange ts, oiCcy) of every open-interest push the collector recorded, per instrument."""
    out: dict[str, list[tuple[int, str]]] = {}
    for path in sorted((data / "raw" / "ws" / "open-interest").glob("*/*/*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            out.setdefault(rec["inst"], []).append((int(rec["data"]["ts"]), rec["data"]["oiCcy"]))
    return {k: sorted(set(v)) for k, v in out.items()}


def test_open_interest_is_the_last_push_at_or_before_the_close(built):
    market = built["market"]
    pushes = oi_pushes(built["data"])
    stream_start = min(t for v in pushes.values() for t, _ in v)
    with_value = without = 0
    for inst in built["insts"]:
        inst_pushes = pushes.get(inst, [])
        for t, oi_ccy in inst_pushes[:: max(1, len(inst_pushes) // 20)]:
            assert oi_ccy == market.open_interest(inst, t)["oiCcy"]  # the stream is the simulator's truth
        for freq in FREQS:
            step = STEP_MIN[freq] * MIN
            for ts, values in built["got"][freq][inst].items():
                if field(values, "close") is None:
                    continue
                close = ms(ts) + step
                known = [(t, v) for t, v in inst_pushes if close - OI_MAX_AGE_MS <= t <= close]
                if known:
                    t_star = known[-1][0]
                    want = f32(market.open_interest(inst, t_star)["oiCcy"])
                    with_value += 1
                else:
                    want = None  # no push known at the close (e.g. before the stream started): never invented
                    without += 1
                assert field(values, "open_interest") == want, (inst, freq, ts)
                if close < stream_start:
                    assert want is None
    assert with_value > 50 and without > 3 * 1000


def truth_bars(market, inst: str, bar: str, start_ms: int, end_ms: int, now: int) -> list[list[str]]:
    rows, after = [], end_ms
    while True:
        page = market.candles(inst, bar, now, after=after, limit=100)
        rows += [r for r in page if int(r[0]) >= start_ms]
        if not page or min(int(r[0]) for r in page) <= start_ms:
            break
        after = min(int(r[0]) for r in page)
    return sorted((r for r in rows if r[8] == "1"), key=lambda r: int(r[0]))


@pytest.mark.parametrize(("freq", "bar"), [("5min", "5m"), ("60min", "1H")])
def test_coarse_bars_equal_the_exchange_bars(built, freq: str, bar: str):
    """OHLC, volume (base coin = volCcy), amount (volCcyQuote), vwap, factor and coverage."""
    market, now = built["market"], built["now"]
    step = STEP_MIN[freq]
    compared = 0
    for inst in built["insts"]:
        spec = market.spec(inst)
        ct_val = spec.ct_val_mant * 10.0**spec.ct_val_exp
        minutes = {int(r[0]) for day in (SAT, SUN) for r in market.candles_1m(inst, day)}
        for row in truth_bars(market, inst, bar, ms(SAT), ms(SUN) + 86_400_000, now):
            start = int(row[0])
            values = built["got"][freq][inst].get(label(start, freq))
            if values is None or field(values, "close") is None:
                continue  # not a member that day: no bar exported
            compared += 1
            o, h, lo, c, vol, amount = (f32(x) for x in (row[1], row[2], row[3], row[4], row[6], row[7]))
            assert float(row[6]) == pytest.approx(float(row[5]) * ct_val, rel=1e-12)  # volCcy = contracts x ctVal
            assert [field(values, k) for k in ("open", "high", "low", "close")] == [o, h, lo, c], (inst, freq, start)
            assert field(values, "volume") == pytest.approx(vol, rel=2e-6)
            assert field(values, "amount") == pytest.approx(amount, rel=2e-6)
            want_vwap = float(row[7]) / float(row[6]) if float(row[6]) > 0 else None
            assert field(values, "vwap") == (pytest.approx(want_vwap, rel=2e-6) if want_vwap else None)
            assert field(values, "factor") == 1.0
            present = sum(1 for m in range(start, start + step * MIN, MIN) if m in minutes)
            assert field(values, "coverage") == f32(present / step), (inst, freq, start)
    assert compared >= 2 * SIZE * 1440 // step  # every member-day's bars
