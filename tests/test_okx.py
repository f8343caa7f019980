"""feeder.okx against every real candle / funding / open-interest payload in the fixtures."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from feeder.okx import (
    CANDLE_REJECT_REASONS,
    inst_type_expr,
    parse_candles,
    parse_funding,
    parse_open_interest,
    parse_settled_funding,
    parse_trades,
)

# --------------------------------------------------------------------------------------------
# Loading samples (tests may loop; the product may not)
# --------------------------------------------------------------------------------------------


def ws_frames(samples: Path, name: str) -> list[tuple[int, dict[str, Any]]]:
    """(1-based line number, frame) for every line of a ws_*.jsonl sample."""
    lines = (samples / name).read_text(encoding="utf-8").splitlines()
    return [(i, json.loads(line)) for i, line in enumerate(lines, start=1) if line.strip()]


def rest_data(samples: Path, name: str) -> list[Any]:
    body = json.loads((samples / name).read_text(encoding="utf-8"))
    assert body["code"] == "0"
    return body["data"]


def candle_records(inst: str, rows: list[list[str]], source: str) -> pl.DataFrame:
    return pl.DataFrame(
        {"inst": [inst] * len(rows), "data": rows, "source": [source] * len(rows)},
        schema={"inst": pl.Utf8, "data": pl.List(pl.Utf8), "source": pl.Utf8},
    )


def ms(ts: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(ts) / 1000, tz=dt.UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------------------------
# Candles
# --------------------------------------------------------------------------------------------

# ws_candle1m.jsonl line → (inst_type, volume base coin, amount quote or None, reject)
WS_CANDLE_EXPECTED: dict[int, tuple[str, float, float | None, str | None]] = {
    1: ("FUTURES", 1.33, None, None),  # 7 elements: linear future, volCcy is BTC, amount unknown
    2: ("SPOT", 0.0111536, 333.86246417, None),  # 7 elements spot: vol is BTC, volCcy is USDT
    3: ("FUTURES", 0.554, None, None),  # inverse future
    4: ("OPTION", 0.0, None, None),  # zero-volume option bar
    5: ("SWAP", 6.7561, None, None),  # inverse swap: 1400 contracts x 100 USD = 6.7561 BTC
    6: ("SWAP", 40.7, None, None),  # 4070 contracts x 0.01 BTC
    7: ("SPOT", 3.10944629, 349947.335430728, "unconfirmed"),  # confirm "0"
    8: ("SWAP", 13.3007, 889750.68514, "unconfirmed"),  # confirm "0"
}


def test_ws_candle1m_every_line(okx_samples_dir: Path) -> None:
    frames = ws_frames(okx_samples_dir, "ws_candle1m.jsonl")
    assert [i for i, _ in frames] == list(WS_CANDLE_EXPECTED)
    rows = [(i, f["arg"]["instId"], d) for i, f in frames for d in f["data"]]
    records = pl.DataFrame(
        {"inst": [r[1] for r in rows], "data": [r[2] for r in rows], "source": ["ws"] * len(rows)},
    )
    parsed = parse_candles(records)
    assert parsed.height == len(rows) == 8
    assert parsed.schema["ts"] == pl.Datetime("ms")
    for (line, _inst, data), got in zip(rows, parsed.iter_rows(named=True), strict=True):
        inst_type, volume, amount, reject = WS_CANDLE_EXPECTED[line]
        assert got["inst_type"] == inst_type, line
        assert got["volume"] == pytest.approx(volume, rel=1e-12), line
        assert got["amount"] == (None if amount is None else pytest.approx(amount, rel=1e-12)), line
        assert got["reject"] == reject, line
        assert got["ts"] == ms(data[0])
        assert (got["open"], got["high"], got["low"], got["close"]) == tuple(float(x) for x in data[1:5])
        assert got["contracts"] == float(data[5])
        assert got["n_elements"] == len(data)
        assert got["confirm"] == (None if len(data) == 7 else data[8] == "1")


def test_ws_candle1m_line8_values(okx_samples_dir: Path) -> None:
    """The brief's anchor: 1330.07 contracts = 13.3007 BTC, 889750.68514 USDT."""
    _, frame = ws_frames(okx_samples_dir, "ws_candle1m.jsonl")[7]
    row = parse_candles(candle_records("BTC-USDT-SWAP", frame["data"], "ws")).row(0, named=True)
    assert row["ts"] == dt.datetime(2026, 3, 31, 13, 39)
    assert row["volume"] == 13.3007
    assert row["amount"] == 889750.68514
    assert row["reject"] == "unconfirmed"
    closed = [frame["data"][0][:8] + ["1"]]
    row = parse_candles(candle_records("BTC-USDT-SWAP", closed, "ws")).row(0, named=True)
    assert row["reject"] is None and row["confirm"] is True
    assert (row["open"], row["high"], row["low"], row["close"]) == (66898.7, 66902.1, 66884.6, 66894.5)


