"""The benchmark's own logic: baselines, the slot-by-slot check, Snakemake job-count parsing, and the
history-sources benchmark's arithmetic (window, T+2 days, extrapolation, table)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from bench.baselines import _volume_amount, pandas_dump_bin, pandas_per_symbol_day, polars_limit
from bench.check import compare_dirs, implied_calendar
from bench.history_sources import (TABLE_HEADERS, Figures, days_needing_rest, extrapolate, figure_row, format_table,
                                   human_seconds, pages_per_full_day, ratio, window)
from bench.run import job_stats

DAY = dt.date(2024, 2, 1)
DAY_MS = int(dt.datetime(2024, 2, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
FREQS = ["1min", "5min", "60min", "day"]


def _write_store(raw: Path) -> None:
    """Two instruments, a few minutes each (a gap, a duplicate, a REST copy, the 23:59 candle in
    the next day's hour 00), as the pipeline's raw store lays them out."""
    ws = raw / "ws" / "candle1m"
    lines: dict[Path, list[str]] = {}

    def add(path: Path, inst: str, minute: int, source: str = "ws") -> None:
        ts = DAY_MS + minute * 60_000
        price = 100.0 + minute / 7
        data = [str(ts), f"{price:.4f}", f"{price + 1:.4f}", f"{price - 1:.4f}", f"{price + 0.5:.4f}", "12",
                f"{1.2 + minute / 10:.1f}", f"{(1.2 + minute / 10) * price:.5f}", "1"]
        rec = {"v": 1, "source": source, "channel": "candle1m", "inst": inst, "ts": ts, "recv_ts": ts + 60_150,
               "data": data}
        lines.setdefault(path, []).append(json.dumps(rec))

    for minute in [0, 1, 2, 4, 7, 61, 62]:
        add(ws / str(DAY) / "00" / "0-1.jsonl", "BTC-USDT-SWAP", minute)
        add(ws / str(DAY) / "00" / "0-1.jsonl", "ETH-USDT-SWAP", minute + 1)
    add(ws / str(DAY) / "00" / "0-1.jsonl", "BTC-USDT-SWAP", 4)  # duplicate
    add(ws / str(DAY + dt.timedelta(days=1)) / "00" / "0-2.jsonl", "ETH-USDT-SWAP", 1439)
    add(raw / "rest" / "candle1m" / f"{DAY}.jsonl", "BTC-USDT-SWAP", 3, source="rest")
    for path, text in lines.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(text) + "\n")


def test_volume_amount_follow_okx_units() -> None:
    swap = ["0", "1", "1", "1", "1", "7", "0.7", "70.5", "1"]
    assert _volume_amount("BTC-USDT-SWAP", swap) == (0.7, 70.5)  # volCcy (base), volCcyQuote
    assert _volume_amount("BTC-USDT", swap) == (7.0, 70.5)  # SPOT: vol is base coin
    volume, amount = _volume_amount("BTC-USDT-SWAP", swap[:7])  # pre-2023 row: no quote turnover
    assert volume == 0.7 and np.isnan(amount)


def test_baselines_agree_slot_by_slot(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _write_store(raw)
    # 8 bars each (BTC: 7 from the stream + 1 from REST; ETH: 7 + its 23:59 from the next day's hour 00)
    assert pandas_dump_bin(raw, tmp_path / "dump", [DAY]) == 16
    assert polars_limit(raw, tmp_path / "polars", [DAY]) == 16
    assert pandas_per_symbol_day(raw, tmp_path / "pandas", [DAY]) == 16
    implied = {freq: implied_calendar(DAY, 1, freq) for freq in FREQS}
    for name in ("polars", "pandas"):
        result = compare_dirs(baseline=name, reference=tmp_path / "dump" / "qlib", other=tmp_path / name,
                              freqs=FREQS, fields=["open", "high", "low", "close", "volume", "amount"],
                              other_calendar=implied)
        assert result.ok, result.mismatches
        assert result.instruments == 2
    # dump_bin's calendar is the union of the observed minutes: 12 distinct ones, not 1440
    assert len((tmp_path / "dump" / "qlib" / "calendars" / "1min.txt").read_text().splitlines()) == 12


def _qlib_dir(root: Path, calendar: np.ndarray, values: dict[str, tuple[int, list[float]]], freq: str) -> Path:
    (root / "calendars").mkdir(parents=True)
    text = [str(t).replace("T", " ") + ":00" for t in calendar]
    (root / "calendars" / f"{freq}.txt").write_text("\n".join(text) + "\n")
    (root / "features" / "x-usdt-swap").mkdir(parents=True)
    for fld, (start, vals) in values.items():
        payload = np.asarray([start, *vals], dtype="<f4").tobytes()
        (root / "features" / "x-usdt-swap" / f"{fld}.{freq}.bin").write_bytes(payload)
    return root


@pytest.mark.parametrize("freq", ["1min", "5min"])
def test_check_maps_each_bin_through_its_own_calendar(tmp_path: Path, freq: str) -> None:
    full = implied_calendar(DAY, 1, freq)
    union = np.delete(full, [0, 3])  # a dump_bin-style calendar: slots nobody traded are absent
    nan = float("nan")
    ref = _qlib_dir(tmp_path / "ref", full, {"close": (2, [1.5, nan, 2.5]), "volume": (2, [8548016.5, nan, 3.0])},
                    freq)
    same = _qlib_dir(tmp_path / "same", union, {"close": (1, [1.5, 2.5]), "volume": (1, [8548016.5, 3.0])}, freq)
    result = compare_dirs(baseline="b", reference=ref, other=same, freqs=[freq], fields=["close", "volume"])
    assert result.ok and result.slots == {freq: 2} and result.values == 4

    one_ulp = float(np.nextafter(np.float32(8548016.5), np.float32(np.inf)))
    tie = _qlib_dir(tmp_path / "tie", union, {"close": (1, [1.5, 2.5]), "volume": (1, [one_ulp, 3.0])}, freq)
    result = compare_dirs(baseline="b", reference=ref, other=tie, freqs=[freq], fields=["close", "volume"])
    # a sum over minutes may round the other way at a float32 tie; a 1min value may not
    assert result.ok == (freq != "1min")
    assert result.ulp_ties == (0 if freq == "1min" else 1)

    shifted = _qlib_dir(tmp_path / "shifted", full, {"close": (1, [1.5, nan, 2.5])}, freq)
    result = compare_dirs(baseline="b", reference=ref, other=shifted, freqs=[freq], fields=["close"])
    assert not result.ok and "NaN pattern" in result.mismatches[0]


def test_job_stats_parses_snakemake_table() -> None:
    text = """Building DAG of jobs...
Job stats:
job                 count
----------------  -------
clean                   1
resample                2
all                     1
total                   4

Select jobs to execute...
"""
    assert job_stats(text) == {"clean": 1, "resample": 2, "all": 1, "total": 4}
    assert job_stats("Nothing to be done.") == {}


# --------------------------------------------------------------------------- bench.history_sources


def test_history_window_and_the_days_rest_must_fetch() -> None:
    first, last, clock = window(days=365, history_start=dt.date(2024, 1, 1))
    assert (first, last, clock) == (dt.date(2024, 1, 6), dt.date(2025, 1, 4), "2025-01-05T12:00:00Z")
    # clock 2025-01-05 20:00 UTC+8: files up to the UTC+8 date 2025-01-03 are published (T+2);
    # UTC day D needs the files dated D and D+1, so 01-03 (its last 8 h) and 01-04 are REST's
    published = dt.date(2025, 1, 3)
    assert days_needing_rest(first=first, last=last, published=published) == [dt.date(2025, 1, 3), dt.date(2025, 1, 4)]
    assert days_needing_rest(first=first, last=dt.date(2025, 1, 2), published=published) == []


def test_history_extrapolation_is_linear_per_instrument_day() -> None:
    assert pages_per_full_day() == 5  # ceil(1440 / 300): the fifth page reaches past the day's start
    assert pages_per_full_day(page_rows=100) == 15
    sample = Figures(rest_pages=500, other=2, rest_bytes=14_000_000, seconds=55.0)  # 50 instruments x 2 days
    full = extrapolate(sample, sample_units=100, full_units=50 * 365)
    assert full.rest_pages == 91_250 and full.other == 365 and full.rest_bytes == 2_555_000_000
    assert full.seconds == pytest.approx(10_037.5) and full.requests == 91_615
    archive = Figures(listing=10, downloads=750, rest_pages=350, other=1, seconds=80.0)
    assert ratio(full.requests, archive.requests) == pytest.approx(91_615 / 1_111)
    assert ratio(1.0, 0.0) == float("inf")
    with pytest.raises(ValueError):
        extrapolate(sample, sample_units=0, full_units=10)


def test_history_table_is_aligned_and_labelled() -> None:
    rows = [figure_row("(a) archive+rest, 50 x 365 days",
                       Figures(listing=10, downloads=750, rest_pages=350, other=1, file_bytes=850e6, rest_bytes=9e6,
                               seconds=75.2), how="measured"),
            figure_row("(b) rest only, 50 x 365 days", Figures(rest_pages=91_250, rest_bytes=2.5e9, seconds=10_037),
                       how="extrapolated")]
    lines = format_table(TABLE_HEADERS, rows).splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1  # every line as wide as the header
    assert lines[0].startswith("approach") and set(lines[1]) == {"-", " "}
    assert "1,111" in lines[2] and "850.0" in lines[2] and "75.2 s" in lines[2] and lines[2].endswith("measured")
    assert "91,250" in lines[3] and "2.79 h" in lines[3] and lines[3].endswith("extrapolated")
    assert (human_seconds(59), human_seconds(600), human_seconds(10_037)) == ("59.0 s", "10.0 min", "2.79 h")
