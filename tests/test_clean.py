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
    clean_candles,
    clean_day,
    deduplicate,
)
from feeder.checks import VALUE_COLUMNS, disagreeing_keys, stream_suspects
from feeder.raw import RAW_SCHEMA, read_raw_records

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


# The four properties below share one draw each: cleaning runs once a draw (not once a property),
# and every property still sees all 60 examples.


def check_counts_add_up(records: list[dict[str, Any]], kept: pl.DataFrame, stats: dict[str, Any]) -> None:
    assert stats["rows_read"] == len(records)
    assert stats["rows_read"] == stats["kept"] + stats["duplicates"] + stats["rejected_total"]
    assert stats["rejected_total"] == sum(stats["rejected"].values())
    assert stats["kept"] == kept.height == sum(stats["instruments"].values()) == sum(stats["kept_by_source"].values())
    assert stats["conflicts"] <= stats["duplicates"]


def check_output_unique_sorted_inside_day(kept: pl.DataFrame) -> None:
    assert kept.columns == ["inst", *CLEAN_SCHEMA]
    assert dict(kept.schema) == {"inst": pl.Utf8, **CLEAN_SCHEMA}
    assert not kept.select(pl.struct("inst", "ts").is_duplicated().any()).item()
    assert kept.equals(kept.sort("inst", "ts"))
    start = dt.datetime.combine(DAY, dt.time())
    assert kept.filter((pl.col("ts") < start) | (pl.col("ts") >= start + dt.timedelta(days=1))).is_empty()
    assert kept.filter(pl.col("ts").dt.second() != 0).is_empty()
    assert (kept["low"] <= kept["high"]).all()


def check_dedup_idempotent_and_order_independent(records: list[dict[str, Any]], kept: pl.DataFrame,
                                                 stats: dict[str, Any], rnd: Any) -> None:
    again, dups, conflicts = deduplicate(kept)
    assert again.equals(kept) and dups == 0 and conflicts == 0
    shuffled = list(records)
    rnd.shuffle(shuffled)
    kept2, stats2 = clean_candles(frame(shuffled + shuffled), DAY)
    assert kept2.equals(kept)
    assert stats2["duplicates"] == stats["duplicates"] * 2 + stats["kept"]
    assert stats2["conflicts"] == stats["conflicts"]


def check_rest_preferred(records: list[dict[str, Any]], kept: pl.DataFrame) -> None:
    rest_only, _ = clean_candles(frame([r for r in records if r["source"] == "rest"]), DAY)
    joined = rest_only.join(kept, on=["inst", "ts"], how="left", suffix="_all")
    assert (joined["source_all"] == "rest").all()
    assert joined["close"].equals(joined["close_all"], check_names=False)


@HYPO
@given(raw_records(), st.randoms(use_true_random=False))
def test_counts_unique_sorted_order_independent_and_rest_preferred(records: list[dict[str, Any]], rnd: Any) -> None:
    """Counts add up; output unique, sorted, inside the day; dedup idempotent and order independent; REST wins."""
    kept, stats = clean_candles(frame(records), DAY)
    check_counts_add_up(records, kept, stats)
    check_output_unique_sorted_inside_day(kept)
    check_dedup_idempotent_and_order_independent(records, kept, stats, rnd)
    check_rest_preferred(records, kept)


