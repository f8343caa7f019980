"""feeder.qlib_export: write a small provider and read it back with real Qlib."""

from __future__ import annotations

import ast
import datetime as dt
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.publish import publish_dataset
from feeder.qlib_blocks import block_instruments, day_block, write_day_blocks
from feeder.qlib_export import (
    BUILD_LEDGER,
    DEFAULT_FIELDS,
    export_day_blocks,
    export_qlib,
)
from feeder.qlib_format import (
    calendar_frame,
    decode_feature,
    dense_series,
    encode_feature,
)
from feeder.resample import resample_bars

FRI, SAT, SUN = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)
DAYS = [FRI, SAT, SUN]
T0 = dt.datetime(2024, 3, 1)
FREQS = ["1min", "5min", "60min", "day"]
MARKET = "top3"


def minute(m: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=m)


def one_minute_bars() -> pl.DataFrame:
    """Three instruments over Fri-Sun with holes, including one across Friday's midnight.

    BTC: every minute except Sat 12:00-12:09. ETH: from Fri 01:40 to Sun 22:00, missing
    Fri 23:58 - Sat 00:02. DOGE: Saturday 06:00-06:29 only. Prices carry decimals that float32
    cannot hold exactly, so the test checks the float32 rounding too.
    """
    m = pl.int_range(0, 3 * 1440, eager=True).alias("m")
    btc = m.to_frame().filter(~pl.col("m").is_between(1440 + 720, 1440 + 729)).with_columns(
        pl.lit("BTC-USDT-SWAP").alias("inst"), (60000.123456 + pl.col("m") * 0.1).alias("close")
    )
    eth = m.to_frame().filter(
        pl.col("m").is_between(100, 2 * 1440 + 1320) & ~pl.col("m").is_between(1438, 1442)
    ).with_columns(pl.lit("ETH-USDT-SWAP").alias("inst"), (3000.987654 + pl.col("m") * 0.01).alias("close"))
    doge = m.to_frame().filter(pl.col("m").is_between(1440 + 360, 1440 + 389)).with_columns(
        pl.lit("DOGE-USDT-SWAP").alias("inst"), (0.1234567 + pl.col("m") * 1e-7).alias("close")
    )
    return (
        pl.concat([btc, eth, doge])
        .with_columns(
            (pl.lit(T0) + pl.duration(minutes=pl.col("m"))).cast(pl.Datetime("ms")).alias("ts"),
            (pl.col("close") * 0.999).alias("open"),
            (pl.col("close") * 1.001).alias("high"),
            (pl.col("close") * 0.998).alias("low"),
            ((pl.col("m") % 7) * 0.25).alias("volume"),
        )
        .with_columns((pl.col("volume") * pl.col("close")).alias("amount"))
        .select("inst", "ts", "open", "high", "low", "close", "volume", "amount")
    )


def write_bars(root: Path, bars_1m: pl.DataFrame, days: list[dt.date]) -> dict[str, list[Path]]:
    paths: dict[str, list[Path]] = {}
    for freq in FREQS:
        for day in days:
            path = root / "bars" / freq / f"{day}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            resample_bars(bars_1m.filter(pl.col("ts").dt.date() == day), freq).write_parquet(path)
            paths.setdefault(freq, []).append(path)
    return paths


MEMBERSHIP = pl.DataFrame(
    {
        "day": [FRI, SAT, SUN, FRI, SAT, SUN, SAT, SAT, SUN],
        "inst": ["BTC-USDT-SWAP"] * 3 + ["ETH-USDT-SWAP"] * 3 + ["DOGE-USDT-SWAP", "SOL-USDT-SWAP", "SOL-USDT-SWAP"],
        "member": [True, True, True, True, False, True, True, True, False],
    },
    schema={"day": pl.Date, "inst": pl.Utf8, "member": pl.Boolean},
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("qlib_export")
    bars_1m = one_minute_bars()
    paths = write_bars(root, bars_1m, DAYS)
    qlib_dir = root / "qlib"
    summary = export_qlib(
        bars_paths=paths, days=DAYS, membership=MEMBERSHIP, market_name=MARKET, qlib_dir=qlib_dir
    )
    return {"root": root, "qlib_dir": qlib_dir, "bars_1m": bars_1m, "paths": paths, "summary": summary}


@pytest.fixture(scope="module")
def D(dataset: dict[str, Any]) -> Any:  # noqa: N802 (Qlib's own name)
    qlib = pytest.importorskip("qlib")
    from qlib.data import D as qlib_d

    # qlib.init clears Qlib's in-process caches (calendars, instruments by market name)
    qlib.init(provider_uri=str(dataset["qlib_dir"]), region="us", logging_level=logging.WARNING)
    return qlib_d


def expected_bars(dataset: dict[str, Any], freq: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in dataset["paths"][freq]])