# REST candle samples: file → (instId to assume, expected reject per row, newest first)
REST_CANDLES: dict[str, tuple[str, list[str | None]]] = {
    # instId not recorded; spot-shaped (volCcy == volCcyQuote), row 1 is the still-open bar
    "rest_candles.json": ("BTC-USDT", ["unconfirmed", None, None, None]),
    "rest_candles_spot_1h_ccxt.json": ("BTC-USDT", [None, None, None]),
    "rest_history_candles.json": ("BTC-USDT-SWAP", [None, None, None, None]),
    "rest_candles_docs.json": ("BTC-USDT", ["unconfirmed", None]),
    "rest_history_candles_docs.json": ("BTC-USDT", [None, None]),
}


@pytest.mark.parametrize("name", sorted(REST_CANDLES))
def test_rest_candle_samples(okx_samples_dir: Path, name: str) -> None:
    inst, expected = REST_CANDLES[name]
    data = rest_data(okx_samples_dir, name)
    parsed = parse_candles(candle_records(inst, data, "rest"))
    assert parsed["reject"].to_list() == expected
    spot = inst.count("-") == 1
    for raw, got in zip(data, parsed.iter_rows(named=True), strict=True):
        assert got["ts"] == ms(raw[0])
        assert got["volume"] == float(raw[5] if spot else raw[6])
        assert got["amount"] == float(raw[7])
        assert got["source"] == "rest"


def test_rest_history_candles_swap_units(okx_samples_dir: Path) -> None:
    data = rest_data(okx_samples_dir, "rest_history_candles.json")
    row = parse_candles(candle_records("BTC-USDT-SWAP", data, "rest")).row(0, named=True)
    assert row["ts"] == dt.datetime(2024, 6, 17, 21, 0)
    assert row["contracts"] == 201605.6
    assert row["volume"] == 2016.056  # BTC, = contracts x 0.01
    assert row["amount"] == 134181486.8892
    assert row["low"] <= row["amount"] / row["volume"] <= row["high"]


def test_rest_candles_zero_volume_bar_is_valid(okx_samples_dir: Path) -> None:
    data = rest_data(okx_samples_dir, "rest_candles.json")
    last = parse_candles(candle_records("BTC-USDT", data, "rest")).row(3, named=True)
    assert last["reject"] is None
    assert last["volume"] == 0.0 and last["amount"] == 0.0
    assert last["open"] == last["high"] == last["low"] == last["close"] == 112769.5


def test_ws_docs_candle1d_pushes(okx_samples_dir: Path) -> None:
    frames = dict(ws_frames(okx_samples_dir, "ws_docs_examples.jsonl"))
    rows = frames[4]["data"] + frames[5]["data"]
    parsed = parse_candles(candle_records("BTC-USDT", rows, "ws"))
    assert parsed["reject"].to_list() == ["unconfirmed", "unconfirmed"]
    assert parsed["volume"].to_list() == [45247.0, 3587.41204591]
    assert parsed["amount"].to_list() == [5529.5858061, 166741046.22583129]


