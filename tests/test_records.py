"""feeder.records on real OKX frames (tests/fixtures/okx-samples, provenance in its README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feeder import records as R

SAMPLES = Path(__file__).parent / "fixtures" / "okx-samples"
RECV = 1_700_000_000_123


def lines(name: str) -> list[str]:
    return (SAMPLES / name).read_text().splitlines()


def parse(line: str) -> R.ParseResult:
    return R.records_from_text(line, recv_ts=RECV)


# --------------------------------------------------------------------------- candles


def test_candle_2022_seven_element_arrays_are_kept_verbatim() -> None:
    for line in lines("ws_candle1m.jsonl")[:6]:
        frame = json.loads(line)
        res = parse(line)
        assert res.rejects == []
        [rec] = res.records
        assert len(rec["data"]) == 7
        assert rec == {"v": 1, "source": "ws", "channel": "candle1m", "inst": frame["arg"]["instId"],
                       "ts": int(frame["data"][0][0]), "recv_ts": RECV, "data": frame["data"][0]}
        assert isinstance(rec["ts"], int)
        assert not R.candle_confirmed(rec)  # no confirm field: not known to be final


def test_candle_nine_elements_matches_architecture_example() -> None:
    res = parse(lines("ws_candle1m.jsonl")[7])
    [rec] = res.records
    assert rec["inst"] == "BTC-USDT-SWAP" and rec["ts"] == 1774964340000
    assert rec["data"] == ["1774964340000", "66898.7", "66902.1", "66884.6", "66894.5", "1330.07", "13.3007",
                           "889750.68514000", "0"]  # trailing zeros kept: strings stay strings
    assert not R.candle_confirmed(rec)
    closed = dict(rec, data=rec["data"][:8] + ["1"])
    assert R.candle_confirmed(closed)


def test_record_line_is_compact_and_in_contract_key_order() -> None:
    rec = parse(lines("ws_candle1m.jsonl")[7]).records[0]
    line = R.encode_record(rec)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.startswith(b'{"v":1,"source":"ws","channel":"candle1m","inst":"BTC-USDT-SWAP","ts":1774964340000,')
    assert b", " not in line and b": " not in line
    assert R.decode_record(line) == rec


def test_multi_element_candle_frame_gives_one_record_per_element() -> None:
    frame = {"arg": {"channel": "candle1m", "instId": "ETH-USDT-SWAP"},
             "data": [["1709589600000", "1", "2", "0.5", "1.5", "10", "1", "1.5", "1"],
                      ["1709589660000", "1", "2", "0.5", "1.5", "10", "1", "1.5", "0"]]}
    res = R.records_from_frame(frame, recv_ts=RECV)
    assert [r["ts"] for r in res.records] == [1709589600000, 1709589660000]
    assert all(r["inst"] == "ETH-USDT-SWAP" for r in res.records)


# --------------------------------------------------------------------------- other channels


def test_funding_frames_without_ts_use_funding_time() -> None:
    all_lines = lines("ws_funding_rate.jsonl")
    for line in all_lines[:5]:  # pre-2023 pushes: no ts
        frame = json.loads(line)
        [rec] = parse(line).records
        assert "ts" not in frame["data"][0]
        assert rec["ts"] == int(frame["data"][0]["fundingTime"])
        assert rec["data"] == frame["data"][0]
    # line 2 has no fundingRate key at all: still a record (cleaning decides what it means)
    assert "fundingRate" not in parse(all_lines[1]).records[0]["data"]
    # new format: ts present → ts wins
    frame = json.loads(all_lines[5])
    assert parse(all_lines[5]).records[0]["ts"] == int(frame["data"][0]["ts"])


def test_trades_keep_numeric_seq_id_as_number() -> None:
    line = lines("ws_trades.jsonl")[20]
    [rec] = parse(line).records
    assert rec["data"]["seqId"] == 279183506666 and isinstance(rec["data"]["seqId"], int)
    assert b'"seqId":279183506666' in R.encode_record(rec)
    assert rec["ts"] == 1765201257145 and rec["inst"] == "BTC-USDT-SWAP"


def test_every_real_data_frame_round_trips_losslessly() -> None:
    for name in ("ws_candle1m.jsonl", "ws_trades.jsonl", "ws_funding_rate.jsonl", "ws_tickers.jsonl",
                 "ws_open_interest.jsonl"):
        for line in lines(name):
            frame = json.loads(line)
            res = parse(line)
            if frame["arg"]["channel"] not in R.CHANNELS:  # trades-all
                assert [r.reason for r in res.rejects] == [R.R_UNKNOWN_CHANNEL]
                continue
            assert res.rejects == []
            assert [r["data"] for r in res.records] == frame["data"]
            for rec in res.records:
                assert R.decode_record(R.encode_record(rec)) == rec


def test_empty_strings_survive() -> None:
    line = lines("ws_tickers.jsonl")[15]  # option ticker with bidPx ""
    [rec] = parse(line).records
    assert rec["data"]["bidPx"] == "" and rec["data"]["bidSz"] == ""


# --------------------------------------------------------------------------- rejects


@pytest.mark.parametrize("line, reason", [
    (0, R.R_EVENT), (8, R.R_ERROR), (9, R.R_ERROR), (10, R.R_NOTICE), (11, R.R_EVENT),
])
def test_events_are_rejected_with_reason(line: int, reason: str) -> None:
    res = parse(lines("ws_events.jsonl")[line])
    assert res.records == []
    [rej] = res.rejects
    assert rej.reason == reason
    assert rej.detail.startswith("event=")


def test_error_reject_carries_code_and_message() -> None:
    rej = parse(lines("ws_events.jsonl")[8]).rejects[0]
    assert "code=60018" in rej.detail and "index-tickers" in rej.detail


@pytest.mark.parametrize("raw, reason", [
    ("pong", R.R_NOT_JSON),
    ('{"arg":', R.R_NOT_JSON),
    ("[1,2]", R.R_NOT_OBJECT),
    ('{"arg":{"channel":"candle1m","instId":"X"},"data":[["NaN"]]}', R.R_BAD_ELEMENT),
    ('{"arg":{"channel":"trades","instId":"X"},"data":[{"px":NaN,"ts":"1"}]}', R.R_NOT_JSON),
    ('{"data":[{"instId":"X","ts":"1"}]}', R.R_NO_ARG),
    ('{"arg":{"channel":"books","instId":"X"},"data":[{}]}', R.R_UNKNOWN_CHANNEL),
    ('{"arg":{"channel":"trades","instId":"X"},"data":[]}', R.R_NO_DATA),
    ('{"arg":{"channel":"trades","instId":"X"}}', R.R_NO_DATA),
    ('{"arg":{"channel":"trades","instId":"X"},"data":"oops"}', R.R_NO_DATA),
    ('{"arg":{"channel":"trades"},"data":[{"px":"1","ts":"1"}]}', R.R_MISSING_INST),
    ('{"arg":{"channel":"candle1m"},"data":[["1","1","1","1","1","1","1"]]}', R.R_MISSING_INST),
    ('{"arg":{"channel":"trades","instId":"X"},"data":[{"instId":"Y","ts":"1"}]}', R.R_INST_MISMATCH),
    ('{"arg":{"channel":"trades","instId":"X"},"data":[{"px":"1"}]}', R.R_MISSING_TS),
    ('{"arg":{"channel":"trades","instId":"X"},"data":[{"px":"1","ts":""}]}', R.R_MISSING_TS),
    ('{"arg":{"channel":"open-interest","instId":"X"},"data":[{"fundingTime":"5"}]}', R.R_MISSING_TS),
    ('{"arg":{"channel":"candle1m","instId":"X"},"data":[["","1","1","1","1","1","1"]]}', R.R_MISSING_TS),
    ('{"arg":{"channel":"trades","instId":"X"},"data":[{"ts":"12.5"}]}', R.R_BAD_TS),
    ('{"arg":{"channel":"trades","instId":"X"},"data":[{"ts":"-5"}]}', R.R_BAD_TS),
    ('{"arg":{"channel":"trades","instId":"X"},"data":[{"ts":true}]}', R.R_BAD_TS),
    ('{"arg":{"channel":"trades","instId":"X"},"data":[["1"]]}', R.R_BAD_ELEMENT),
    ('{"arg":{"channel":"candle1m","instId":"X"},"data":[{"ts":"1"}]}', R.R_BAD_ELEMENT),
    (b"\xff\xfe{", R.R_NOT_JSON),
])
def test_malformed_frames_are_rejected_not_raised(raw: str | bytes, reason: str) -> None:
    res = R.records_from_text(raw, recv_ts=RECV)
    assert res.records == []
    assert [r.reason for r in res.rejects] == [reason]
    assert all(r.reason in R.REASONS for r in res.rejects)


def test_partly_bad_frame_keeps_good_elements() -> None:
    frame = {"arg": {"channel": "trades", "instId": "X-USDT"},
             "data": [{"instId": "X-USDT", "ts": "1"}, {"instId": "X-USDT"}, {"instId": "X-USDT", "ts": "3"}]}
    res = R.records_from_frame(frame, recv_ts=RECV)
    assert [r["ts"] for r in res.records] == [1, 3]
    assert [r.reason for r in res.rejects] == [R.R_MISSING_TS]


def test_element_inst_used_when_arg_has_none() -> None:
    frame = {"arg": {"channel": "trades"}, "data": [{"instId": "BTC-USDT-SWAP", "ts": "7"}]}
    [rec] = R.records_from_frame(frame, recv_ts=RECV).records
    assert rec["inst"] == "BTC-USDT-SWAP"


def test_non_mapping_frame() -> None:
    assert R.records_from_frame(["x"], recv_ts=RECV).rejects[0].reason == R.R_NOT_OBJECT


def test_encode_refuses_nan() -> None:
    with pytest.raises(ValueError):
        R.encode_record({"v": 1, "data": float("nan")})


# --------------------------------------------------------------------------- REST rows


def test_rest_history_candles_rows() -> None:
    body = json.loads((SAMPLES / "rest_history_candles.json").read_text())
    res = R.records_from_rest("candle1m", body["data"], recv_ts=RECV, inst="BTC-USDT-SWAP")
    assert res.rejects == []
    assert [r["ts"] for r in res.records] == [int(row[0]) for row in body["data"]]
    assert all(r["source"] == "rest" and r["inst"] == "BTC-USDT-SWAP" for r in res.records)
    assert [r["data"] for r in res.records] == body["data"]


def test_rest_candles_need_inst() -> None:
    body = json.loads((SAMPLES / "rest_candles.json").read_text())
    res = R.records_from_rest("candle1m", body["data"], recv_ts=RECV)
    assert res.records == [] and {r.reason for r in res.rejects} == {R.R_MISSING_INST}


def test_rest_funding_history_rows_use_funding_time() -> None:
    body = json.loads((SAMPLES / "rest_funding_rate_history.json").read_text())
    res = R.records_from_rest("funding-rate", body["data"], recv_ts=RECV)
    assert [r["ts"] for r in res.records] == [1703059200000, 1703030400000]
    assert [r["inst"] for r in res.records] == ["BTC-USD-SWAP"] * 2
    # a request for another instrument must not file rows under the wrong one
    res = R.records_from_rest("funding-rate", body["data"], recv_ts=RECV, inst="ETH-USDT-SWAP")
    assert res.records == [] and {r.reason for r in res.rejects} == {R.R_INST_MISMATCH}


def test_rest_open_interest_and_unknown_channel() -> None:
    body = json.loads((SAMPLES / "rest_open_interest.json").read_text())
    [rec] = R.records_from_rest("open-interest", body["data"], recv_ts=RECV).records
    assert rec["ts"] == 1728728314766 and rec["data"]["oi"] == "2663107.29999999861"
    assert R.records_from_rest("books", [], recv_ts=RECV).rejects[0].reason == R.R_UNKNOWN_CHANNEL


def test_books5_push_becomes_one_record_with_the_element_verbatim() -> None:
    """BOOKS-CONTRACT section 2: ts = the book's ts as int ms, data = the element as pushed (strings
    stay strings, seqId a JSON integer, unknown keys kept)."""
    text = ('{"arg":{"channel":"books5","instId":"BTC-USDT-SWAP"},"data":[{"asks":[["67000.1","12","0","3"]],'
            '"bids":[["67000","4.5","0","1"]],"instId":"BTC-USDT-SWAP","ts":"1597026383085","seqId":123456,'
            '"extra":"kept"}]}')
    result = R.records_from_text(text, recv_ts=1597026383100, channels=R.CHANNELS)
    assert not result.rejects and len(result.records) == 1
    r = result.records[0]
    assert (r["channel"], r["inst"], r["ts"], r["recv_ts"]) == ("books5", "BTC-USDT-SWAP", 1597026383085, 1597026383100)
    assert r["data"] == json.loads(text)["data"][0] and type(r["data"]["seqId"]) is int
    assert R.encode_record(r).decode().endswith(json.dumps(r["data"], separators=(",", ":")) + "}\n")