def qlib_frame(frame: Any) -> pl.DataFrame:
    """Qlib's pandas result (MultiIndex instrument, datetime) → polars inst, ts, columns."""
    flat = frame.reset_index()
    return pl.from_pandas(flat).rename({"instrument": "inst", "datetime": "ts"}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms"))
    )


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def test_calendars_are_complete_24_7(dataset: dict[str, Any]) -> None:
    cal_dir = dataset["qlib_dir"] / "calendars"
    one = (cal_dir / "1min.txt").read_text().splitlines()
    assert len(one) == 3 * 1440
    assert one[0] == "2024-03-01 00:00:00" and one[-1] == "2024-03-03 23:59:00"
    # Friday's last minute, Saturday's midnight: present although ETH has no bar there
    assert one[1439:1441] == ["2024-03-01 23:59:00", "2024-03-02 00:00:00"]
    assert "2024-03-02 12:05:00" in one  # a minute where BTC has a hole
    assert (cal_dir / "day.txt").read_text().splitlines() == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert len((cal_dir / "5min.txt").read_text().splitlines()) == 3 * 288
    sixty = (cal_dir / "60min.txt").read_text().splitlines()
    assert len(sixty) == 72 and sixty[-1] == "2024-03-03 23:00:00"
    assert dataset["summary"]["freqs"]["1min"]["slots"] == 4320


def test_instrument_files(dataset: dict[str, Any]) -> None:
    inst_dir = dataset["qlib_dir"] / "instruments"
    assert (inst_dir / "all.txt").read_text().splitlines() == [
        "BTC-USDT-SWAP\t2024-03-01 00:00:00\t2024-03-03 23:59:00",
        "DOGE-USDT-SWAP\t2024-03-02 00:00:00\t2024-03-02 23:59:00",
        "ETH-USDT-SWAP\t2024-03-01 00:00:00\t2024-03-03 23:59:00",
    ]
    assert (inst_dir / f"{MARKET}.txt").read_text().splitlines() == [
        "BTC-USDT-SWAP\t2024-03-01 00:00:00\t2024-03-03 23:59:00",
        "DOGE-USDT-SWAP\t2024-03-02 00:00:00\t2024-03-02 23:59:00",
        "ETH-USDT-SWAP\t2024-03-01 00:00:00\t2024-03-01 23:59:00",
        "ETH-USDT-SWAP\t2024-03-03 00:00:00\t2024-03-03 23:59:00",
        "SOL-USDT-SWAP\t2024-03-02 00:00:00\t2024-03-02 23:59:00",  # member without data
    ]


def test_feature_bins_byte_format(dataset: dict[str, Any]) -> None:
    features = dataset["qlib_dir"] / "features"
    assert sorted(p.name for p in features.iterdir()) == ["btc-usdt-swap", "doge-usdt-swap", "eth-usdt-swap"]
    assert len(list((features / "btc-usdt-swap").iterdir())) == len(DEFAULT_FIELDS) * len(FREQS)
    start, values = decode_feature((features / "eth-usdt-swap" / "close.1min.bin").read_bytes())
    assert start == 100 and len(values) == 2 * 1440 + 1320 - 100 + 1
    assert np.isnan(values[1438 - 100 : 1443 - 100]).all() and not np.isnan(values[1443 - 100])
    assert values[0] == np.float32(3000.987654 + 100 * 0.01)
    start, factor = decode_feature((features / "doge-usdt-swap" / "factor.5min.bin").read_bytes())
    assert start == (1440 + 360) // 5 and factor.tolist() == [1.0] * 6
    start, day_close = decode_feature((features / "doge-usdt-swap" / "close.day.bin").read_bytes())
    assert start == 1 and len(day_close) == 1
    raw = (features / "btc-usdt-swap" / "volume.1min.bin").read_bytes()
    assert len(raw) == 4 * (1 + 3 * 1440)
    assert np.frombuffer(raw[:4], dtype="<f4")[0] == 0.0


def test_empty_vwap_is_nan_not_invented(dataset: dict[str, Any]) -> None:
    # minutes with m % 7 == 0 have volume 0: vwap must be NaN there, volume 0.0
    _, vwap = decode_feature((dataset["qlib_dir"] / "features" / "btc-usdt-swap" / "vwap.1min.bin").read_bytes())
    _, volume = decode_feature((dataset["qlib_dir"] / "features" / "btc-usdt-swap" / "volume.1min.bin").read_bytes())
    assert np.isnan(vwap[0]) and volume[0] == 0.0
    assert vwap[1] == np.float32(60000.123456 + 0.1)


# --------------------------------------------------------------------------------------------
# Real Qlib
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("freq", FREQS)
def test_qlib_reads_every_frequency_back(dataset: dict[str, Any], D: Any, freq: str) -> None:
    fields = ["$open", "$high", "$low", "$close", "$volume", "$amount", "$vwap", "$factor", "$coverage"]
    insts = ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "DOGE-USDT-SWAP"]
    got = qlib_frame(D.features(insts, fields, "2024-03-01 00:00:00", "2024-03-03 23:59:00", freq=freq))
    got = got.rename({f: f[1:] for f in fields})
    expected = expected_bars(dataset, freq).with_columns(pl.lit(1.0).alias("factor"))
    joined = got.join(expected, on=["inst", "ts"], how="left", suffix="_exp")
    present = joined.filter(pl.col("factor_exp").is_not_null())
    assert present.height == expected.height  # every bar comes back
    for field in ("open", "high", "low", "close", "volume", "amount", "vwap", "factor", "coverage"):
        exp = present[f"{field}_exp"].cast(pl.Float32).fill_null(float("nan")).to_numpy()
        np.testing.assert_array_equal(present[field].to_numpy(), exp, err_msg=f"{freq} {field}")
    # every other row Qlib returns is a hole between an instrument's first and last bar: all NaN
    holes = joined.filter(pl.col("factor_exp").is_null())
    assert holes.select(pl.all_horizontal(pl.col(f).is_nan() for f in ("close", "volume", "factor"))).to_series().all()


