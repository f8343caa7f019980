"""feeder.clean: properties of clean_candles and the clean_day job on the real shard layout."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeder.clean import (
    CLEAN_SCHEMA,
    RAW_SCHEMA,
    clean_candles,
    clean_day,
    deduplicate,
    read_raw_records,
)

DAY = dt.date(2024, 3, 2)  # a Saturday
DAY_START_MS = 1709337600000  # 2024-03-02T00:00:00Z
MIN = 60_000


def record(
    inst: str,
    ts_ms: int,
    *,
    source: str = "ws",
    recv_ts: int | None = None,
    ohlc: tuple[str, str, str, str] = ("100", "101", "99", "100.5"),
    vol: tuple[str, str, str] = ("10", "0.1", "10.05"),
    confirm: str | None = "1",
    channel: str = "candle1m",
) -> dict[str, Any]:
    data = [str(ts_ms), *ohlc, *vol] + ([confirm] if confirm is not None else [])
    return {
        "v": 1,
        "source": source,
        "channel": channel,
        "inst": inst,
        "ts": ts_ms,
        "recv_ts": ts_ms + MIN + 50 if recv_ts is None else recv_ts,
        "data": data,
    }


def frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(records, schema=RAW_SCHEMA)


def write_jsonl(path: Path, records: list[dict[str, Any]], extra_lines: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, separators=(",", ":")) for r in records] + list(extra_lines)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Hypothesis: arbitrary mixes of valid, invalid, duplicate and off-day records
# --------------------------------------------------------------------------------------------

INSTS = ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "BTC-USDT", "bad inst"]


@st.composite
def raw_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 40))
    out = []
    for _ in range(n):
        inst = draw(st.sampled_from(INSTS))
        # minutes around the day, including both midnights, plus the odd misaligned ts
        minute = draw(st.sampled_from([-2, -1, 0, 1, 2, 3, 717, 1438, 1439, 1440, 1441]))
        ts_ms = DAY_START_MS + minute * MIN + draw(st.sampled_from([0, 0, 0, 0, 0, 0, 0, 1234]))
        low = draw(st.sampled_from([99, 100]))
        high = draw(st.sampled_from([100, 101, 98]))
        opn = draw(st.sampled_from([99, 100, 101]))
        close = draw(st.sampled_from([99.5, 100, 100.5]))
        vol = draw(st.sampled_from(["1", "0", "2.5", "-1", "x"]))
        confirm = draw(st.sampled_from(["1", "1", "1", "0", None]))
        rec = record(
            inst,
            ts_ms,
            source=draw(st.sampled_from(["ws", "ws", "rest"])),
            recv_ts=draw(st.integers(DAY_START_MS, DAY_START_MS + 3 * 86_400_000)),
            ohlc=(str(opn), str(high), str(low), str(close)),
            vol=("100", vol, "250.5"),
            confirm=confirm,
        )
        if draw(st.integers(0, 15)) == 0:
            rec["data"] = rec["data"][:5]
        out.append(rec)
    # some exact duplicates of earlier records
    dupes = draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=10)) if n else []
    return out + [dict(out[i]) for i in dupes]


HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYPO
@given(raw_records())
def test_counts_add_up(records: list[dict[str, Any]]) -> None:
    kept, stats = clean_candles(frame(records), DAY)
    assert stats["rows_read"] == len(records)
    assert stats["rows_read"] == stats["kept"] + stats["duplicates"] + stats["rejected_total"]
    assert stats["rejected_total"] == sum(stats["rejected"].values())
    assert stats["kept"] == kept.height == sum(stats["instruments"].values()) == sum(stats["kept_by_source"].values())
    assert stats["conflicts"] <= stats["duplicates"]


@HYPO
@given(raw_records())
def test_output_unique_sorted_inside_day(records: list[dict[str, Any]]) -> None:
    kept, _ = clean_candles(frame(records), DAY)
    assert kept.columns == ["inst", *CLEAN_SCHEMA]
    assert dict(kept.schema) == {"inst": pl.Utf8, **CLEAN_SCHEMA}
    assert not kept.select(pl.struct("inst", "ts").is_duplicated().any()).item()
    assert kept.equals(kept.sort("inst", "ts"))
    start = dt.datetime.combine(DAY, dt.time())
    assert kept.filter((pl.col("ts") < start) | (pl.col("ts") >= start + dt.timedelta(days=1))).is_empty()
    assert kept.filter(pl.col("ts").dt.second() != 0).is_empty()
    assert (kept["low"] <= kept["high"]).all()


@HYPO
@given(raw_records(), st.randoms(use_true_random=False))
def test_dedup_idempotent_and_order_independent(records: list[dict[str, Any]], rnd: Any) -> None:
    kept, stats = clean_candles(frame(records), DAY)
    again, dups, conflicts = deduplicate(kept)
    assert again.equals(kept) and dups == 0 and conflicts == 0
    shuffled = list(records)
    rnd.shuffle(shuffled)
    kept2, stats2 = clean_candles(frame(shuffled + shuffled), DAY)
    assert kept2.equals(kept)
    assert stats2["duplicates"] == stats["duplicates"] * 2 + stats["kept"]
    assert stats2["conflicts"] == stats["conflicts"]


@HYPO
@given(raw_records())
def test_rest_preferred(records: list[dict[str, Any]]) -> None:
    kept, _ = clean_candles(frame(records), DAY)
    rest_only, _ = clean_candles(frame([r for r in records if r["source"] == "rest"]), DAY)
    joined = rest_only.join(kept, on=["inst", "ts"], how="left", suffix="_all")
    assert (joined["source_all"] == "rest").all()
    assert joined["close"].equals(joined["close_all"], check_names=False)


# --------------------------------------------------------------------------------------------
# Examples from real sample shapes
# --------------------------------------------------------------------------------------------

# ws_candle1m.jsonl line 8 (BTC-USDT-SWAP 2026-03-31 13:39), confirm flipped to "1"
LINE8 = ["1774964340000", "66898.7", "66902.1", "66884.6", "66894.5", "1330.07", "13.3007", "889750.68514000", "1"]
LINE8_DAY = dt.date(2026, 3, 31)


def line8_record(source: str, data: list[str], recv_ts: int = 1774964400123) -> dict[str, Any]:
    return {"v": 1, "source": source, "channel": "candle1m", "inst": "BTC-USDT-SWAP", "ts": int(data[0]),
            "recv_ts": recv_ts, "data": data}  # fmt: skip


def test_ws_and_rest_same_bar_is_a_duplicate_not_a_conflict() -> None:
    rest = list(LINE8)
    rest[7] = "889750.68514"  # REST spells the same number without trailing zeros
    kept, stats = clean_candles(frame([line8_record("ws", LINE8), line8_record("rest", rest)]), LINE8_DAY)
    assert (stats["kept"], stats["duplicates"], stats["conflicts"]) == (1, 1, 0)
    row = kept.row(0, named=True)
    assert row["source"] == "rest"
    assert row["ts"] == dt.datetime(2026, 3, 31, 13, 39)
    assert (row["volume"], row["amount"]) == (13.3007, 889750.68514)


def test_conflict_keeps_rest_value() -> None:
    rest = list(LINE8)
    rest[4] = "66895.0"  # a different close
    kept, stats = clean_candles(frame([line8_record("rest", rest), line8_record("ws", LINE8)]), LINE8_DAY)
    assert (stats["kept"], stats["duplicates"], stats["conflicts"]) == (1, 1, 1)
    assert kept["close"].to_list() == [66895.0]


def test_latest_ws_copy_wins_within_source() -> None:
    later = list(LINE8)
    later[4] = "66895.0"
    records = [line8_record("ws", later, recv_ts=1774964400999), line8_record("ws", LINE8, recv_ts=1774964400123)]
    kept, stats = clean_candles(frame(records), LINE8_DAY)
    assert kept["close"].to_list() == [66895.0] and stats["conflicts"] == 1


def test_unconfirmed_ws_push_is_rejected_but_confirmed_copy_kept() -> None:
    forming = [*LINE8[:8], "0"]
    kept, stats = clean_candles(frame([line8_record("ws", forming), line8_record("ws", LINE8)]), LINE8_DAY)
    assert stats["kept"] == 1 and stats["duplicates"] == 0
    assert stats["rejected"]["unconfirmed"] == 1


def test_pre2023_seven_element_rows_kept_with_unknown_amount() -> None:
    # ws_candle1m.jsonl line 6: BTC-USDT-SWAP, 2022-09-09 09:44, 4070 contracts = 40.7 BTC
    data = ["1662716640000", "20702.4", "20710", "20702.3", "20703.8", "4070", "40.7"]
    rec = {"v": 1, "source": "ws", "channel": "candle1m", "inst": "BTC-USDT-SWAP", "ts": 1662716640000,
           "recv_ts": 1662716700000, "data": data}  # fmt: skip
    kept, stats = clean_candles(frame([rec]), dt.date(2022, 9, 9))
    assert stats["kept"] == 1
    row = kept.row(0, named=True)
    assert row["volume"] == 40.7 and row["amount"] is None


def test_other_channels_and_days_are_counted() -> None:
    records = [
        record("BTC-USDT-SWAP", DAY_START_MS - MIN),  # 23:59 of the previous day
        record("BTC-USDT-SWAP", DAY_START_MS + 1440 * MIN),  # 00:00 of the next day
        record("BTC-USDT-SWAP", DAY_START_MS + 1440 * MIN, confirm="0"),  # next day's business
        record("BTC-USDT-SWAP", DAY_START_MS, channel="tickers"),
        record("BTC-USDT-SWAP", DAY_START_MS + 30_000),  # not on a minute
        record("BTC-USDT-SWAP", DAY_START_MS + 1439 * MIN),
    ]
    kept, stats = clean_candles(frame(records), DAY)
    assert stats["rejected"]["outside_day"] == 3
    assert stats["rejected"]["wrong_channel"] == 1
    assert stats["rejected"]["misaligned_ts"] == 1
    assert kept["ts"].to_list() == [dt.datetime(2024, 3, 2, 23, 59)]


# --------------------------------------------------------------------------------------------
# Reading and the clean_day job
# --------------------------------------------------------------------------------------------


def test_read_raw_records_isolates_malformed_lines(tmp_path: Path) -> None:
    good = [record("BTC-USDT-SWAP", DAY_START_MS + i * MIN) for i in range(5)]
    bad_lines = (
        "not json",
        "[1, 2]",
        '{"v":1,"source":"ws","inst":"X-Y","ts":"soon","data":["1"]}',  # JSON, wrong types
        '{"v":1,"source":"ws","inst":"X-Y","ts":1,"data":{"k":"v"}}',
        "",  # blank lines are not malformed
        '{"v":1,"source":"ws","chan',  # cut-off line
    )
    a = write_jsonl(tmp_path / "a.jsonl", good[:2], bad_lines[:3])
    b = write_jsonl(tmp_path / "b.jsonl", good[2:], bad_lines[3:])
    b.write_bytes(b.read_bytes() + b'{"v":1,"source":"ws","inst":"\xff\xfe","ts":1,"data":[]}\n')  # bad UTF-8
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    records, malformed = read_raw_records([a, empty, b])
    assert malformed == 5
    assert records.height == 6  # the bad-UTF-8 record survives reading, with U+FFFD in inst...
    assert sorted(records["ts"].to_list()) == [1] + [r["ts"] for r in good]
    kept, stats = clean_candles(records, DAY)
    assert stats["rejected"]["wrong_element_count"] == 1 and stats["kept"] == 5  # ...and is rejected
    assert read_raw_records([])[1] == 0


def test_clean_day_end_to_end(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    day_dir = raw / "ws" / "candle1m" / DAY.isoformat()
    next_dir = raw / "ws" / "candle1m" / (DAY + dt.timedelta(days=1)).isoformat()
    shards = [
        # 23:59 of the previous day is in this day's 00 shard (receipt hour)
        write_jsonl(day_dir / "00" / "1709337600000-1.jsonl",
                    [record("BTC-USDT-SWAP", DAY_START_MS - MIN), record("BTC-USDT-SWAP", DAY_START_MS),
                     record("ETH-USDT-SWAP", DAY_START_MS)]),  # fmt: skip
        write_jsonl(day_dir / "13" / "1709384400000-1.jsonl",
                    [record("BTC-USDT-SWAP", DAY_START_MS + 780 * MIN)], ("garbage",)),  # fmt: skip
        # the day's last bar closes after midnight: next day's 00 shard
        write_jsonl(next_dir / "00" / "1709424000000-2.jsonl",
                    [record("BTC-USDT-SWAP", DAY_START_MS + 1439 * MIN),
                     record("BTC-USDT-SWAP", DAY_START_MS + 1440 * MIN)]),  # fmt: skip
        write_jsonl(raw / "rest" / "candle1m" / f"{DAY}.jsonl",
                    [record("BTC-USDT-SWAP", DAY_START_MS, source="rest"),
                     record("BTC-USDT-SWAP", DAY_START_MS + MIN, source="rest")]),  # fmt: skip
    ]
    out_dir = tmp_path / "work" / "clean" / DAY.isoformat()
    quality_path = tmp_path / "work" / "quality" / f"{DAY}.json"
    quality = clean_day(shard_paths=shards, day=DAY, out_dir=out_dir, quality_path=quality_path)

    assert json.loads(quality_path.read_text()) == json.loads(json.dumps(quality))
    assert quality["files"] == 4 and quality["malformed_lines"] == 1
    assert quality["rows_read"] == 8
    assert (quality["kept"], quality["duplicates"], quality["rejected_total"]) == (5, 1, 2)
    assert quality["rejected"]["outside_day"] == 2
    assert quality["instruments"] == {"BTC-USDT-SWAP": 4, "ETH-USDT-SWAP": 1}
    assert quality["kept_by_source"] == {"rest": 2, "ws": 3}

    assert sorted(p.name for p in out_dir.iterdir()) == ["BTC-USDT-SWAP.parquet", "ETH-USDT-SWAP.parquet"]
    btc = pl.read_parquet(out_dir / "BTC-USDT-SWAP.parquet")
    assert dict(btc.schema) == CLEAN_SCHEMA
    base = dt.datetime(2024, 3, 2)
    assert btc["ts"].to_list() == [base + dt.timedelta(minutes=m) for m in (0, 1, 780, 1439)]
    assert btc["source"].to_list() == ["rest", "rest", "ws", "ws"]
    assert btc["volume"].to_list() == [0.1] * 4 and btc["amount"].to_list() == [10.05] * 4

    # a re-run with less data replaces the directory: no stale instrument file survives
    again = clean_day(shard_paths=shards[-1:], day=DAY, out_dir=out_dir, quality_path=quality_path)
    assert again["instruments"] == {"BTC-USDT-SWAP": 2}
    assert sorted(p.name for p in out_dir.iterdir()) == ["BTC-USDT-SWAP.parquet"]
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("shards", [[], None])
def test_clean_day_without_data(tmp_path: Path, shards: list[Path] | None) -> None:
    out_dir = tmp_path / "clean" / DAY.isoformat()
    quality = clean_day(
        shard_paths=shards,  # type: ignore[arg-type]
        day=DAY,
        out_dir=out_dir,
        quality_path=tmp_path / "q.json",
    )
    assert out_dir.is_dir() and not any(out_dir.iterdir())
    assert quality["rows_read"] == quality["kept"] == quality["malformed_lines"] == 0
    assert quality["instruments"] == {}


@pytest.mark.parametrize("atomic_exchange", [True, False])
def test_replace_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, atomic_exchange: bool) -> None:
    import feeder.clean as clean

    if not atomic_exchange:  # kernels/filesystems without renameat2(RENAME_EXCHANGE)
        monkeypatch.setattr(clean, "_renameat2_exchange", lambda a, b: False)
    target = tmp_path / "target"
    for version in ("v1", "v2"):
        new = tmp_path / f".new-{version}"
        new.mkdir()
        (new / f"{version}.txt").write_text(version)
        clean.replace_directory(new, target)
        assert [p.name for p in target.iterdir()] == [f"{version}.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["target"]