GOOD = ["1704067200000", "100", "101", "99", "100.5", "10", "0.1", "10.05", "1"]


@pytest.mark.parametrize(
    ("inst", "data", "source", "reason"),
    [
        ("BTC-USDT-SWAP", GOOD, "ws", None),
        ("BTC-USDT-SWAP", GOOD[:7], "ws", None),  # pre-2023 shape: accepted as closed
        ("BTC-USDT-SWAP", GOOD[:7] + ["1"], "ws", "wrong_element_count"),
        ("BTC-USDT-SWAP", GOOD + ["x"], "ws", "wrong_element_count"),
        ("BTC-USDT-SWAP", [], "ws", "wrong_element_count"),
        ("BTC-USDT-SWAP", None, "ws", "wrong_element_count"),
        (None, GOOD, "ws", "bad_record"),
        ("BTC-USDT-SWAP", GOOD, "kafka", "bad_record"),
        ("BTC", GOOD, "ws", "unknown_inst_type"),
        ("../../etc-passwd", GOOD, "ws", "unknown_inst_type"),
        ("BTC-USDT-SWAP", ["abc", *GOOD[1:]], "ws", "unparsable_number"),
        ("BTC-USDT-SWAP", [*GOOD[:2], "", *GOOD[3:]], "ws", "unparsable_number"),
        ("BTC-USDT-SWAP", [*GOOD[:7], "n/a", "1"], "ws", "unparsable_number"),
        ("BTC-USDT-SWAP", [*GOOD[:8], "yes"], "ws", "unparsable_number"),
        ("BTC-USDT-SWAP", [*GOOD[:2], "inf", *GOOD[3:]], "ws", "non_finite"),
        ("BTC-USDT-SWAP", [*GOOD[:5], "NaN", *GOOD[6:]], "ws", "non_finite"),
        ("BTC-USDT-SWAP", [*GOOD[:8], "0"], "ws", "unconfirmed"),
        ("BTC-USDT-SWAP", [*GOOD[:8], "0"], "rest", "unconfirmed"),
        ("BTC-USDT-SWAP", [GOOD[0], "100", "98", "99", "100", *GOOD[5:]], "ws", "high_below_low"),
        ("BTC-USDT-SWAP", [GOOD[0], "102", "101", "99", "100", *GOOD[5:]], "ws", "open_close_outside_range"),
        ("BTC-USDT-SWAP", [GOOD[0], "100", "101", "99", "98.9", *GOOD[5:]], "ws", "open_close_outside_range"),
        ("BTC-USDT-SWAP", [GOOD[0], "0", "0", "0", "0", *GOOD[5:]], "ws", "non_positive_price"),
        ("BTC-USDT-SWAP", [*GOOD[:6], "-0.1", *GOOD[7:]], "ws", "negative_volume"),
        ("BTC-USDT-SWAP", [*GOOD[:7], "-1", "1"], "ws", "negative_volume"),
    ],
)
def test_candle_reject_reasons(inst: str | None, data: list[str] | None, source: str, reason: str | None) -> None:
    records = pl.DataFrame(
        {"inst": [inst], "data": [data], "source": [source]},
        schema={"inst": pl.Utf8, "data": pl.List(pl.Utf8), "source": pl.Utf8},
    )
    got = parse_candles(records).row(0, named=True)
    assert got["reject"] == reason
    assert reason is None or reason in CANDLE_REJECT_REASONS


def test_parse_candles_defaults_and_passthrough() -> None:
    records = pl.DataFrame({"inst": ["ETH-USDT"], "data": [GOOD], "recv_ts": [1704067261000]})
    got = parse_candles(records).row(0, named=True)
    assert got["source"] == "ws" and got["recv_ts"] == 1704067261000
    assert got["volume"] == 10.0  # spot: vol is base coin
    assert got["amount"] == 10.05