def test_qlib_midnight_and_holes_1min(D: Any) -> None:
    got = qlib_frame(
        D.features(["BTC-USDT-SWAP", "ETH-USDT-SWAP"], ["$close", "$volume"], "2024-03-01 23:56:00",
                   "2024-03-02 00:04:00", freq="1min")
    )  # fmt: skip
    ts = [minute(m) for m in range(1436, 1445)]
    btc = got.filter(pl.col("inst") == "BTC-USDT-SWAP")
    assert btc["ts"].to_list() == ts
    want = np.float32([60000.123456 + m * 0.1 for m in range(1436, 1445)])
    np.testing.assert_array_equal(btc["$close"].to_numpy(), want)
    eth = got.filter(pl.col("inst") == "ETH-USDT-SWAP")
    assert eth["ts"].to_list() == ts  # the hole's minutes are rows, with NaN
    closes = eth["$close"].to_numpy()
    assert np.isnan(closes[2:7]).all() and not np.isnan(closes[[0, 1, 7, 8]]).any()
    assert closes[0] == np.float32(3000.987654 + 1436 * 0.01)


def test_qlib_weekend_days(D: Any) -> None:
    got = qlib_frame(D.features(["BTC-USDT-SWAP"], ["$close"], "2024-03-01", "2024-03-03", freq="day"))
    assert got["ts"].to_list() == [dt.datetime(2024, 3, d) for d in (1, 2, 3)]
    cal = D.calendar(start_time="2024-03-02 00:00:00", end_time="2024-03-03 23:59:00", freq="1min")
    assert len(cal) == 2 * 1440  # Saturday and Sunday, every minute


def test_qlib_instrument_spans(D: Any) -> None:
    import pandas as pd

    top = D.list_instruments(D.instruments(MARKET), as_list=False, freq="1min")
    ts = pd.Timestamp
    assert top == {
        "BTC-USDT-SWAP": [(ts("2024-03-01 00:00:00"), ts("2024-03-03 23:59:00"))],
        "DOGE-USDT-SWAP": [(ts("2024-03-02 00:00:00"), ts("2024-03-02 23:59:00"))],
        "ETH-USDT-SWAP": [
            (ts("2024-03-01 00:00:00"), ts("2024-03-01 23:59:00")),
            (ts("2024-03-03 00:00:00"), ts("2024-03-03 23:59:00")),
        ],
        "SOL-USDT-SWAP": [(ts("2024-03-02 00:00:00"), ts("2024-03-02 23:59:00"))],
    }
    everything = D.list_instruments(D.instruments("all"), as_list=False, freq="1min")
    assert everything["ETH-USDT-SWAP"] == [(ts("2024-03-01 00:00:00"), ts("2024-03-03 23:59:00"))]
    assert sorted(everything) == ["BTC-USDT-SWAP", "DOGE-USDT-SWAP", "ETH-USDT-SWAP"]


def test_qlib_market_is_point_in_time(D: Any) -> None:
    got = qlib_frame(
        D.features(D.instruments(MARKET), ["$close"], "2024-03-01 00:00:00", "2024-03-03 23:59:00", freq="1min")
    )
    eth_days = got.filter(pl.col("inst") == "ETH-USDT-SWAP")["ts"].dt.date().unique().sort().to_list()
    assert eth_days == [FRI, SUN]  # not a member on Saturday
    # the full-datetime span end keeps Sunday's last minutes (a date-only end would clip them)
    btc = got.filter(pl.col("inst") == "BTC-USDT-SWAP")
    assert btc["ts"].max() == minute(3 * 1440 - 1)


# --------------------------------------------------------------------------------------------
# Re-export, errors, the byte format
# --------------------------------------------------------------------------------------------


def test_reexport_swaps_directory(tmp_path: Path) -> None:
    bars_1m = one_minute_bars()
    paths = write_bars(tmp_path, bars_1m, DAYS)
    qlib_dir = tmp_path / "qlib"
    export_qlib(bars_paths=paths, days=DAYS, membership=MEMBERSHIP, market_name=MARKET, qlib_dir=qlib_dir)
    assert (qlib_dir / "features" / "doge-usdt-swap").is_dir()
    # second build: only Sunday, only 1min and day
    sunday = {f: [p for p in ps if p.stem == str(SUN)] for f, ps in paths.items() if f in ("1min", "day")}
    summary = export_qlib(bars_paths=sunday, days=[SUN], membership=MEMBERSHIP, market_name=MARKET, qlib_dir=qlib_dir)
    assert summary["instruments"] == 2
    assert sorted(p.name for p in (qlib_dir / "calendars").iterdir()) == ["1min.txt", "day.txt"]
    assert not (qlib_dir / "features" / "doge-usdt-swap").exists()
    start, close = decode_feature((qlib_dir / "features" / "eth-usdt-swap" / "close.1min.bin").read_bytes())
    assert start == 0 and len(close) == 1321
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars", "qlib", "qlib.versions"]  # no temp dirs left
    assert qlib_dir.is_symlink()  # published atomically: the link moved to the new version
    versions = sorted(p.name for p in (tmp_path / "qlib.versions").iterdir() if p.is_dir())
    assert len(versions) == 2 and not [v for v in versions if v.startswith("build-")]  # previous one kept


