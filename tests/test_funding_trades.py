"""feeder.clean_trades (optional trades channel) and how trade and point-in-time fields reach the bars."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from feeder.records import encode_record, records_from_frame
from feeder.resample import BARS_SCHEMA, resample_bars, resample_day, trade_fields_for_minutes
from feeder.clean_trades import TRADE_RAW_SCHEMA, clean_trades_day, trade_minutes

SUN = dt.date(2024, 3, 3)
SUN_MS = 1709424000000
MIN = 60_000
INSTRUMENTS = pl.DataFrame({
    "instId": ["BTC-USDT-SWAP", "BTC-USD-SWAP", "ETH-USDT-SWAP"],
    "ctVal": ["0.01", "100", None],
    "ctType": ["linear", "inverse", "linear"],
})  # fmt: skip


def trade(inst: str, trade_id: int, ts: int, px: str, sz: str, side: str, count: str | None = None) -> dict:
    el = {"instId": inst, "tradeId": str(trade_id), "px": px, "sz": sz, "side": side, "ts": str(ts)}
    if count is not None:
        el["count"] = count
    return records_from_frame({"arg": {"channel": "trades", "instId": inst}, "data": [el]}, recv_ts=ts + 30).records[0]


def frame(records: list[dict]) -> pl.DataFrame:
    return pl.read_ndjson(b"".join(encode_record(r) for r in records), schema=TRADE_RAW_SCHEMA)


def test_trade_minutes_units_counts_and_dedup() -> None:
    recs = [
        trade("BTC-USDT-SWAP", 1, SUN_MS + 5_000, "60000", "150", "buy"),  # 150 contracts x 0.01 = 1.5 BTC
        trade("BTC-USDT-SWAP", 2, SUN_MS + 6_000, "60001", "50", "sell", count="3"),  # 3 fills aggregated
        trade("BTC-USDT-SWAP", 3, SUN_MS + MIN, "60002", "10", "buy"),
        trade("BTC-USD-SWAP", 7, SUN_MS + 1_000, "50000", "20", "buy"),  # 20 x 100 USD / 50000 = 0.04 BTC
        trade("BTC-USDT", 9, SUN_MS + 2_000, "60000", "0.25", "buy"),  # spot: base coin already
        trade("ETH-USDT-SWAP", 4, SUN_MS + 2_000, "3000", "1", "buy"),  # ctVal unknown: not guessed
        trade("BTC-USDT-SWAP", 5, SUN_MS - 1, "60000", "1", "buy"),  # Saturday's
    ]
    replay = json.loads(json.dumps(recs[0]))
    replay["recv_ts"] += 10_000
    minutes, stats = trade_minutes(frame([*recs, replay]), SUN, INSTRUMENTS)
    rows = {(r["inst"], r["ts"]): r for r in minutes.iter_rows(named=True)}
    t0, t1 = dt.datetime(2024, 3, 3), dt.datetime(2024, 3, 3, 0, 1)
    assert rows[("BTC-USDT-SWAP", t0)] == {"inst": "BTC-USDT-SWAP", "ts": t0, "n_trades": 4.0,
                                           "taker_buy_volume": 1.5, "volume": 2.0}  # fmt: skip
    assert rows[("BTC-USDT-SWAP", t1)]["taker_buy_volume"] == 0.1
    assert abs(rows[("BTC-USD-SWAP", t0)]["taker_buy_volume"] - 0.04) < 1e-15
    assert rows[("BTC-USDT", t0)]["volume"] == 0.25
    assert ("ETH-USDT-SWAP", t0) not in rows
    assert stats["rejected"]["unknown_contract_value"] == 1 and stats["rejected"]["outside_day"] == 1
    assert stats["duplicates"] == 1
    assert stats["rows_read"] == stats["kept"] + stats["duplicates"] + stats["rejected_total"]


def one_minute(inst: str, volumes: list[float]) -> pl.DataFrame:
    ts = [dt.datetime(2024, 3, 3) + dt.timedelta(minutes=i) for i in range(len(volumes))]
    return pl.DataFrame({"inst": inst, "ts": ts, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                         "volume": volumes, "amount": volumes}).with_columns(pl.col("ts").cast(pl.Datetime("ms")))  # fmt: skip


def test_minutes_without_trades_are_zero_only_if_nothing_traded() -> None:
    bars = one_minute("A", [1.0, 0.0, 2.0, 3.0, 0.0])
    tm = pl.DataFrame({"inst": ["A", "A"], "ts": [dt.datetime(2024, 3, 3, 0, 0), dt.datetime(2024, 3, 3, 0, 3)],
                       "n_trades": [5.0, 2.0], "taker_buy_volume": [0.5, 1.0]})  # fmt: skip
    out = trade_fields_for_minutes(bars, tm)
    assert out["n_trades"].to_list() == [5.0, 0.0, None, 2.0, 0.0]  # minute 2 traded but the stream saw nothing
    five = resample_bars(out, "5min")
    assert five["n_trades"].to_list() == [None]  # never a partial sum
    assert resample_bars(out.filter(pl.col("ts").dt.minute() != 2), "5min")["taker_buy_volume"].to_list() == [1.5]
    assert dict(five.schema) == BARS_SCHEMA


def test_clean_trades_day_and_resample_day_with_every_input(tmp_path: Path) -> None:
    shard = tmp_path / "trades.jsonl"
    shard.write_bytes(b"".join(encode_record(r) for r in [
        trade("BTC-USDT-SWAP", 1, SUN_MS + 5_000, "60000", "150", "buy"),
        trade("BTC-USDT-SWAP", 2, SUN_MS + 65_000, "60000", "100", "sell"),
    ]) + b"garbage\n")  # fmt: skip
    INSTRUMENTS.write_parquet(tmp_path / "instruments.parquet")
    quality = clean_trades_day(shard_paths=[shard], day=SUN, instruments_path=tmp_path / "instruments.parquet",
                               out_path=tmp_path / "trades.parquet", quality_path=tmp_path / "q.json")  # fmt: skip
    assert quality["malformed_lines"] == 1 and quality["kept"] == 2 and quality["minutes"] == 2
    clean = tmp_path / "clean"
    clean.mkdir()
    one_minute("BTC-USDT-SWAP", [1.5, 1.0, 0.0]).drop("inst").with_columns(pl.lit("ws").alias("source")).write_parquet(
        clean / "BTC-USDT-SWAP.parquet"
    )
    pl.DataFrame({"inst": ["BTC-USDT-SWAP"], "funding_time": [dt.datetime(2024, 3, 3)], "funding_rate": [0.0001],
                  "realized_rate": [0.0001], "source": ["rest"]}).with_columns(
        pl.col("funding_time").cast(pl.Datetime("ms"))).write_parquet(tmp_path / "funding.parquet")  # fmt: skip
    pl.DataFrame({"inst": ["BTC-USDT-SWAP"], "ts": [dt.datetime(2024, 3, 3, 0, 1, 30)], "oi": [10.0],
                  "oi_ccy": [0.1], "oi_usd": [6000.0]}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms"))).write_parquet(tmp_path / "oi.parquet")  # fmt: skip
    out = resample_day(clean_dir=clean, day=SUN, freq="1min", out_path=tmp_path / "bars.parquet",
                       funding_path=tmp_path / "funding.parquet", open_interest_path=tmp_path / "oi.parquet",
                       trades_path=tmp_path / "trades.parquet")  # fmt: skip
    assert dict(out.schema) == BARS_SCHEMA and pl.read_parquet(tmp_path / "bars.parquet").equals(out)
    assert out["n_trades"].to_list() == [1.0, 1.0, 0.0]
    assert out["taker_buy_volume"].to_list() == [1.5, 0.0, 0.0]
    assert out["funding_rate"].to_list() == [0.0001] * 3
    assert out["open_interest"].to_list() == [None, 0.1, 0.1]  # the push at 00:01:30 is after the first close