def test_parse_candles_empty() -> None:
    empty = pl.DataFrame(schema={"inst": pl.Utf8, "data": pl.List(pl.Utf8), "source": pl.Utf8})
    parsed = parse_candles(empty)
    assert parsed.height == 0
    assert parsed.schema["ts"] == pl.Datetime("ms") and parsed.schema["reject"] == pl.Utf8


@pytest.mark.parametrize(
    ("inst", "inst_type"),
    [
        ("BTC-USDT-SWAP", "SWAP"),
        ("BTC-USD-SWAP", "SWAP"),
        ("BTC-USDT", "SPOT"),
        ("BTC-USDT-220624", "FUTURES"),
        ("BTC-USD_UM_XPERP-310404", "FUTURES"),
        ("BTC-USD-220624-50000-C", "OPTION"),
        ("ETH-USD-211231-9600-P", "OPTION"),
        ("BTC", None),
        ("BTC-USDT-PERP", None),
        ("BTC USDT", None),
        ("", None),
    ],
)
def test_inst_type(inst: str, inst_type: str | None) -> None:
    assert pl.select(inst_type_expr(pl.lit(inst))).item() == inst_type


# --------------------------------------------------------------------------------------------
# Funding rate
# --------------------------------------------------------------------------------------------


def test_ws_funding_rate_every_line(okx_samples_dir: Path) -> None:
    frames = ws_frames(okx_samples_dir, "ws_funding_rate.jsonl")
    rows = [d for _, f in frames for d in f["data"]]
    assert len(rows) == 7
    parsed = parse_funding(pl.DataFrame(rows))
    assert parsed["reject"].to_list() == [None, "missing_funding_rate", None, None, None, None, None]
    assert parsed["inst"].to_list() == [f["arg"]["instId"] for _, f in frames]
    first = parsed.row(0, named=True)
    assert first["funding_rate"] == 0.00048105
    assert first["next_funding_rate"] == 0.00114
    assert first["funding_time"] == dt.datetime(2021, 12, 22, 0, 0)
    assert first["ts"] == first["funding_time"] and first["ts_is_funding_time"] is True
    assert first["inst_type"] == "SWAP"
    ltc = parsed.row(5, named=True)  # new field set: ts present, nextFundingRate ""
    assert ltc["ts"] == ms("1765201461438") and ltc["ts_is_funding_time"] is False
    assert ltc["funding_rate"] == 0.0001
    assert ltc["next_funding_rate"] is None
    assert ltc["funding_time"] == ms("1765209600000")
    assert ltc["next_funding_time"] == ms("1765238400000")
    assert ltc["method"] == "current_period"
    xperp = parsed.row(6, named=True)
    assert xperp["inst_type"] == "FUTURES" and xperp["funding_rate"] == -0.0004270396398519
    assert parsed.schema["ts"] == pl.Datetime("ms")


def test_rest_funding_samples(okx_samples_dir: Path) -> None:
    current = parse_funding(pl.DataFrame(rest_data(okx_samples_dir, "rest_funding_rate.json"))).row(0, named=True)
    assert current["reject"] is None
    assert current["inst"] == "BTC-USDT-SWAP" and current["funding_rate"] == 0.0000182221218054
    assert current["ts"] == ms("1743588686291")
    history = parse_funding(pl.DataFrame(rest_data(okx_samples_dir, "rest_funding_rate_history.json")))
    assert history["reject"].to_list() == [None, None]
    assert history["funding_rate"].to_list() == [0.0000746604960499, 0.000227985782722]
    assert history["funding_time"].to_list() == [ms("1703059200000"), ms("1703030400000")]
    assert history["method"].to_list() == ["next_period", "next_period"]
    docs = dict(ws_frames(okx_samples_dir, "ws_docs_examples.jsonl"))[8]["data"]
    row = parse_funding(pl.DataFrame(docs)).row(0, named=True)
    assert row["reject"] is None and row["funding_rate"] == 0.0001875391284828


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"instId": "BTC-USDT-SWAP", "fundingRate": "", "fundingTime": "1703059200000"}, "missing_funding_rate"),
        ({"instId": "BTC-USDT-SWAP", "fundingRate": "0.0001"}, "missing_funding_time"),
        ({"instId": "BTC-USDT-SWAP", "fundingRate": "x", "fundingTime": "1703059200000"}, "unparsable_number"),
        ({"instId": "BTC-USDT-SWAP", "fundingRate": "nan", "fundingTime": "1703059200000"}, "non_finite"),
        ({"fundingRate": "0.0001", "fundingTime": "1703059200000"}, "bad_record"),
    ],
)
def test_funding_reject_reasons(row: dict[str, str], reason: str) -> None:
    assert parse_funding(pl.DataFrame([row])).row(0, named=True)["reject"] == reason