def test_workflow_day_blocks_publish_the_same_dataset(dataset: dict[str, Any], tmp_path: Path) -> None:
    """The workflow's path (day blocks per resample job -> assemble -> publish) = export_qlib, byte for byte."""
    blocks, universe_paths = workflow_inputs(dataset, tmp_path)
    built = tmp_path / "qlib-dataset"
    summary = export_day_blocks(blocks=blocks, universe_paths=universe_paths, days=DAYS, market_name=MARKET,
                                out_dir=built)  # fmt: skip
    assert summary == dataset["summary"]
    qlib_dir = tmp_path / "qlib"
    (built / ".snakemake_timestamp").touch()  # the workflow tool's marker in its directory output
    publish_dataset(built, qlib_dir, ignore=[".snakemake_timestamp"])  # not part of the dataset: left out
    files = dataset_files(qlib_dir)
    assert files == dataset_files(dataset["qlib_dir"])
    for rel in files:
        assert (qlib_dir / rel).read_bytes() == (dataset["qlib_dir"] / rel).read_bytes(), rel
    # published by hard links: no second copy of the data
    assert (qlib_dir / files[-1]).stat().st_ino == (built / files[-1]).stat().st_ino


def dataset_files(root: Path) -> list[Path]:
    """A provider directory's files, but its build ledger (which names the day block files it was built from)."""
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != BUILD_LEDGER)


def assert_same_dataset(built: Path, expected: Path) -> None:
    files = dataset_files(built)
    assert files == dataset_files(expected)
    for rel in files:
        assert (built / rel).read_bytes() == (expected / rel).read_bytes(), rel


def workflow_inputs(dataset: dict[str, Any], tmp_path: Path) -> tuple[dict[str, dict[dt.date, Path]], list[Path]]:
    """The resample jobs' day blocks and the universe files of DAYS, as the workflow lays them out."""
    universe_paths = []
    for day, part in MEMBERSHIP.partition_by("day", as_dict=True).items():
        path = tmp_path / "universe" / f"{day[0]}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        part.with_columns(pl.lit(1, dtype=pl.Int32).alias("rank"), pl.lit(1.0).alias("metric")).write_parquet(path)
        universe_paths.append(path)
    blocks: dict[str, dict[dt.date, Path]] = {freq: {} for freq in FREQS}
    for day in DAYS:
        frames = {freq: pl.read_parquet(p) for freq in FREQS for p in dataset["paths"][freq] if p.stem == str(day)}
        out = {freq: tmp_path / "qlib-blocks" / freq / f"{day}.arrow" for freq in FREQS}
        write_day_blocks(frames, day=day, fields=DEFAULT_FIELDS, out_paths=out)
        for freq, path in out.items():
            blocks[freq][day] = path
    return blocks, sorted(universe_paths)


def build_and_publish(blocks, universe_paths, days, work: Path, qlib_dir: Path) -> dict[str, Any]:
    """One run of the qlib + publish_qlib rules: build at work/, published at qlib_dir (the append base)."""
    shutil.rmtree(work, ignore_errors=True)  # Snakemake removes a job's outputs before it runs
    summary = export_day_blocks(blocks={f: {d: p for d, p in b.items() if d in days} for f, b in blocks.items()},
                                universe_paths=[p for p in universe_paths if dt.date.fromisoformat(p.stem) in days],
                                days=days, market_name=MARKET, out_dir=work, published=qlib_dir)
    publish_dataset(work, qlib_dir)
    return summary


