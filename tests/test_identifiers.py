"""Exchange strings never become paths unchecked (issue 12, finding 7).

An ``instId`` of ``../../../../PWNED-USDT-SWAP`` served by the instruments endpoint used to be
written as ``<cache>/../../../../PWNED-USDT-SWAP.parquet`` by the daily-metrics stage: a file
outside the data directory. Now every reader refuses such ids (logged) and every place that
makes a path from one refuses it again.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeder.backfill import _piece_path, fetch_log
from feeder.identifiers import InvalidInstrumentId, inst_path_stem, is_inst_id
from feeder.records import R_BAD_INST, records_from_frame
from feeder.universe import DailyMetricCache, fetch_daily_metrics, instruments_frame

FIXTURES = Path(__file__).parent / "fixtures" / "okx-samples"
HOSTILE = "../../../../PWNED-USDT-SWAP"
DAY = dt.date(2024, 3, 4)
DAY_MS = int(dt.datetime(2024, 3, 4, tzinfo=dt.timezone.utc).timestamp() * 1000)


def real_ids() -> list[str]:
    ids = []
    for name in ("rest_instruments_swap_2025.json", "rest_instruments_swap.json", "rest_instruments_spot.json"):
        ids += [item["instId"] for item in json.loads((FIXTURES / name).read_text())["data"]]
    return ids


def test_every_real_okx_instrument_id_is_accepted():
    ids = real_ids() + ["BTC-USD-220624-50000-C", "BTC-USD_UM_XPERP-310404", "1INCH-USDT-SWAP"]
    assert all(is_inst_id(i) for i in ids), [i for i in ids if not is_inst_id(i)]


@pytest.mark.parametrize("bad", [HOSTILE, "/etc/passwd", "..", "BTC-USDT-SWAP/../../x", "BTC", "", "btc-usdt-swap",
                                 "BTC-USDT-SWAP\n", "BTC-USDT SWAP", "..-USDT-SWAP", "A" * 70 + "-USDT", None, 12])
def test_anything_else_is_refused_as_a_file_name(bad):
    assert not is_inst_id(bad)
    with pytest.raises(InvalidInstrumentId, match="not an OKX instrument id"):
        inst_path_stem(bad)


@given(st.text(max_size=40))
def test_an_accepted_id_is_always_one_plain_file_name(text):
    if is_inst_id(text):
        assert "/" not in text and text not in (".", "..") and not text.startswith(".")
        assert Path(text).name == text


def test_a_websocket_push_with_a_hostile_inst_id_is_rejected_not_recorded():
    frame = {"arg": {"channel": "candle1m", "instId": HOSTILE},
             "data": [["1709510400000", "1", "2", "0.5", "1.5", "10", "10", "15", "1"]]}
    result = records_from_frame(frame, recv_ts=DAY_MS)
    assert result.records == []
    assert [r.reason for r in result.rejects] == [R_BAD_INST]


def test_path_makers_refuse_hostile_ids(tmp_path):
    with pytest.raises(InvalidInstrumentId):
        _piece_path(tmp_path, HOSTILE, 0, 60_000)
    with pytest.raises(InvalidInstrumentId):
        DailyMetricCache(tmp_path / "cache")._path(HOSTILE)
    # a hand-made piece with a hostile name in the fetch log is ignored, not read as an instrument
    (tmp_path / "..-x.0-60000.jsonl").write_text("")
    (tmp_path / "BTC-USDT-SWAP.0-60000.jsonl").write_text("")
    assert list(fetch_log(tmp_path)) == ["BTC-USDT-SWAP"]


def test_instruments_frame_drops_hostile_ids():
    good = json.loads((FIXTURES / "rest_instruments_swap.json").read_text())["data"][0]
    bad = dict(copy.deepcopy(good), instId=HOSTILE)
    frame = instruments_frame([good, bad])
    assert frame["instId"].to_list() == [good["instId"]]


# -- through the real HTTP path: an exchange that serves a hostile instrument list -----------------


class _HostileExchange(BaseHTTPRequestHandler):
    """Answers like OKX v5 (envelope and field names from the recorded samples), except that the
    instruments list carries one hostile id. Candle answers hold one closed 1Dutc bar per day."""

    instruments: list[dict] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/v5/public/instruments":
            data = self.instruments
        elif url.path == "/api/v5/public/time":
            data = [{"ts": str(DAY_MS + 2 * 86_400_000)}]
        elif url.path in ("/api/v5/market/history-candles", "/api/v5/market/candles"):
            after, before = int(query["after"]), int(query.get("before", -1))  # both optional at OKX
            day_ms = [DAY_MS + k * 86_400_000 for k in range(-3, 2)]
            data = [[str(t), "1", "1", "1", "1", "10", "10", "1000", "1"] for t in reversed(day_ms) if before < t < after]
        else:
            self.send_error(404)
            return
        body = json.dumps({"code": "0", "msg": "", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def hostile_exchange() -> Iterator[str]:
    good = next(item for item in json.loads((FIXTURES / "rest_instruments_swap_2025.json").read_text())["data"]
                if item["instId"] == "BTC-USDT-SWAP")
    bad = dict(copy.deepcopy(good), instId=HOSTILE, instFamily="PWNED-USDT", uly="PWNED-USDT")
    _HostileExchange.instruments = [good, bad]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileExchange)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_hostile_inst_id_from_the_instruments_endpoint_writes_nothing_outside(tmp_path, hostile_exchange):
    data = tmp_path / "a" / "b" / "c" / "data"
    cache_dir = data / "work" / ".daily-metric-cache"
    daily = fetch_daily_metrics(
        exchange={"rest_url": hostile_exchange, "timeout_s": 5},
        universe_cfg={"size": 2, "rank_by": "quote_volume", "inst_type": "SWAP", "settle_ccy": "USDT",
                      "ct_type": "linear", "inst_category": ["1"], "exclude_bases": []},
        day=DAY, history_start=DAY - dt.timedelta(days=3),
        snapshot_dir=data / "raw" / "rest" / "instruments", cache_dir=cache_dir,
        out_path=data / "work" / "daily.parquet", instruments_out=data / "work" / "instruments.parquet",
    )
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and data not in p.parents]
    assert outside == []
    assert not list(tmp_path.rglob("PWNED*"))
    assert daily["inst"].to_list() == ["BTC-USDT-SWAP"]  # the real instrument is still ranked
    assert pl.read_parquet(data / "work" / "instruments.parquet")["instId"].to_list() == ["BTC-USDT-SWAP"]
    # the raw snapshot keeps the exchange's answer verbatim (lossless), hostile id included
    snapshot = (data / "raw" / "rest" / "instruments").glob("*.jsonl")
    assert HOSTILE in next(snapshot).read_text()