# --------------------------------------------------------------------------------------------
# Open interest
# --------------------------------------------------------------------------------------------


def test_ws_open_interest_every_line(okx_samples_dir: Path) -> None:
    rows = [d for _, f in ws_frames(okx_samples_dir, "ws_open_interest.jsonl") for d in f["data"]]
    parsed = parse_open_interest(pl.DataFrame(rows))
    assert parsed["reject"].to_list() == [None, None, None]
    assert parsed["inst_type"].to_list() == ["FUTURES", "SWAP", "OPTION"]
    assert parsed["oi"].to_list() == [236870.0, 644195.0, 36.0]
    assert parsed["oi_ccy"].to_list() == [23687.0, 644195.0, 3.6]
    assert parsed["oi_usd"].to_list() == [None, None, None]  # 2021 frames: no oiUsd
    assert parsed["ts"][0] == ms("1640131202886")


@pytest.mark.parametrize(
    ("name", "oi", "oi_ccy", "oi_usd"),
    [
        ("rest_open_interest.json", [2663107.29999999861], [26631.0729999999861], [1676426045.349999124995]),
        (
            "rest_open_interest_2022.json",
            [4092973.0, 21795246.0],
            [13840.048827662696883, 123562.1205163528751467],
            [None, None],
        ),
        ("rest_open_interest_docs.json", [5000.0], [555.55], [50000.0]),
    ],
)
def test_rest_open_interest_samples(
    okx_samples_dir: Path, name: str, oi: list[float], oi_ccy: list[float], oi_usd: list[float | None]
) -> None:
    parsed = parse_open_interest(pl.DataFrame(rest_data(okx_samples_dir, name)))
    assert parsed["reject"].to_list() == [None] * len(oi)
    assert parsed["oi"].to_list() == oi
    assert parsed["oi_ccy"].to_list() == oi_ccy
    assert parsed["oi_usd"].to_list() == oi_usd


def test_ws_docs_open_interest(okx_samples_dir: Path) -> None:
    docs = dict(ws_frames(okx_samples_dir, "ws_docs_examples.jsonl"))[9]["data"]
    row = parse_open_interest(pl.DataFrame(docs)).row(0, named=True)
    assert row["reject"] is None
    assert row["oi_usd"] == pytest.approx(1939251795.54769270396321)
    assert row["ts"] == ms("1743041250440")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"instId": "BTC-USDT-SWAP", "oi": "1", "oiCcy": "0.01"}, "missing_ts"),
        ({"instId": "BTC-USDT-SWAP", "oi": "1", "oiCcy": "", "ts": "1"}, "unparsable_number"),
        ({"instId": "BTC-USDT-SWAP", "oi": "1", "oiCcy": "1", "oiUsd": "?", "ts": "1"}, "unparsable_number"),
        ({"instId": "BTC-USDT-SWAP", "oi": "inf", "oiCcy": "1", "ts": "1"}, "non_finite"),
        ({"instId": "BTC-USDT-SWAP", "oi": "-1", "oiCcy": "1", "ts": "1"}, "negative_open_interest"),
        ({"oi": "1", "oiCcy": "1", "ts": "1"}, "bad_record"),
    ],
)
def test_open_interest_reject_reasons(row: dict[str, str], reason: str) -> None:
    assert parse_open_interest(pl.DataFrame([row])).row(0, named=True)["reject"] == reason