@st.composite
def bar_copies(draw: st.DrawFn) -> pl.DataFrame:
    """Valid copies of a few bars from every source, some with one value changed: real conflicts."""
    rows = []
    for _ in range(draw(st.integers(0, 30))):
        values = dict.fromkeys(VALUE_COLUMNS, 100.0)
        changed = draw(st.sampled_from([None, None, *VALUE_COLUMNS]))
        if changed:
            values[changed] = draw(st.sampled_from([101.0, 102.0]))
        rows.append({"inst": draw(st.sampled_from(INSTS[:2])), "ts": dt.datetime(2024, 3, 2, 0, draw(st.integers(0, 3))),
                     **values, "source": draw(st.sampled_from(["ws", "ws", "rest", "archive"])),
                     "recv_ts": draw(st.integers(0, 5))})  # fmt: skip
    schema = {"inst": pl.Utf8, "ts": pl.Datetime("ms"), **dict.fromkeys(VALUE_COLUMNS, pl.Float64),
              "source": pl.Utf8, "recv_ts": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def _keys_with_several_versions(copies: pl.DataFrame) -> list[tuple[Any, ...]]:
    return sorted(copies.group_by("inst", "ts").agg(pl.struct(VALUE_COLUMNS).n_unique().alias("versions"))
                  .filter(pl.col("versions") > 1).select("inst", "ts").rows())


@HYPO
@given(bar_copies())
def test_conflicts_are_exactly_the_bars_whose_copies_disagree(copies: pl.DataFrame) -> None:
    """Cleaning sorts a day's copies once (feeder.checks.rank_copies) and reads the kept bars, the
    duplicates and the conflicts off that order: the conflicts must be the keys with more than one
    set of values, for all copies and for the stream's alone, as a group-by would count them."""
    expected = _keys_with_several_versions(copies)
    assert sorted(disagreeing_keys(copies).rows()) == expected
    kept, duplicates, conflicts = deduplicate(copies)
    assert (duplicates, conflicts) == (copies.height - kept.height, len(expected))
    stream = stream_suspects(copies).filter(pl.col("check") == "conflict").select("inst", "ts").rows()
    assert sorted(stream) == _keys_with_several_versions(copies.filter(pl.col("source") == "ws"))


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


def test_the_archive_copy_decides_like_rest() -> None:
    """The archive's bar is the exchange's own copy: it beats a conflicting streamed one, and the
    conflict is flagged as decided by the exchange."""
    archived = list(LINE8)
    archived[4] = "66895.0"  # a different close
    late_ws = line8_record("ws", LINE8, recv_ts=1774964400999)  # received after the archive copy
    kept, stats = clean_candles(frame([late_ws, line8_record("archive", archived)]), LINE8_DAY)
    assert kept["close"].to_list() == [66895.0] and kept["source"].to_list() == ["archive"]
    assert stats["kept_by_source"] == {"archive": 1}
    assert [(f["check"], f["resolution"]) for f in stats["flags"]] == [("conflict", "exchange")]


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


_LINE = '{"v":1,"source":"ws","channel":"candle1m","inst":"BTC-USDT-SWAP","ts":1,"recv_ts":2,"data":%s}'
_STRING_DATA = '"[\\"1709337600000\\", \\"2.8\\"]"'  # a candle array sent as a JSON *string*


@pytest.mark.parametrize("line", [
    _LINE % '["1709337600000","2.8","2.9","2.7","2.85","10","10","28.5","1"]',
    _LINE % '["1",null]', _LINE % "[]", _LINE % '[1,2.50,true,"x"]', _LINE % "null",
    _LINE % '"x"', _LINE % '{"a":"1"}', _LINE % '[["1"]]', _LINE % '["a\\"b","\\u00e9"]',
    _LINE.replace("BTC", '\\"data\\":[') % "[]", "{}", "[1, 2]", "not json",
    _LINE % '["1"]' + _LINE % '["2"]', '{"v":1.5,"data":["1"]}',
])
def test_candles_read_fast_are_exactly_what_the_line_reader_gives(tmp_path: Path, line: str) -> None:
    """The candle reading takes ``data`` as text and decodes it (twice as fast as polars' list
    reading): what it returns must equal polars' own reading of the file, or it must decline."""
    from feeder.raw import _read_array_records

    path = tmp_path / "shard.jsonl"
    path.write_text(line + "\n" + _LINE % '["1709337600000","1"]' + "\n")
    fast = _read_array_records([path], RAW_SCHEMA)
    if fast is not None:
        assert fast.to_dicts() == pl.read_ndjson(path, schema=RAW_SCHEMA).to_dicts()
    records, malformed = read_raw_records([path])
    assert records.height + malformed == 2  # every line is a record or counted as malformed


@pytest.mark.parametrize("line", [
    _LINE % _STRING_DATA,
    _LINE.replace('"data":', '"d\\u0061ta":') % _STRING_DATA,  # the key spelled with an escape
    _LINE.replace('"data":', '"data" : ') % _STRING_DATA,
])
def test_a_candle_array_sent_as_a_string_is_a_malformed_line_not_a_candle(tmp_path: Path, line: str) -> None:
    """Read as text, a ``data`` string holding an array's text looks like the array: the fast
    reading must decline such a file, so the line reader counts the line as malformed."""
    from feeder.raw import _read_array_records

    path = tmp_path / "shard.jsonl"
    path.write_text(line + "\n" + _LINE % '["1709337600000","1"]' + "\n")
    assert _read_array_records([path], RAW_SCHEMA) is None
    records, malformed = read_raw_records([path])
    assert (records.height, malformed) == (1, 1)
    assert records["data"].to_list() == [["1709337600000", "1"]]


def test_a_compressed_shard_is_read_like_its_jsonl_and_a_torn_one_is_refused_by_name(tmp_path: Path) -> None:
    """Sealed shards may be zstd files (.jsonl.zst): a bad line in one costs that line only, as in
    a .jsonl; a compressed shard cut short cannot be read at all, and says which file it is."""
    import pyarrow as pa

    from feeder.raw import DamagedShardError

    good = [record("BTC-USDT-SWAP", DAY_START_MS + i * MIN) for i in range(5)]
    plain = write_jsonl(tmp_path / "plain.jsonl", good, ("not json",))
    packed = tmp_path / "packed.jsonl.zst"
    with pa.CompressedOutputStream(str(packed), "zstd") as out:
        out.write(plain.read_bytes())
    records, malformed = read_raw_records([packed])
    assert (records.sort("ts").to_dicts(), malformed) == (read_raw_records([plain])[0].sort("ts").to_dicts(), 1)
    assert records.height == 5
    torn = tmp_path / "torn.jsonl.zst"
    torn.write_bytes(packed.read_bytes()[:-7])
    with pytest.raises(DamagedShardError, match=rf"raw shard {torn}: not a complete zstd stream .* restore it"):
        read_raw_records([plain, torn])


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


# --------------------------------------------------------------------------------------------
# Issue 12: repair follows validation; conflicts, spikes and unlisted instruments are flagged
# --------------------------------------------------------------------------------------------

E2E_DAY = dt.date(2024, 3, 4)
E2E_START_MS = 1709510400000  # 2024-03-04T00:00:00Z
E2E_INST = "BTC-USDT-SWAP"


@pytest.fixture(scope="module")
def sim() -> Any:
    """The simulator, its clock frozen after E2E_DAY: REST history of the day is the truth."""
    import okxsim

    with okxsim.Simulator(seed=7, clock_start="2024-03-05T01:00:00Z", speed=0, history_start="2024-03-01",
                          n_swaps=24) as s:  # fmt: skip
        yield s


@pytest.fixture(scope="module")
def truth(sim: Any) -> list[list[str]]:
    """E2E_INST's closed 1m candles of E2E_DAY, as OKX serves them (oldest first; a minute
    without trades has none)."""
    rows = sim.market.candles_1m(E2E_INST, E2E_DAY.isoformat())
    assert len(rows) > 1400
    return rows


def ws_copy(data: list[str], *, recv_delay_ms: int = 60_500) -> dict[str, Any]:
    """A confirmed stream record of a candle row (the record's ts is the row's open time, when it has one)."""
    ts = int(data[0]) if str(data[0]).isdigit() else E2E_START_MS
    return {"v": 1, "source": "ws", "channel": "candle1m", "inst": E2E_INST, "ts": ts, "recv_ts": ts + recv_delay_ms,
            "data": [str(x) for x in data]}  # fmt: skip


def truth_bar(row: list[str]) -> dict[str, Any]:
    """The clean bar a candle row of a SWAP must become (volume = volCcy, amount = volCcyQuote)."""
    return {"ts": dt.datetime.fromtimestamp(int(row[0]) / 1000, tz=dt.UTC).replace(tzinfo=None),
            "open": float(row[1]), "high": float(row[2]), "low": float(row[3]), "close": float(row[4]),
            "volume": float(row[6]), "amount": float(row[7])}  # fmt: skip


def scaled(row: list[str], factor: float, columns: tuple[int, ...] = (1, 2, 3, 4)) -> list[str]:
    out = list(row)
    for i in columns:
        out[i] = repr(float(row[i]) * factor)
    return out


def repair_and_clean(
    tmp_path: Path, sim: Any, stream: list[dict[str, Any]], *, spike_factor: float | None = None
) -> tuple[dict[str, Any], dict[str, Any], pl.DataFrame]:
    """The day's repair then cleaning, as the workflow runs them: backfill_day against the
    simulator's REST, then clean_day on the stream shard plus the REST shard it wrote.
    Returns (backfill summary, quality report, the instrument's clean bars)."""
    from feeder.backfill import backfill_day
    from feeder.rest import OkxRestClient

    shard = write_jsonl(tmp_path / "raw" / "ws" / "candle1m" / E2E_DAY.isoformat() / "00" / "1-1.jsonl", stream)
    rest_out = tmp_path / "raw" / "rest" / "candle1m" / f"{E2E_DAY}.jsonl"
    factor = {} if spike_factor is None else {"spike_factor": spike_factor}
    with OkxRestClient(base_url=sim.rest, ca_file=sim.ca_file, max_retries=1, backoff_base_s=0.01) as client:
        summary = backfill_day(client=client, day=E2E_DAY, instruments=[E2E_INST], stream_shards=[shard],
                               fetched_dir=rest_out.with_suffix(".fetched"), out_path=rest_out, **factor)  # fmt: skip
    out_dir = tmp_path / "work" / "clean" / E2E_DAY.isoformat()
    quality = clean_day(shard_paths=[shard, rest_out], day=E2E_DAY, out_dir=out_dir,
                        quality_path=tmp_path / "work" / "quality" / f"{E2E_DAY}.json", **factor)  # fmt: skip
    return summary, quality, pl.read_parquet(out_dir / f"{E2E_INST}.parquet")


def bar_at(bars: pl.DataFrame, row: list[str]) -> dict[str, Any]:
    found = bars.filter(pl.col("ts") == truth_bar(row)["ts"])
    assert found.height == 1, f"no clean bar at {truth_bar(row)['ts']}"
    return found.row(0, named=True)


def minute_text(row: list[str]) -> str:
    return truth_bar(row)["ts"].strftime("%Y-%m-%dT%H:%MZ")


def test_conflicting_stream_copies_are_decided_by_the_exchange(
    tmp_path: Path, sim: Any, truth: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 4: two confirmed stream copies of one candle disagree. The later one used to win
    silently; now the backfill fetches the minute, the exchange's bar is kept and the conflict is
    listed with both values (and logged at WARNING)."""
    good = truth[600]
    wrong = [*good[:4], good[2], *good[5:]]  # close = high: a valid candle, but not the exchange's
    stream = [ws_copy(r) for r in truth] + [ws_copy(wrong, recv_delay_ms=61_000)]  # the wrong one arrives later
    with caplog.at_level("WARNING", logger="feeder.clean"):
        summary, quality, bars = repair_and_clean(tmp_path, sim, stream)

    assert bar_at(bars, good) == {**truth_bar(good), "source": "rest"}
    assert bars.height == len(truth) and (bars["source"] == "ws").sum() == len(truth) - 1
    assert summary["instruments"][E2E_INST]["fetched_now"] == 1  # exactly the conflicting minute
    flags = [f for f in quality["flags"] if f["check"] == "conflict"]
    assert len(flags) == 1 and quality["conflicts"] == 1
    flag = flags[0]
    assert (flag["inst"], flag["minute"], flag["resolution"]) == (E2E_INST, minute_text(good), "exchange")
    copies = {(c["source"], c["close"], c["copies"]) for c in flag["values"]}
    assert copies == {("ws", float(good[4]), 1), ("ws", float(wrong[4]), 1), ("rest", float(good[4]), 1)}
    assert flag["kept"]["source"] == "rest" and flag["kept"]["close"] == float(good[4])
    assert quality["flag_counts"] == {"conflict": {"exchange": 1}}
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("conflict" in m and E2E_INST in m and minute_text(good) in m and wrong[4][:6] in m for m in warned)


def test_candles_cleaning_rejects_are_repaired_from_rest(tmp_path: Path, sim: Any, truth: list[list[str]]) -> None:
    """Finding 5: a confirmed stream candle that cleaning rejects (non-numeric or negative price,
    high < low, a bad or misaligned timestamp inside ``data``) used to count as streamed, so its
    minute was never fetched and went missing. Now the backfill fetches it and the exchange's bar
    is kept."""
    broken: dict[int, list[str]] = {}
    broken[100] = [*truth[100][:1], "abc", *truth[100][2:]]  # non-numeric open
    broken[200] = [*truth[200][:3], "-1", *truth[200][4:]]  # negative low
    row = truth[300]
    broken[300] = [row[0], row[1], row[3], row[2], *row[4:]]  # high and low swapped: high < low
    broken[400] = ["17095344x0000", *truth[400][1:]]  # no valid timestamp in data
    broken[500] = [str(int(truth[500][0]) + 30_000), *truth[500][1:]]  # data ts inside the minute, not on it
    stream = []
    for i, r in enumerate(truth):
        rec = ws_copy(broken.get(i, r))
        rec["ts"] = int(r[0])  # the record's own ts is right: only data is broken
        stream.append(rec)
    summary, quality, bars = repair_and_clean(tmp_path, sim, stream)

    assert bars.height == len(truth), "every minute of the day must be there"
    for i in broken:
        assert bar_at(bars, truth[i]) == {**truth_bar(truth[i]), "source": "rest"}, i
    assert summary["instruments"][E2E_INST]["streamed"] == len(truth) - len(broken)
    assert summary["instruments"][E2E_INST]["fetched_now"] == len(broken)
    rejected = {k: v for k, v in quality["rejected"].items() if v}
    assert rejected == {"unparsable_number": 2, "non_positive_price": 1, "high_below_low": 1, "misaligned_ts": 1}


def test_price_spike_is_cross_checked_and_corrected(tmp_path: Path, sim: Any, truth: list[list[str]]) -> None:
    """A x100 wick and a whole bar at x100 in the stream: the backfill fetches both minutes, the
    exchange's bars are kept and both are flagged ``corrected`` with the stream's values."""
    wick = scaled(truth[300], 100.0, columns=(2,))  # high x100
    whole = scaled(truth[900], 100.0)  # open/high/low/close x100 (a decimal slip)
    stream = [ws_copy({300: wick, 900: whole}.get(i, r)) for i, r in enumerate(truth)]
    summary, quality, bars = repair_and_clean(tmp_path, sim, stream)

    for i in (300, 900):
        assert bar_at(bars, truth[i]) == {**truth_bar(truth[i]), "source": "rest"}
    assert summary["instruments"][E2E_INST]["fetched_now"] == 2
    spikes = {f["minute"]: f for f in quality["flags"] if f["check"] == "spike"}
    assert set(spikes) == {minute_text(truth[300]), minute_text(truth[900])}
    assert {f["resolution"] for f in spikes.values()} == {"corrected"}
    assert {c["source"]: c["high"] for c in spikes[minute_text(truth[300])]["values"]} == {
        "ws": float(wick[2]), "rest": float(truth[300][2])}
    assert quality["flag_counts"] == {"spike": {"corrected": 2}}


def test_real_wick_is_confirmed_by_rest_and_kept(tmp_path: Path, sim: Any, truth: list[list[str]]) -> None:
    """The stream's most extreme real bar, with the factor set just below its score: it is
    cross-checked with REST, which agrees, so it is kept as it is and flagged ``confirmed``."""
    from feeder.checks import spike_scores

    frame = pl.DataFrame([truth_bar(r) for r in truth]).with_columns(inst=pl.lit(E2E_INST))
    scores = spike_scores(frame)
    top = scores.sort("score", descending=True).row(0, named=True)
    factor = top["score"] * 0.999
    assert scores.filter(pl.col("score") > factor).height == 1
    summary, quality, bars = repair_and_clean(tmp_path, sim, [ws_copy(r) for r in truth], spike_factor=factor)

    wick = next(r for r in truth if truth_bar(r)["ts"] == top["ts"])
    assert bar_at(bars, wick) == {**truth_bar(wick), "source": "rest"}
    assert summary["instruments"][E2E_INST]["fetched_now"] == 1
    assert [(f["check"], f["minute"], f["resolution"]) for f in quality["flags"]] == [
        ("spike", minute_text(wick), "confirmed")]
    assert quality["conflicts"] == 0 and quality["duplicates"] == 1


def test_default_spike_factor_flags_nothing_in_ordinary_trading(truth: list[list[str]]) -> None:
    """No false alarm on a normal day: nothing is fetched twice, nothing is flagged."""
    from feeder.checks import DEFAULT_SPIKE_FACTOR, spike_scores

    frame = pl.DataFrame([truth_bar(r) for r in truth]).with_columns(inst=pl.lit(E2E_INST))
    assert spike_scores(frame)["score"].max() < DEFAULT_SPIKE_FACTOR / 5


def test_unresolved_conflict_and_unverified_spike_without_rest() -> None:
    """Without an exchange copy nothing is decided silently: the flags say so."""
    base = [record("BTC-USDT-SWAP", DAY_START_MS + i * MIN, ohlc=("100", "100.1", "99.9", "100")) for i in range(40)]
    spike = record("BTC-USDT-SWAP", DAY_START_MS + 20 * MIN, ohlc=("100", "10010", "99.9", "100"))
    other = record("BTC-USDT-SWAP", DAY_START_MS + 30 * MIN, ohlc=("100", "100.2", "99.9", "100.1"),
                   recv_ts=DAY_START_MS + 31 * MIN + 999)  # fmt: skip
    kept, stats = clean_candles(frame([*base[:20], spike, *base[21:], other]), DAY)
    got = {(f["check"], f["minute"][-6:], f["resolution"]) for f in stats["flags"]}
    assert got == {("spike", "00:20Z", "unverified"), ("conflict", "00:30Z", "unresolved")}
    assert kept.height == 40  # nothing dropped; the last copy received is kept for the conflict
    assert kept.filter(pl.col("ts") == dt.datetime(2024, 3, 2, 0, 30))["close"].to_list() == [100.1]
    assert kept.filter(pl.col("ts") == dt.datetime(2024, 3, 2, 0, 20))["high"].to_list() == [10010.0]


def test_instrument_never_listed_is_flagged(tmp_path: Path) -> None:
    """Bars of an instId absent from the day's instrument list, or before its listTime, are flagged
    (kept: the report says they are unverified), through the clean job's instruments input."""
    instruments = tmp_path / "instruments.parquet"
    pl.DataFrame({
        "instId": ["BTC-USDT-SWAP", "ETH-USDT-SWAP"],
        "listTime": [str(DAY_START_MS + 10 * MIN), "1500000000000"],
        "expTime": [None, None],
    }, schema={"instId": pl.Utf8, "listTime": pl.Utf8, "expTime": pl.Utf8}).write_parquet(instruments)
    shard = write_jsonl(tmp_path / "ws.jsonl", [
        record("BTC-USDT-SWAP", DAY_START_MS + 5 * MIN), record("BTC-USDT-SWAP", DAY_START_MS + 20 * MIN),
        record("ETH-USDT-SWAP", DAY_START_MS), record("GHOST-USDT-SWAP", DAY_START_MS + MIN),
    ])  # fmt: skip
    quality = clean_day(shard_paths=[shard], day=DAY, out_dir=tmp_path / "clean", quality_path=tmp_path / "q.json",
                        instruments_path=instruments)  # fmt: skip
    got = [(f["check"], f["inst"], f["minute"], f["resolution"], f["detail"]) for f in quality["flags"]]
    assert got == [
        ("not_listed", "BTC-USDT-SWAP", "2024-03-02T00:05Z", "unverified", "before listTime 2024-03-02T00:10:00Z"),
        ("not_listed", "GHOST-USDT-SWAP", "2024-03-02T00:01Z", "unverified", "absent from the instrument list"),
    ]
    assert quality["kept"] == 4 and quality["checks"]["listing"] is True


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_records())
def test_streamed_minutes_are_exactly_what_cleaning_keeps_from_the_stream(records: list[dict[str, Any]]) -> None:
    """Repair follows validation: the backfill counts a minute as streamed iff cleaning keeps the
    stream's bar for it without a cross-check (no reject, no conflict, no spike). Every other
    minute is fetched."""
    import tempfile

    from feeder.backfill import streamed_minutes

    stream = [r for r in records if r["source"] == "ws"]
    kept, stats = clean_candles(frame(stream), DAY)
    suspect = {(f["inst"], f["minute"]) for f in stats["flags"] if f["check"] in ("conflict", "spike")}
    expected = {(inst, int(ts.replace(tzinfo=dt.UTC).timestamp() * 1000)) for inst, ts in kept.select("inst", "ts").rows()
                if (inst, ts.strftime("%Y-%m-%dT%H:%MZ")) not in suspect}
    with tempfile.TemporaryDirectory() as tmp:
        shard = write_jsonl(Path(tmp) / "ws.jsonl", stream, ('{"cut off', ))
        got = set(streamed_minutes([shard], DAY).rows())
    assert got == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_records())