def test_adding_days_appends_to_the_published_dataset_and_gives_the_same_bytes(
    dataset: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run that only adds days reads only the new day blocks: bins of instruments without a new bar are
    hard links to the published version's, the others copies with the new slots at the end. The result is
    byte for byte the full build (ETH runs across Friday's midnight, DOGE appears on Saturday), and the
    published version it started from is never written to."""
    blocks, universe_paths = workflow_inputs(dataset, tmp_path)
    qlib_dir, work = tmp_path / "qlib", tmp_path / "work" / "qlib-dataset"
    build_and_publish(blocks, universe_paths, [FRI], work, qlib_dir)
    friday = qlib_dir.resolve()
    friday_bytes = {rel: (friday / rel).read_bytes() for rel in dataset_files(friday)}
    caplog.set_level(logging.INFO, logger="feeder.qlib_export")
    summary = build_and_publish(blocks, universe_paths, [FRI, SAT], work, qlib_dir)
    assert "(appended)" in caplog.text
    # the version it appended to (a reader may still be on it) is unchanged, byte for byte
    assert {rel: (friday / rel).read_bytes() for rel in dataset_files(friday)} == friday_bytes
    sat_version = qlib_dir.resolve()
    caplog.clear()
    summary = build_and_publish(blocks, universe_paths, DAYS, work, qlib_dir)
    assert "(appended)" in caplog.text and "full build" not in caplog.text
    assert summary == dataset["summary"]
    assert_same_dataset(qlib_dir, dataset["qlib_dir"])
    # Sunday has no DOGE bar: its bins are the Saturday version's files, not copies
    doge = Path("features/doge-usdt-swap/close.1min.bin")
    assert (qlib_dir / doge).stat().st_ino == (sat_version / doge).stat().st_ino
    btc = Path("features/btc-usdt-swap/close.1min.bin")
    assert (qlib_dir / btc).stat().st_ino != (sat_version / btc).stat().st_ino


def test_a_version_pinned_by_a_reader_answers_the_same_after_days_are_appended(
    dataset: dict[str, Any], D: Any, tmp_path: Path
) -> None:
    """Why an append copies a bin instead of growing the published file in place (hard links would
    make that free): Qlib reads past the calendar's end for expressions that look forward (it loads
    slots up to ``end_index + right window``, e.g. for a label ``Ref($close, -1)``). Grown in place,
    a version a reader pinned (research/run_example.py resolves paths.qlib once) would answer such a
    query with the next version's bars. Here it keeps answering as before: no bar after its end."""
    import qlib

    blocks, universe_paths = workflow_inputs(dataset, tmp_path)
    qlib_dir, work = tmp_path / "qlib", tmp_path / "work" / "qlib-dataset"
    build_and_publish(blocks, universe_paths, [FRI, SAT], work, qlib_dir)
    pinned = qlib_dir.resolve()

    def next_close(provider: Path, freq: str, start: str, end: str) -> list[float]:
        qlib.init(provider_uri=str(provider), region="us", logging_level=logging.WARNING)
        frame = D.features(["BTC-USDT-SWAP"], ["Ref($close, -1)"], start, end, freq=freq)
        return frame.iloc[:, 0].tolist()

    # Saturday's last two minutes and Saturday itself: the pinned version's last slots
    queries = (("1min", "2024-03-02 23:58:00", "2024-03-02 23:59:00"), ("day", "2024-03-02", "2024-03-02"))
    try:
        before = {f: next_close(pinned, f, s, e) for f, s, e in queries}
        assert before["1min"][0] == pytest.approx(60000.123456 + (2 * 1440 - 1) * 0.1, rel=1e-6)
        assert np.isnan(before["1min"][1]) and np.isnan(before["day"][0])  # nothing after the version's end
        build_and_publish(blocks, universe_paths, DAYS, work, qlib_dir)  # Sunday appended: a new version
        assert qlib_dir.resolve() != pinned
        after = {f: next_close(pinned, f, s, e) for f, s, e in queries}
        assert str(after) == str(before)  # NaN-aware: the same answers, NaN where there was NaN
        # the new version does have Sunday's first bar after Saturday's last minute
        newest = next_close(qlib_dir, "1min", "2024-03-02 23:59:00", "2024-03-02 23:59:00")
        assert newest[0] == pytest.approx(60000.123456 + 2 * 1440 * 0.1, rel=1e-6)
    finally:  # the module's other Qlib tests read the module's dataset
        qlib.init(provider_uri=str(dataset["qlib_dir"]), region="us", logging_level=logging.WARNING)


def test_a_changed_old_day_or_a_torn_base_file_means_a_full_build(
    dataset: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The history changed (an old day's block was rebuilt) or the base is not what its ledger says (a torn
    bin): the build does not append; it builds everything, and the bytes are still the full build's."""
    blocks, universe_paths = workflow_inputs(dataset, tmp_path)
    qlib_dir, work = tmp_path / "qlib", tmp_path / "work" / "qlib-dataset"
    build_and_publish(blocks, universe_paths, [FRI, SAT], work, qlib_dir)
    friday_block = blocks["1min"][FRI]
    rebuilt = friday_block.with_suffix(".new")
    rebuilt.write_bytes(friday_block.read_bytes())
    rebuilt.replace(friday_block)  # what a rerun resample job does: same day, a new file
    caplog.set_level(logging.INFO, logger="feeder.qlib_export")
    build_and_publish(blocks, universe_paths, DAYS, work, qlib_dir)
    assert "1min day blocks changed since it was built: ['2024-03-01']" in caplog.text
    assert "(full build)" in caplog.text
    assert_same_dataset(qlib_dir, dataset["qlib_dir"])

    build_and_publish(blocks, universe_paths, [FRI, SAT], work, qlib_dir)
    torn = qlib_dir.resolve() / "features" / "eth-usdt-swap" / "volume.60min.bin"
    torn_bytes = torn.read_bytes()[:-6]
    torn.unlink()
    torn.write_bytes(torn_bytes)  # a new file: the other versions' links keep the whole one
    caplog.clear()
    build_and_publish(blocks, universe_paths, DAYS, work, qlib_dir)
    assert "cannot append to" in caplog.text and "volume.60min.bin holds" in caplog.text
    assert_same_dataset(qlib_dir, dataset["qlib_dir"])


def test_a_base_bin_is_copied_whole_or_the_append_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy an append starts from holds every byte of the base bin, also where the kernel refuses
    copy_file_range (sendfile then); a bin shorter than its size said while copied stops the append
    (the export then builds everything) instead of leaving a short copy."""
    import errno
    import os

    import feeder.qlib_export as qe

    src = tmp_path / "close.1min.bin"
    src.write_bytes(encode_feature(7, np.arange(3000, dtype="<f4")))
    size = src.stat().st_size

    def refused(*_: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    for patch in (False, True):
        if patch:
            monkeypatch.setattr(os, "copy_file_range", refused)
        dst = tmp_path / f"copy-{patch}.bin"
        with src.open("rb") as source, dst.open("wb") as target:
            qe._copy_into(source.fileno(), target.fileno(), size)
        assert dst.read_bytes() == src.read_bytes()
    with src.open("rb") as source, (tmp_path / "short.bin").open("wb") as target:
        with pytest.raises(qe.AppendNotPossible, match=f"ended after {size} of its {size + 8} bytes"):
            qe._copy_into(source.fileno(), target.fileno(), size + 8)


def test_day_block_refuses_broken_bars() -> None:
    """Off-grid, out-of-day and doubled bars would shift every later value: they raise."""
    bars = pl.DataFrame({"inst": ["X", "X"], "ts": [T0, T0 + dt.timedelta(minutes=5)], "close": [1.0, 2.0]})
    block = day_block(bars, day=FRI, freq="5min", fields=("close", "factor"))
    assert block["inst"].to_list() == ["X"]
    close = block["close"].explode().to_numpy()
    assert close.shape == (288,) and close[0] == 1.0 and close[1] == 2.0 and np.isnan(close[2:]).all()
    for broken, match in (
        (bars.with_columns(ts=pl.col("ts") + dt.timedelta(minutes=1)), "not aligned"),
        (bars.with_columns(ts=pl.col("ts") + dt.timedelta(days=1)), "outside"),
        (pl.concat([bars, bars]), "duplicate"),
    ):
        with pytest.raises(ValueError, match=match):
            day_block(broken, day=FRI, freq="5min", fields=("close", "factor"))


def test_a_resample_job_builds_its_day_blocks_without_numpy_pyarrow_or_pandas(tmp_path: Path) -> None:
    """Every day of a build runs a resample job in a fresh process, so its imports are paid once
    a day: numpy alone is 56 ms of a job's start-up. The job's own imports (those of
    workflow/scripts/resample.py) and building and writing a day block load none of the three;
    only the export, which reads the blocks, uses pyarrow and numpy."""
    script = Path(__file__).resolve().parent.parent / "workflow" / "scripts" / "resample.py"
    imports = [ast.unparse(node) for node in ast.parse(script.read_text()).body
               if isinstance(node, ast.Import | ast.ImportFrom)]
    assert any("feeder.qlib_blocks" in line for line in imports), imports
    block_path = tmp_path / "day.arrow"
    job = "\n".join([*imports, "import sys", "import polars as pl", (
        "bars = pl.DataFrame({'inst': ['B', 'A'], 'ts': [dt.datetime(2024, 3, 1, 0, 5), dt.datetime(2024, 3, 1)],"
        " 'close': [2.0, None]})"), (
        f"write_day_blocks({{'5min': bars}}, day=dt.date(2024, 3, 1), fields=['close'],"
        f" out_paths={{'5min': Path({str(block_path)!r})}})"),
        "print(sorted(m for m in ('numpy', 'pyarrow', 'pandas') if m in sys.modules))"])
    done = subprocess.run([sys.executable, "-c", job], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
    block = pl.read_ipc(block_path)
    assert block_instruments(block_path) == ["A", "B"]
    close, factor = (np.stack(block[name].to_list()) for name in ("close", "factor"))
    assert np.isnan(close[0]).all() and factor[0, 0] == 1.0 and np.isnan(factor[0, 1:]).all()
    assert close[1, 1] == 2.0 and factor[1, 1] == 1.0 and np.isnan(np.delete(close[1], 1)).all()


def test_instrument_batches_write_the_same_files(
    dataset: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import feeder.qlib_export as qe

    monkeypatch.setattr(qe, "ASSEMBLY_BUDGET_BYTES", 1)  # one instrument per pass
    qlib_dir = tmp_path / "qlib"
    summary = export_qlib(bars_paths=dataset["paths"], days=DAYS, membership=MEMBERSHIP, market_name=MARKET,
                          qlib_dir=qlib_dir)  # fmt: skip
    assert summary == dataset["summary"]
    files = dataset_files(qlib_dir)
    assert files == dataset_files(dataset["qlib_dir"])
    for rel in files:
        assert (qlib_dir / rel).read_bytes() == (dataset["qlib_dir"] / rel).read_bytes(), rel


def test_bad_arguments_leave_target_untouched(tmp_path: Path) -> None:
    qlib_dir = tmp_path / "qlib"
    for kwargs, match in (
        ({"bars_paths": {"1h": []}, "market_name": MARKET}, "use 60min"),
        ({"bars_paths": {"day": []}, "market_name": "all"}, "market name"),
        ({"bars_paths": {"day": []}, "market_name": "../x"}, "market name"),
        ({"bars_paths": {"day": []}, "market_name": MARKET, "fields": ("close", "rsi")}, "rsi"),
    ):
        with pytest.raises(ValueError, match=match):
            export_qlib(days=DAYS, membership=MEMBERSHIP, qlib_dir=qlib_dir, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_export_without_bars_fails_loudly(tmp_path: Path) -> None:
    """A frequency with no bar at all would make every D.features call an empty frame, silently."""
    with pytest.raises(ValueError, match="no 1min bar inside 2024-03-02..2024-03-02"):
        export_qlib(
            bars_paths={"1min": [], "day": []}, days=[SAT], membership=MEMBERSHIP, market_name=MARKET,
            qlib_dir=tmp_path / "qlib",
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left behind


# --------------------------------------------------------------------------------------------
# Publishing touches only what it published (issue 12, finding 1)
# --------------------------------------------------------------------------------------------


def built_dataset(root: Path, first: str, last: str) -> Path:
    """A small provider directory as the qlib rule leaves it (publishing does not read the bins)."""
    days = [str(d) for d in pl.date_range(dt.date.fromisoformat(first), dt.date.fromisoformat(last), eager=True)]
    built = root / f"built-{first}-{last}"
    (built / "calendars").mkdir(parents=True)
    (built / "calendars" / "day.txt").write_text("\n".join(days) + "\n")
    (built / "instruments").mkdir()
    (built / "instruments" / "all.txt").write_text(f"BTC-USDT-SWAP\t{first} 00:00:00\t{last} 23:59:00\n")
    (built / "features" / "btc-usdt-swap").mkdir(parents=True)
    (built / "features" / "btc-usdt-swap" / "close.day.bin").write_bytes(encode_feature(0, np.ones(len(days))))
    return built


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under root (links as their target), to prove nothing was moved or changed."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = ("-> " + str(p.readlink())) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
    return out


def test_publish_refuses_what_it_did_not_publish_and_touches_nothing(tmp_path: Path) -> None:
    """Publishing replaces paths.qlib by a link: someone else's directory, file or link there is refused, untouched."""
    built = built_dataset(tmp_path / "build", "2024-03-01", "2024-03-02")
    area = tmp_path / "area"
    foreign = area / "foreign"  # a directory the user keeps there, e.g. an old hand-made dataset
    (foreign / "sub").mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    (foreign / "sub" / "data.bin").write_bytes(b"\x00\x01")
    raw = area / "raw"  # paths.qlib pointed at the raw store: a shard written later must survive
    (raw / "ws" / "candle1m" / "2024-03-01" / "00").mkdir(parents=True)
    (raw / "ws" / "candle1m" / "2024-03-01" / "00" / "1-2.jsonl").write_text('{"v":1}\n')
    (area / "afile").write_text("a file")
    (area / "elsewhere").mkdir()
    (area / "elsewhere" / "keep.txt").write_text("keep")
    (area / "alink").symlink_to("elsewhere")
    (area / "q2.versions").mkdir()  # the versions directory beside paths.qlib is somebody's
    (area / "q2.versions" / "report.pdf").write_text("pdf")
    before = snapshot(area)
    for target, says in (
        (foreign, ["is an existing directory holding notes.txt, sub", "did not publish", f"mv {foreign}"]),
        (raw, ["is an existing directory holding ws", "did not publish", "nothing was changed"]),
        (area / "afile", ["is an existing file", "did not publish"]),
        (area / "alink", ["is a symbolic link to elsewhere", "not to a version this project published"]),
        (area / "q2", ["q2.versions holds files this project did not publish (report.pdf)", "nothing was published"]),
        (Path("/"), ["names no directory of its own", "'data/qlib'"]),
        (area / "foreign" / "..", ["names no directory of its own"]),
    ):
        with pytest.raises(ValueError) as refused:
            publish_dataset(built, target)
        for text in says:
            assert text in str(refused.value), (target, str(refused.value))
    with pytest.raises(ValueError, match="did not publish"):  # the one-call export refuses before building
        export_qlib(bars_paths={"day": []}, days=DAYS, membership=MEMBERSHIP, market_name=MARKET, qlib_dir=foreign)
    assert snapshot(area) == before  # nothing moved, nothing created (no .versions, no temp directories)


def test_pruning_removes_only_the_versions_it_published(tmp_path: Path) -> None:
    import feeder.publish as qe

    qlib_dir = tmp_path / "qlib"
    versions = tmp_path / "qlib.versions"
    publish_dataset(built_dataset(tmp_path / "b1", "2024-03-01", "2024-03-01"), qlib_dir)
    # someone's directories inside the versions directory, one even named like a version (and the oldest)
    (versions / "20000101T000000.000000Z").mkdir()
    (versions / "20000101T000000.000000Z" / "keep.txt").write_text("not ours")
    (versions / "notes").mkdir()
    (versions / "notes" / "readme.txt").write_text("not ours either")
    published = []
    for last in ("2024-03-02", "2024-03-03", "2024-03-04"):
        published.append(publish_dataset(built_dataset(tmp_path / "b", "2024-03-01", last), qlib_dir))
    assert (versions / "20000101T000000.000000Z" / "keep.txt").read_text() == "not ours"
    assert (versions / "notes" / "readme.txt").read_text() == "not ours either"
    ours = sorted(p.name for p in versions.iterdir() if (p / qe.DATASET_MARKER).is_file())
    assert ours == [published[-2].name, published[-1].name]  # the current one and the one before it
    assert qlib_dir.resolve() == published[-1]
    assert (qlib_dir / "calendars" / "day.txt").read_text().split() == [f"2024-03-0{i}" for i in range(1, 5)]


def test_a_research_runs_directory_among_the_versions_is_neither_pruned_nor_a_kept_version(tmp_path: Path) -> None:
    """Issue 16: MLflow runs written beside the resolved provider directory (``<qlib>.versions/research-runs``)
    must not take one of the two kept slots: after every publish the previous version is still there."""
    import feeder.publish as qe

    qlib_dir = tmp_path / "qlib"
    first = publish_dataset(built_dataset(tmp_path / "b1", "2024-03-01", "2024-03-01"), qlib_dir)
    runs = qlib_dir.resolve().parent / "research-runs"  # where run_example's old default put its runs
    (runs / "artifacts" / "1").mkdir(parents=True)
    (runs / "mlflow.db").write_bytes(b"SQLite format 3\x00")
    (runs / "artifacts" / "1" / "pred.pkl").write_bytes(b"model output")
    previous = first
    for last in ("2024-03-02", "2024-03-03"):
        current = publish_dataset(built_dataset(tmp_path / "b", "2024-03-01", last), qlib_dir)
        ours = sorted(p.name for p in runs.parent.iterdir() if (p / qe.DATASET_MARKER).is_file())
        assert ours == sorted([previous.name, current.name]), "the previous version must survive the publish"
        assert (previous / "calendars" / "day.txt").is_file() and qlib_dir.resolve() == current
        previous = current
    assert (runs / "mlflow.db").read_bytes() == b"SQLite format 3\x00"
    assert (runs / "artifacts" / "1" / "pred.pkl").read_bytes() == b"model output"
    assert not first.exists()  # ours, beyond the two kept: pruned as before


def test_only_a_dataset_this_project_built_is_migrated_from_a_real_directory(tmp_path: Path) -> None:
    """A real directory at paths.qlib carrying our marker (an earlier dataset) moves into the versions; then pruned."""
    import feeder.publish as qe

    qlib_dir = tmp_path / "qlib"
    old = built_dataset(tmp_path / "old", "2024-02-01", "2024-02-02")
    qe.mark_dataset(old)
    old.rename(qlib_dir)
    first = publish_dataset(built_dataset(tmp_path / "b1", "2024-03-01", "2024-03-01"), qlib_dir)
    legacy = tmp_path / "qlib.versions" / "legacy"
    assert qlib_dir.is_symlink() and qlib_dir.resolve() == first
    assert (legacy / "calendars" / "day.txt").read_text().split() == ["2024-02-01", "2024-02-02"]
    publish_dataset(built_dataset(tmp_path / "b2", "2024-03-01", "2024-03-02"), qlib_dir)
    assert not legacy.exists()  # the oldest of our versions: pruned like any other


def test_versions_published_before_the_markers_are_adopted(tmp_path: Path) -> None:
    """An existing installation (versions without markers, link into them) keeps publishing and pruning."""
    qlib_dir, versions = tmp_path / "qlib", tmp_path / "qlib.versions"
    versions.mkdir()
    for name in ("20240101T000000.000000Z", "20240102T000000.000000Z"):
        built_dataset(tmp_path / name, "2024-01-01", "2024-01-02").rename(versions / name)
    (versions / "legacy").mkdir()  # moved there by the old code: it may be anybody's, so it is never pruned
    (versions / "legacy" / "theirs.txt").write_text("x")
    qlib_dir.symlink_to("qlib.versions/20240102T000000.000000Z")
    new = publish_dataset(built_dataset(tmp_path / "b1", "2024-03-01", "2024-03-01"), qlib_dir)
    assert qlib_dir.resolve() == new
    assert sorted(p.name for p in versions.iterdir() if p.is_dir()) == ["20240102T000000.000000Z", new.name, "legacy"]
    assert (versions / "legacy" / "theirs.txt").read_text() == "x"


def test_calendar_frame_formats() -> None:
    assert calendar_frame(SUN, SUN, "day")["slot"].to_list() == ["2024-03-03"]
    assert calendar_frame(FRI, SAT, "60min")["slot"].to_list()[23:25] == ["2024-03-01 23:00:00", "2024-03-02 00:00:00"]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 5000),
        st.floats(width=32, allow_nan=True, allow_infinity=True),
        min_size=1,
        max_size=200,
    )
)
def test_bin_round_trip(series: dict[int, float]) -> None:
    slots = np.array(sorted(series), dtype=np.int64)
    values = np.array([series[s] for s in slots], dtype=np.float32)
    first, dense = dense_series(slots, values)
    start, decoded = decode_feature(encode_feature(first, dense))
    assert start == slots.min()
    assert len(decoded) == slots.max() - slots.min() + 1
    np.testing.assert_array_equal(decoded[slots - start], values)  # NaN == NaN here
    holes = np.ones(len(decoded), dtype=bool)
    holes[slots - start] = False
    assert np.isnan(decoded[holes]).all()
    assert decoded.dtype == np.dtype("<f4")