def test_every_sample_payload_is_covered(okx_samples_dir: Path) -> None:
    """No candle / funding / open-interest sample escapes the tests above."""
    channels = ("candle", "funding-rate", "open-interest")
    covered = {
        ("ws_candle1m.jsonl", i) for i in WS_CANDLE_EXPECTED
    } | {("ws_funding_rate.jsonl", i) for i in range(1, 8)} | {("ws_open_interest.jsonl", i) for i in range(1, 4)} | {
        ("ws_docs_examples.jsonl", i) for i in (4, 5, 8, 9)
    }
    found = {
        (path.name, i)
        for path in sorted(okx_samples_dir.glob("ws_*.jsonl"))
        for i, frame in ws_frames(okx_samples_dir, path.name)
        if "data" in frame and frame.get("arg", {}).get("channel", "").startswith(channels)
    }
    assert found == covered
    rest = {p.name for p in okx_samples_dir.glob("rest_*.json")}
    relevant = {n for n in rest if "candles" in n or "funding" in n or "open_interest" in n}
    assert relevant == set(REST_CANDLES) | {
        "rest_funding_rate.json",
        "rest_funding_rate_history.json",
        "rest_open_interest.json",
        "rest_open_interest_2022.json",
        "rest_open_interest_docs.json",
    }


# --------------------------------------------------------------------------------------------
# Settled funding (what the funding_rate field is made of)
# --------------------------------------------------------------------------------------------


def test_settled_funding_from_every_ws_line(okx_samples_dir: Path) -> None:
    """Only settled pushes give a settled rate; the running period's forecast never does."""
    frames = ws_frames(okx_samples_dir, "ws_funding_rate.jsonl")
    rows = pl.DataFrame([{k: str(v) for k, v in d.items()} for _, f in frames for d in f["data"]])
    parsed = parse_settled_funding(rows.with_columns(pl.lit("ws").alias("source")))
    # 2021-22 frames carry no settled rate at all: their fundingRate is a forecast
    assert parsed["reject"].to_list() == ["not_settled"] * 5 + [None, None]
    ltc = parsed.row(5, named=True)
    assert ltc["funding_rate"] == 0.0000697725497563  # settFundingRate, not fundingRate 0.0001
    assert ltc["funding_time"] is None  # no prevFundingTime: derived later across pushes
    assert ltc["period_end"] == ms("1765209600000") and ltc["next_funding_time"] == ms("1765238400000")
    assert ltc["published"] == ms("1765201461438")
    xperp = parsed.row(6, named=True)
    assert xperp["funding_time"] == ms("1785859200000")  # prevFundingTime
    assert xperp["funding_rate"] == -0.0001996513270201