def test_every_conflict_is_flagged_with_its_resolution(records: list[dict[str, Any]]) -> None:
    kept, stats = clean_candles(frame(records), DAY)
    conflicts = [f for f in stats["flags"] if f["check"] == "conflict"]
    assert len(conflicts) == stats["conflicts"]
    for flag in conflicts:
        sources = {c["source"] for c in flag["values"]}
        assert len({tuple(c[k] for k in ("open", "high", "low", "close", "volume", "amount"))
                    for c in flag["values"]}) > 1
        assert flag["resolution"] == ("exchange" if "rest" in sources else "unresolved")
        assert flag["kept"]["source"] == ("rest" if "rest" in sources else "ws")
    json.dumps(stats)  # the quality report is JSON


@st.composite
def calm_walk(draw: st.DrawFn) -> pl.DataFrame:
    """A plausible 1m series: a random walk with small ranges."""
    n = draw(st.integers(11, 80))
    steps = draw(st.lists(st.floats(-0.002, 0.002), min_size=n, max_size=n))
    ranges = draw(st.lists(st.floats(0.0, 0.003), min_size=n, max_size=n))
    price = draw(st.floats(1e-4, 1e5))
    closes, lows, highs = [], [], []
    for step, rng in zip(steps, ranges, strict=True):
        price *= 1 + step
        closes.append(price)
        lows.append(price * (1 - rng / 2))
        highs.append(price * (1 + rng / 2))
    start = dt.datetime(2024, 3, 2)
    return pl.DataFrame({"inst": "X-USDT-SWAP", "ts": [start + dt.timedelta(minutes=i) for i in range(n)],
                         "high": highs, "low": lows, "close": closes})  # fmt: skip