def test_the_readme_qlib_snippet_reads_what_the_demo_builds() -> None:
    """Issue 16: pasted after the demo, the README's snippet must name the demo's dataset, pool and days
    (it said top50 while the demo builds top10: `instrument not exists`)."""
    import re

    import harness.demo as demo
    from harness.processes import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Use it from Qlib"):]
    snippet = section[section.index("```python"):section.index("```", section.index("```python") + 3)]
    provider = re.search(r'provider_uri="([^"]+)"', snippet).group(1)
    pool = re.search(r'D\.instruments\("([^"]+)"\)', snippet).group(1)
    start = re.search(r'start_time="([^"]+)"', snippet).group(1)
    end = re.search(r'end_time="([^"]+)"', snippet).group(1)
    # the demo's defaults: --data-dir demo-data, --size N (market top<N>), START..END
    source = Path(demo.__file__).read_text(encoding="utf-8")
    data_dir = re.search(r'"--data-dir", type=Path, default=REPO / "([^"]+)"', source).group(1)
    size = int(re.search(r'"--size", type=int, default=(\d+)', source).group(1))
    assert provider == f"{data_dir}/qlib"
    assert pool == f"top{size}"
    assert demo.START <= start[:10] <= end[:10] <= demo.END
    assert f"top{size}` for the demo" in section  # and it says where pool names come from