def test_settled_funding_from_rest_history(okx_samples_dir: Path) -> None:
    rows = pl.DataFrame(rest_data(okx_samples_dir, "rest_funding_rate_history.json"))
    parsed = parse_settled_funding(rows.with_columns(pl.lit("rest").alias("source")))
    assert parsed["reject"].to_list() == [None, None]
    assert parsed["funding_time"].to_list() == [ms("1703059200000"), ms("1703030400000")]
    assert parsed["published"].to_list() == parsed["funding_time"].to_list()
    assert parsed["funding_rate"].to_list() == [0.0000746604960499, 0.000227985782722]
    assert parsed["realized_rate"].to_list() == [0.0000746572360545, 0.0002279755647389]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"source": "ws", "instId": "A-USDT-SWAP", "settState": "processing", "settFundingRate": "0.1",
          "fundingTime": "1", "ts": "1"}, "not_settled"),
        ({"source": "ws", "instId": "A-USDT-SWAP", "settState": "settled", "settFundingRate": "",
          "fundingTime": "1", "ts": "1"}, "missing_funding_rate"),
        ({"source": "ws", "instId": "A-USDT-SWAP", "settState": "settled", "settFundingRate": "0.1",
          "fundingTime": "1", "ts": "x"}, "unparsable_number"),
        ({"source": "ws", "instId": "A-USDT-SWAP", "settState": "settled", "settFundingRate": "0.1",
          "fundingTime": "1", "ts": "1", "prevFundingTime": "y"}, "unparsable_number"),
        ({"source": "rest", "instId": "A-USDT-SWAP", "fundingRate": "0.1"}, "missing_funding_time"),
        ({"source": "rest", "instId": "A-USDT-SWAP", "fundingRate": "inf", "fundingTime": "1"}, "non_finite"),
        ({"source": "rest", "fundingRate": "0.1", "fundingTime": "1"}, "bad_record"),
        ({"source": "other", "instId": "A-USDT-SWAP", "fundingRate": "0.1", "fundingTime": "1"}, "bad_record"),
    ],
)  # fmt: skip
def test_settled_funding_reject_reasons(row: dict[str, str], reason: str) -> None:
    assert parse_settled_funding(pl.DataFrame([row])).row(0, named=True)["reject"] == reason


# --------------------------------------------------------------------------------------------
# Trades
# --------------------------------------------------------------------------------------------


def test_trades_every_line(okx_samples_dir: Path) -> None:
    frames = ws_frames(okx_samples_dir, "ws_trades.jsonl")
    rows = [{k: str(v) for k, v in d.items()} for _, f in frames for d in f["data"]]
    parsed = parse_trades(pl.DataFrame(rows))
    assert parsed["reject"].to_list() == [None] * len(rows)
    last = parsed.row(len(rows) - 1, named=True)  # 2025 frame: count, source, seqId (a JSON number)
    assert last == {"inst": "BTC-USDT-SWAP", "inst_type": "SWAP", "trade_id": "2005639579",
                    "ts": ms("1765201257145"), "px": 91467.1, "sz": 0.03, "side": "sell", "count": 1,
                    "reject": None}  # fmt: skip
    assert parsed["count"].to_list() == [1] * len(rows)  # frames before 2024 have no count: one fill each
    assert set(parsed["side"]) == {"buy", "sell"}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"instId": "BTC-USDT-SWAP", "tradeId": "1", "px": "1", "sz": "1", "side": "buy"}, "missing_ts"),
        ({"instId": "BTC-USDT-SWAP", "px": "1", "sz": "1", "side": "buy", "ts": "1"}, "missing_trade_id"),
        ({"instId": "BTC-USDT-SWAP", "tradeId": "1", "px": "a", "sz": "1", "side": "buy", "ts": "1"}, "unparsable_number"),
        ({"instId": "BTC-USDT-SWAP", "tradeId": "1", "px": "1", "sz": "1", "side": "up", "ts": "1"}, "bad_side"),
        ({"instId": "BTC-USDT-SWAP", "tradeId": "1", "px": "1", "sz": "0", "side": "buy", "ts": "1"}, "non_positive"),
        ({"instId": "BTC-USDT-SWAP", "tradeId": "1", "px": "1", "sz": "1", "side": "buy", "ts": "1", "count": "0"},
         "non_positive"),
        ({"instId": "bad id", "tradeId": "1", "px": "1", "sz": "1", "side": "buy", "ts": "1"}, "unknown_inst_type"),
        ({"tradeId": "1", "px": "1", "sz": "1", "side": "buy", "ts": "1"}, "bad_record"),
    ],
)  # fmt: skip
def test_trade_reject_reasons(row: dict[str, str], reason: str) -> None:
    assert parse_trades(pl.DataFrame([row])).row(0, named=True)["reject"] == reason