@HYPO
@given(calm_walk(), st.data())
def test_spike_check_finds_a_x100_bar_and_nothing_else(walk: pl.DataFrame, data: st.DataObject) -> None:
    from feeder.checks import DEFAULT_SPIKE_FACTOR, spike_scores

    assert (spike_scores(walk)["score"] <= DEFAULT_SPIKE_FACTOR).all()
    i = data.draw(st.integers(0, walk.height - 1))
    factor = data.draw(st.sampled_from([100.0, 0.01]))
    cols = data.draw(st.sampled_from([("high", "low", "close"), ("high",) if factor > 1 else ("low",)]))
    spiked = walk.with_columns([pl.when(pl.int_range(pl.len()) == i).then(pl.col(c) * factor).otherwise(pl.col(c))
                                .alias(c) for c in cols])  # fmt: skip
    flagged = spike_scores(spiked).filter(pl.col("score") > DEFAULT_SPIKE_FACTOR)
    assert flagged["ts"].to_list() == [walk["ts"][i]]
    # scale-free: the same series in other units scores the same
    rescaled = spike_scores(spiked.with_columns(pl.col("high", "low", "close") * 1000.0))
    assert rescaled["score"].to_list() == pytest.approx(spike_scores(spiked)["score"].to_list(), rel=1e-9)
