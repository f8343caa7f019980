"""OKX's historical-data archive (feeder.archive): reading files, UTC+8 dates, listing and downloads.

File tests build their zips here, from the archive's header and a real row (the first bar of
ETH-USDT-SWAP's file dated 2025-10-23 = 2025-10-22 16:00 UTC). Listing and download tests run
against the local simulator over 127.0.0.1 (okxsim), with the faults the real archive shows.
"""

from __future__ import annotations

import datetime as dt
import threading
import logging
import time
import zipfile
from pathlib import Path

import pytest

import okxsim
from feeder.archive import (ARCHIVE_LISTING, CANDLE_HEADER, DAILY, MONTHLY, ArchiveFile, ArchiveFormatError,
                            ArchiveUnavailableError, archive_minutes, archive_path, download_files,
                            list_candle_files, parse_listing, period_span_ms, read_candle_file, size_plausible,
                            utc8_dates_of_utc_day)
from feeder.registry import day_bounds_ms
from feeder.rest import RATE_LIMITS, OkxRestClient

ETH = "ETH-USDT-SWAP"
HEADER = ",".join(CANDLE_HEADER)
REAL_ROW = "ETH-USDT-SWAP,3839.44,3843.58,3836.71,3838.16,23503.2,2350.32,9024127.30277,1761148800000,1"
FIRST_BAR = 1761148800000  # 2025-10-22 16:00 UTC = 2025-10-23 00:00 UTC+8
MINUTE = 60_000


def eth_file(period: str = "2025-10-23", aggregation: str = DAILY, inst: str = ETH) -> ArchiveFile:
    start, end = period_span_ms(aggregation=aggregation, period=period)
    return ArchiveFile(inst=inst, inst_type="SWAP", inst_family="ETH-USDT", aggregation=aggregation, period=period,
                       filename=f"{inst}-candlesticks-{period}.zip", url="https://127.0.0.1/x.zip", size_mb=None,
                       start_ms=start, end_ms=end)


def make_zip(path: Path, members: dict[str, str | bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def csv_zip(tmp_path: Path, text: str | bytes, name: str = "ETH-USDT-SWAP-candlesticks-2025-10-23.csv") -> Path:
    return make_zip(tmp_path / "ETH-USDT-SWAP-candlesticks-2025-10-23.zip", {name: text})


def row(minute: int, *, inst: str = ETH, close: str = "3838.16", confirm: str = "1") -> str:
    ts = FIRST_BAR + minute * MINUTE
    return f"{inst},3839.44,3843.58,3836.71,{close},23503.2,2350.32,9024127.30277,{ts},{confirm}"


# --------------------------------------------------------------------------- reading one file


def test_real_row_becomes_the_rest_record_of_that_minute(tmp_path):
    path = csv_zip(tmp_path, f"{HEADER}\n{REAL_ROW}\n")
    records = read_candle_file(path, file=eth_file(), recv_ts=123)
    assert records == [{"v": 1, "source": "archive", "channel": "candle1m", "inst": ETH, "ts": FIRST_BAR,
                        "recv_ts": 123,
                        "data": ["1761148800000", "3839.44", "3843.58", "3836.71", "3838.16", "23503.2", "2350.32",
                                 "9024127.30277", "1"]}]


def test_reordered_columns_are_read_by_name_and_a_bom_is_ignored(tmp_path):
    order = ["open_time", "close", "instrument_name", "confirm", "open", "high", "low", "vol_quote", "vol", "vol_ccy"]
    values = dict(zip(CANDLE_HEADER, REAL_ROW.split(",")))
    text = "\ufeff" + " , ".join(order) + " \r\n" + ",".join(values[c] for c in order) + "\n"
    records = read_candle_file(csv_zip(tmp_path, text.encode("utf-8")), file=eth_file(), recv_ts=1)
    assert records[0]["data"] == ["1761148800000", "3839.44", "3843.58", "3836.71", "3838.16", "23503.2", "2350.32",
                                  "9024127.30277", "1"]


@pytest.mark.parametrize("header", [
    "instrument_name,open,high,low,close,volume,vol_ccy,vol_quote,open_time,confirm",   # unknown name
    "instrument_name,open,high,low,close,vol,vol_ccy,vol_quote,open_time",              # one missing
    "instrument_name,open,high,low,close,vol,vol_ccy,vol_quote,open_time,confirm,x",    # one extra
    "instrument_name,open,open,low,close,vol,vol_ccy,vol_quote,open_time,confirm",      # duplicated
])
def test_a_header_that_is_not_the_archives_is_refused(tmp_path, header):
    with pytest.raises(ArchiveFormatError, match=r"ETH-USDT-SWAP-candlesticks-2025-10-23\.zip, line 1: expected "
                                                  r"the header instrument_name,open.*found") as err:
        read_candle_file(csv_zip(tmp_path, f"{header}\n{REAL_ROW}\n"), file=eth_file(), recv_ts=1)
    assert header[:40] in str(err.value)


def test_a_row_of_another_instrument_is_refused_with_its_line(tmp_path):
    text = f"{HEADER}\n{row(0)}\n{row(1, inst='BTC-USDT-SWAP')}\n"
    with pytest.raises(ArchiveFormatError, match=r"line 3: expected instrument_name ETH-USDT-SWAP, found "
                                                  r"BTC-USDT-SWAP,3839\.44"):
        read_candle_file(csv_zip(tmp_path, text), file=eth_file(), recv_ts=1)


@pytest.mark.parametrize("minute", [-1, 1440])
def test_an_open_time_outside_the_files_utc8_day_is_refused(tmp_path, minute):
    text = f"{HEADER}\n{row(5)}\n{row(minute)}\n"
    with pytest.raises(ArchiveFormatError, match=rf"line 3: expected open_time inside the file's span "
                                                  rf"\[{FIRST_BAR}, {FIRST_BAR + 1440 * MINUTE}\).*found "
                                                  rf"'{FIRST_BAR + minute * MINUTE}'"):
        read_candle_file(csv_zip(tmp_path, text), file=eth_file(), recv_ts=1)


@pytest.mark.parametrize(("bad", "expected"), [
    (row(1, close="abc"), "close as a finite decimal number"),
    (row(1, close="NaN"), "close as a finite decimal number"),
    (row(1, close="inf"), "close as a finite decimal number"),
    (row(1, close=""), "close as a finite decimal number"),
    (row(1).replace(str(FIRST_BAR + MINUTE), "1761148860000.5"), "open_time as integer epoch ms"),
    (row(1).replace(str(FIRST_BAR + MINUTE), str(FIRST_BAR + MINUTE + 1)), "open_time on a minute boundary"),
    (row(1, confirm="yes"), "confirm 0 or 1"),
    (row(0), "one row per minute"),
    (",".join(row(1).split(",")[:9]), "10 comma-separated fields, found 9 fields"),
    ("", "10 comma-separated fields, found an empty line"),
    (row(1) + ",extra", "10 comma-separated fields"),
])
def test_a_malformed_row_is_refused_naming_line_expectation_and_value(tmp_path, bad, expected):
    text = f"{HEADER}\n{row(0)}\n{bad}\n{row(2)}\n"
    with pytest.raises(ArchiveFormatError, match=rf"line 3: expected {expected}"):
        read_candle_file(csv_zip(tmp_path, text), file=eth_file(), recv_ts=1)


@pytest.mark.parametrize(("members", "found"), [
    ({}, "0 members"),
    ({"a.csv": f"{HEADER}\n", "b.csv": f"{HEADER}\n"}, "2 members"),
    ({"../../etc/ETH-USDT-SWAP-candlesticks-2025-10-23.csv": f"{HEADER}\n{REAL_ROW}\n"}, "'../../etc/"),
    ({"sub\\x.csv": f"{HEADER}\n{REAL_ROW}\n"}, "'sub\\\\\\\\x.csv'"),
    ({"x.exe": f"{HEADER}\n{REAL_ROW}\n"}, "'x.exe'"),
])
def test_zips_of_another_shape_are_refused(tmp_path, members, found):
    path = make_zip(tmp_path / "ETH-USDT-SWAP-candlesticks-2025-10-23.zip", members)
    with pytest.raises(ArchiveFormatError, match=r"candlesticks-2025-10-23\.zip, the zip: expected") as err:
        read_candle_file(path, file=eth_file(), recv_ts=1)
    assert found.replace("\\\\\\\\", "\\\\") in str(err.value)
    assert not (tmp_path.parent / "etc").exists()


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "ETH-USDT-SWAP-candlesticks-2025-10-23.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ArchiveFormatError, match="expected a readable zip"):
        read_candle_file(path, file=eth_file(), recv_ts=1)


def test_a_header_only_file_has_no_records(tmp_path):
    assert read_candle_file(csv_zip(tmp_path, f"{HEADER}\n"), file=eth_file(), recv_ts=1) == []


def test_a_whole_monthly_file_is_read(tmp_path):
    """A month of 1-minute bars (44,640 rows): every row checked and kept (its speed is logged;
    benchmarks, not tests, judge speed)."""
    file = eth_file("2025-10", MONTHLY)
    n = (file.end_ms - file.start_ms) // MINUTE
    lines = [f"{ETH},3839.44,3843.58,3836.71,3838.16,23503.2,2350.32,9024127.30277,{file.start_ms + i * MINUTE},1"
             for i in range(n)]
    path = make_zip(tmp_path / file.filename, {file.filename[:-4] + ".csv": HEADER + "\n" + "\n".join(lines) + "\n"})
    t0 = time.perf_counter()
    records = read_candle_file(path, file=file, recv_ts=1)
    seconds = time.perf_counter() - t0
    logging.getLogger(__name__).warning("read_candle_file: %d rows in %.3f s = %.0f rows/s", n, seconds, n / seconds)
    assert len(records) == n == 44640 and records[-1]["ts"] == file.end_ms - MINUTE


# --------------------------------------------------------------------------- UTC+8 dates and one UTC day


def test_utc8_dates_of_a_utc_day_and_the_spans_they_cover():
    day = dt.date(2025, 10, 22)
    assert utc8_dates_of_utc_day(day) == (dt.date(2025, 10, 22), dt.date(2025, 10, 23))
    # file 2025-10-23 starts 2025-10-22 16:00 UTC: the real first bar above
    assert period_span_ms(aggregation=DAILY, period="2025-10-23") == (FIRST_BAR, FIRST_BAR + 86_400_000)
    oct_start = int(dt.datetime(2025, 9, 30, 16, tzinfo=dt.timezone.utc).timestamp() * 1000)
    nov_start = int(dt.datetime(2025, 10, 31, 16, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert period_span_ms(aggregation=MONTHLY, period="2025-10") == (oct_start, nov_start)
    d, d1 = (period_span_ms(aggregation=DAILY, period=p.isoformat()) for p in utc8_dates_of_utc_day(day))
    utc_lo = FIRST_BAR - 16 * 3_600_000
    assert d[0] < utc_lo < d[1] == d1[0] < utc_lo + 86_400_000 < d1[1]


def test_archive_minutes_cuts_files_to_the_utc_day_and_reports_coverage(tmp_path):
    """UTC day 2025-10-22 = the last 16 h of UTC+8 file 10-22 + the first 8 h of file 10-23."""
    day = dt.date(2025, 10, 22)
    f22, f23 = eth_file("2025-10-22"), eth_file("2025-10-23")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # file 22: bars at 15:58 and 15:59 UTC+8 (= 07:58, 07:59 UTC of day 22) and one on UTC day 21
    p22 = make_zip(tmp_path / "a" / f22.filename, {"x.csv": "\n".join([
        HEADER, row(-1440), row(-2 - 16 * 60 + 8 * 60), row(-1 - 16 * 60 + 8 * 60)]) + "\n"})
    # file 23: 16:00 UTC (in the day), 23:59 UTC unconfirmed, and 00:00 UTC of day 23 (not in the day)
    p23 = make_zip(tmp_path / "b" / f23.filename, {"x.csv": "\n".join([
        HEADER, row(0), row(8 * 60 - 1, confirm="0"), row(8 * 60)]) + "\n"})
    records, covered, refused = archive_minutes(files=[f22, f23], paths={f22: p22, f23: p23}, day=day, recv_ts=5)
    day_lo = FIRST_BAR - 16 * 3_600_000
    assert [r["ts"] for r in records] == [day_lo + (8 * 60 - 2) * MINUTE, day_lo + (8 * 60 - 1) * MINUTE,
                                          FIRST_BAR, FIRST_BAR + (8 * 60 - 1) * MINUTE]
    # the whole day, minus the unconfirmed last minute (cleaning drops it: REST must be asked)
    assert covered == {ETH: [[day_lo, day_lo + 86_400_000 - MINUTE]]} and refused == {}


def test_archive_minutes_a_refused_file_covers_nothing(tmp_path):
    day = dt.date(2025, 10, 22)
    f22, f23 = eth_file("2025-10-22"), eth_file("2025-10-23")
    p22 = make_zip(tmp_path / f22.filename, {"x.csv": f"a,b,c\n1,2,3\n"})
    p23 = make_zip(tmp_path / f23.filename, {"x.csv": f"{HEADER}\n{REAL_ROW}\n"})
    records, covered, refused = archive_minutes(files=[f22, f23], paths={f22: p22, f23: p23}, day=day, recv_ts=5)
    assert [r["ts"] for r in records] == [FIRST_BAR]
    assert covered == {ETH: [[FIRST_BAR, FIRST_BAR + 8 * 3_600_000]]}
    assert list(refused) == [f22.filename] and "line 1: expected the header" in refused[f22.filename]


def test_archive_minutes_reads_a_monthly_file_for_one_of_its_days(tmp_path):
    month = eth_file("2025-10", MONTHLY)
    path = make_zip(tmp_path / month.filename, {"m.csv": f"{HEADER}\n{REAL_ROW}\n{row(60 * 24 * 2)}\n"})
    records, covered, _ = archive_minutes(files=[month], paths={month: path}, day=dt.date(2025, 10, 24), recv_ts=5)
    assert [r["ts"] for r in records] == [FIRST_BAR + 2 * 86_400_000]
    lo = FIRST_BAR + 8 * 3_600_000 + 86_400_000
    assert covered == {ETH: [[lo, lo + 86_400_000]]}


def test_a_monthly_file_is_checked_once_and_its_other_days_read_from_the_checked_copy(tmp_path):
    """Each day's job reads only its rows of a monthly file: from the checked copy written beside
    the zip the first time (never for a refused file)."""
    month = eth_file("2025-10", MONTHLY)
    path = make_zip(tmp_path / month.filename, {"m.csv": f"{HEADER}\n{REAL_ROW}\n{row(60 * 24 * 2)}\n"})
    first, _, _ = archive_minutes(files=[month], paths={month: path}, day=dt.date(2025, 10, 24), recv_ts=5)
    checked = tmp_path / (month.filename + ".parquet")
    assert checked.exists()
    path.write_bytes(b"")  # the zip is not read again
    again, _, refused = archive_minutes(files=[month], paths={month: path}, day=dt.date(2025, 10, 24), recv_ts=5)
    assert again == first and not refused
    bad = eth_file("2025-11", MONTHLY)
    bad_path = make_zip(tmp_path / bad.filename, {"m.csv": "instrument_name,open\n"})
    _, _, refused = archive_minutes(files=[bad], paths={bad: bad_path}, day=dt.date(2025, 11, 2), recv_ts=5)
    assert list(refused) == [bad.filename] and not (tmp_path / (bad.filename + ".parquet")).exists()


# --------------------------------------------------------------------------- listing answers and paths


def listing_entry(**overrides):
    entry = {"filename": "ETH-USDT-SWAP-candlesticks-2025-10-23.zip", "dateTs": str(FIRST_BAR), "sizeMB": "0.0712",
             "url": "https://127.0.0.1:1/cdn/okex/traderecords/candlesticks/daily/20251023/"
                    "ETH-USDT-SWAP-candlesticks-2025-10-23.zip"}
    return {**entry, **overrides}


def listing(inst=ETH, family="ETH-USDT", entries=None):
    return [{"ts": "1", "details": [{"instId": inst, "instFamily": family, "instType": "SWAP",
                                     "groupDetails": entries or [listing_entry()]}]}]


def test_a_listing_entry_becomes_a_checked_file_either_date_key():
    (file,) = parse_listing(listing(), inst_type="SWAP", aggregation=DAILY)
    assert file == eth_file("2025-10-23").__class__(**{**eth_file("2025-10-23").__dict__, "size_mb": 0.0712,
                                                       "url": listing_entry()["url"]})
    entry = listing_entry()
    entry["dataTs"] = entry.pop("dateTs")
    assert parse_listing(listing(entries=[entry]), inst_type="SWAP", aggregation=DAILY) == [file]


@pytest.mark.parametrize(("kwargs", "entry"), [
    ({"inst": "../../PWNED-USDT-SWAP"}, {"filename": "../../PWNED-USDT-SWAP-candlesticks-2025-10-23.zip"}),
    ({}, {"filename": "../ETH-USDT-SWAP-candlesticks-2025-10-23.zip"}),
    ({}, {"filename": "ETH-USDT-SWAP-candlesticks-2025-10-23.zip/../../x.zip"}),
    ({}, {"filename": "BTC-USDT-SWAP-candlesticks-2025-10-23.zip"}),
    ({}, {"filename": "ETH-USDT-SWAP-candlesticks-2025-13-45.zip"}),
    ({}, {"dateTs": str(FIRST_BAR + 86_400_000)}),
    ({}, {"url": "file:///etc/passwd"}),
])
def test_hostile_listing_entries_are_refused_with_a_warning(caplog, kwargs, entry):
    with caplog.at_level(logging.WARNING, logger="feeder.archive"):
        assert parse_listing(listing(entries=[listing_entry(**entry)], **kwargs), inst_type="SWAP",
                             aggregation=DAILY) == []
    assert "refused" in caplog.text


def test_archive_path_refuses_unsafe_names(tmp_path):
    assert archive_path(cache_dir=tmp_path, file=eth_file()) == \
        tmp_path / "files" / "daily" / "2025-10-23" / "ETH-USDT-SWAP-candlesticks-2025-10-23.zip"
    bad = eth_file().__dict__ | {"period": "../../x"}
    with pytest.raises(ValueError, match="refusing to store"):
        archive_path(cache_dir=tmp_path, file=ArchiveFile(**bad))


def test_size_check_accepts_either_megabyte():
    assert size_plausible(1_000_000, 1.0) and size_plausible(1_048_576, 1.0) and size_plausible(5_000, 0.0)
    assert not size_plausible(500_000, 1.0) and size_plausible(123, None)


def test_rate_limit_of_the_listing_is_okxs():
    assert RATE_LIMITS[ARCHIVE_LISTING] == (5, 2.0)



# --------------------------------------------------------------------------- against the simulator
# The simulator's clock stands at 2024-03-25 08:00 UTC+8: February 2024 is fully published (monthly
# files), March is published daily up to 2024-03-23 (T+2). Its history starts 2024-02-20, and a
# dozen swaps keep the archive small. The listing's real rate limit (5 per 2 s) is on.

SIM_CLOCK = "2024-03-25T00:00:00Z"
FAMILIES = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT", "ADA-USDT", "AVAX-USDT", "LINK-USDT",
            "DOT-USDT", "TRX-USDT", "MATIC-USDT", "LTC-USDT"]
BTC = "BTC-USDT-SWAP"


@pytest.fixture(scope="module")
def sim():
    with okxsim.Simulator(seed=7, clock_start=SIM_CLOCK, speed=1, history_start="2024-02-20", n_swaps=12) as s:
        yield s


@pytest.fixture(scope="module")
def rate_state_dir(tmp_path_factory):
    """One request window for every client of the module, as Snakemake jobs share one (exchange.rate_state_dir)."""
    return tmp_path_factory.mktemp("rate-state")


@pytest.fixture()
def make_client(sim, rate_state_dir):
    made: list[OkxRestClient] = []

    def make(**kwargs) -> OkxRestClient:
        kwargs.setdefault("backoff_base_s", 0.01)
        # the simulator builds the files a listing names before answering: on a loaded machine that
        # can outlast the default timeout, and a timed-out request asked again counts twice
        kwargs.setdefault("timeout_s", 60)
        made.append(OkxRestClient(base_url=sim.rest, ca_file=sim.ca_file, rate_state_dir=rate_state_dir, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()
    sim.clear_faults()


def listing_requests(sim, since: int) -> list:
    return sim.requests("market-data-history")[since:]


def test_listing_monthly_for_published_months_daily_for_the_rest_chunked_batched_and_cached(sim, make_client, tmp_path):
    """Feb 2024 is published: one monthly listing per 10 families; March daily in <= 20-day chunks up
    to the last published day; a re-run lists only March (February comes from the cache)."""
    before = len(sim.requests("market-data-history"))
    args = dict(inst_type="SWAP", first=dt.date(2024, 2, 1), last=dt.date(2024, 3, 31), names=FAMILIES,
                now_ms=sim.clock.now_ms(), cache_dir=tmp_path)
    files = list_candle_files(make_client(), **args)
    sent = listing_requests(sim, before)
    assert all(r.status == 200 for r in sent), "a listing request hit the exchange's limit"
    shapes = sorted((r.params["dateAggrType"], r.params["begin"], r.params["end"],
                     len(r.params["instFamilyList"].split(","))) for r in sent)
    mar = {d: str(period_span_ms(aggregation=DAILY, period=f"2024-03-{d:02d}")[0]) for d in (1, 20, 21, 23)}
    feb = str(period_span_ms(aggregation=MONTHLY, period="2024-02")[0])
    assert shapes == sorted([("monthly", feb, feb, 10), ("monthly", feb, feb, 2),
                             ("daily", mar[1], mar[20], 10), ("daily", mar[1], mar[20], 2),
                             ("daily", mar[21], mar[23], 10), ("daily", mar[21], mar[23], 2)])
    btc = [(f.aggregation, f.period) for f in files if f.inst == BTC]
    assert btc == [("monthly", "2024-02")] + [("daily", f"2024-03-{d:02d}") for d in range(1, 24)]
    assert {f.inst_family for f in files} <= set(FAMILIES) and len({f.inst for f in files}) >= 10
    # the re-run: February from the cache, only March is listed again
    again = len(sim.requests("market-data-history"))
    assert list_candle_files(make_client(), **args) == files
    assert {r.params["dateAggrType"] for r in listing_requests(sim, again)} == {"daily"}
    assert len(listing_requests(sim, again)) == 4
    assert all(r.status == 200 for r in listing_requests(sim, before))
    assert sim.max_requests_per_window("market-data-history", 2.0, status=None) <= 5


def test_listing_every_instrument_discovers_names_daily_then_lists_months_in_batches(sim, make_client, tmp_path):
    before = len(sim.requests("market-data-history"))
    files = list_candle_files(make_client(), inst_type="SWAP", first=dt.date(2024, 2, 25), last=dt.date(2024, 3, 2),
                              names=None, now_ms=sim.clock.now_ms(), cache_dir=tmp_path)
    sent = listing_requests(sim, before)
    anys = [r for r in sent if r.params.get("instFamilyList") == "ANY"]
    assert {r.params["dateAggrType"] for r in anys} == {"daily"}, "ANY is only valid with daily listings"
    assert len(anys) == 3  # February in two <= 20-day chunks, March 1-2
    monthly = [r for r in sent if r.params["dateAggrType"] == "monthly"]
    assert len(monthly) == 2 and all(len(r.params["instFamilyList"].split(",")) <= 10 for r in monthly)
    asked = {name for r in monthly for name in r.params["instFamilyList"].split(",")}
    assert BTC in {f.inst for f in files if f.aggregation == MONTHLY and f.period == "2024-02"}
    assert {f.inst_family for f in files if f.aggregation == MONTHLY} == asked and len(asked) > 10
    assert {(f.period) for f in files if f.inst == BTC and f.aggregation == DAILY} == {"2024-03-01", "2024-03-02"}
    again = len(sim.requests("market-data-history"))
    list_candle_files(make_client(), inst_type="SWAP", first=dt.date(2024, 2, 25), last=dt.date(2024, 3, 2),
                      names=None, now_ms=sim.clock.now_ms(), cache_dir=tmp_path)
    assert [r.params["dateAggrType"] for r in listing_requests(sim, again)] == ["daily"]


def test_listing_retries_throttling_then_gives_up_saying_what_to_do(sim, make_client, tmp_path):
    args = dict(inst_type="SWAP", first=dt.date(2024, 3, 4), last=dt.date(2024, 3, 4), names=["BTC-USDT"],
                now_ms=sim.clock.now_ms(), cache_dir=tmp_path)
    sim.fail_next("market-data-history", 2, status=429)
    client = make_client()
    assert [f.filename for f in list_candle_files(client, **args)] == ["BTC-USDT-SWAP-candlesticks-2024-03-04.zip"]
    assert client.retries == 2
    sim.fail_next("market-data-history", 10, status=500)
    with pytest.raises(ArchiveUnavailableError, match=r"could not be obtained.*Run the same command again later.*"
                                                      r"history\.source: rest"):
        list_candle_files(make_client(max_retries=2), **args)


def test_a_file_the_archive_lacks_is_not_listed(sim, make_client, tmp_path):
    sim.archive_missing("ETH-USDT-SWAP", "2024-03-05")
    files = list_candle_files(make_client(), inst_type="SWAP", first=dt.date(2024, 3, 4), last=dt.date(2024, 3, 6),
                              names=["ETH-USDT"], now_ms=sim.clock.now_ms(), cache_dir=tmp_path)
    assert [f.period for f in files] == ["2024-03-04", "2024-03-06"]


@pytest.fixture(scope="module")
def march_files(sim, tmp_path_factory, rate_state_dir):
    """Daily files of BTC and ETH dated 2024-03-04 and -05 (they hold UTC day 2024-03-04), listed once."""
    with OkxRestClient(base_url=sim.rest, ca_file=sim.ca_file, rate_state_dir=rate_state_dir,
                       timeout_s=60) as client:
        files = list_candle_files(client, inst_type="SWAP", first=dt.date(2024, 3, 4), last=dt.date(2024, 3, 5),
                                  names=["BTC-USDT", "ETH-USDT"], now_ms=sim.clock.now_ms(),
                                  cache_dir=tmp_path_factory.mktemp("listings"))
    assert len(files) == 4
    return files


def download(sim, files, cache_dir, **kwargs):
    kwargs.setdefault("backoff_base_s", 0.01)
    kwargs.setdefault("progress", None)
    return download_files(files, cache_dir=cache_dir, ca_file=sim.ca_file, **kwargs)


def one(files, inst=BTC, period="2024-03-04"):
    return next(f for f in files if f.inst == inst and f.period == period)


def test_downloads_give_the_exchanges_candles_and_a_second_call_downloads_nothing(sim, march_files, tmp_path):
    lines: list[str] = []
    result = download(sim, march_files, tmp_path, concurrency=2, progress=lines.append)
    assert set(result.paths) == set(march_files) and not result.missing and not result.failed
    assert result.requests == 4 and result.bytes == sum(p.stat().st_size for p in result.paths.values())
    assert "4/4 files" in lines[-1] and "MB/s" in lines[-1]
    assert not list(tmp_path.rglob("*.part"))
    day = dt.date(2024, 3, 4)
    records, covered, refused = archive_minutes(files=march_files, paths=result.paths, day=day, recv_ts=7)
    for inst in (BTC, "ETH-USDT-SWAP"):
        assert [r["data"] for r in records if r["inst"] == inst] == sim.market.candles_1m(inst, day.isoformat())
        assert covered[inst] == [list(day_bounds_ms(day))]
    assert refused == {} and {r["source"] for r in records} == {"archive"}
    again = download(sim, march_files, tmp_path)
    assert again.requests == 0 and again.paths == result.paths


@pytest.mark.parametrize("status", [429, 403, 500])
def test_throttling_and_server_errors_are_retried(sim, march_files, tmp_path, status):
    file = one(march_files)
    sim.archive_error(2, status, inst_id=BTC, period="2024-03-04")
    result = download(sim, [file], tmp_path)
    sim.clear_faults()
    assert list(result.paths) == [file] and result.requests == 3


def test_gives_up_after_its_retries_with_the_reason(sim, march_files, tmp_path):
    file = one(march_files)
    sim.archive_error(10, 500, inst_id=BTC, period="2024-03-04")
    result = download(sim, [file], tmp_path, retries=2)
    sim.clear_faults()
    assert not result.paths and result.requests == 3
    assert "HTTP 500 (gave up after 2 retries)" in result.failed[file]
    assert not list(tmp_path.rglob("*.zip"))


def test_a_404_is_asked_once_more_then_reported_missing(sim, march_files, tmp_path):
    file = one(march_files)
    sim.archive_error(1, 404, inst_id=BTC, period="2024-03-04")
    assert list(download(sim, [file], tmp_path / "a").paths) == [file]
    sim.archive_error(2, 404, inst_id=BTC, period="2024-03-04")
    result = download(sim, [file], tmp_path / "b")
    sim.clear_faults()
    assert result.requests == 2 and "HTTP 404 twice" in result.missing[file] and not result.paths


def test_a_truncated_download_is_deleted_and_downloaded_again(sim, march_files, tmp_path):
    file = one(march_files)
    sim.archive_truncated(1, inst_id=BTC, period="2024-03-04")
    result = download(sim, [file], tmp_path)
    sim.clear_faults()
    path = result.paths[file]
    assert result.requests == 2 and result.bytes > path.stat().st_size
    assert zipfile.ZipFile(path).testzip() is None


def test_a_cut_download_resumes_with_range(sim, march_files, tmp_path):
    file = one(march_files)
    whole = download(sim, [file], tmp_path / "a").paths[file].read_bytes()
    target = archive_path(cache_dir=tmp_path / "b", file=file)
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(whole[:1000])
    before = len(sim.requests("archive-file"))
    result = download(sim, [file], tmp_path / "b")
    assert result.requests == 1 and result.bytes == len(whole) - 1000
    assert target.read_bytes() == whole
    assert [r.status for r in sim.requests("archive-file")[before:]] == [206]


def test_two_jobs_never_download_the_same_file_at_once(sim, march_files, tmp_path):
    results = []
    jobs = [threading.Thread(target=lambda: results.append(download(sim, march_files, tmp_path, concurrency=2)))
            for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    assert sum(r.requests for r in results) == 4
    assert all(set(r.paths) == set(march_files) for r in results)


def test_a_file_of_another_format_is_refused_and_covers_nothing(sim, march_files, tmp_path):
    day = dt.date(2024, 3, 4)
    lo, hi = day_bounds_ms(day)
    sim.archive_header("ETH-USDT-SWAP", "2024-03-05", "instrument_name,open,high,low,close,volume")
    minute = lo + 600 * MINUTE
    sim.archive_unconfirmed(BTC, "2024-03-04", minute)
    result = download(sim, march_files, tmp_path)
    sim.clear_faults()
    records, covered, refused = archive_minutes(files=march_files, paths=result.paths, day=day, recv_ts=7)
    assert list(refused) == ["ETH-USDT-SWAP-candlesticks-2024-03-05.zip"]
    assert "line 1: expected the header" in refused["ETH-USDT-SWAP-candlesticks-2024-03-05.zip"]
    eth_lo = period_span_ms(aggregation=DAILY, period="2024-03-05")[0]
    assert covered["ETH-USDT-SWAP"] == [[lo, eth_lo]], "the refused file's 8 hours are left to REST"
    assert covered[BTC] == [[lo, minute], [minute + MINUTE, hi]], "an unconfirmed bar is left to REST"
    assert next(r for r in records if r["inst"] == BTC and r["ts"] == minute)["data"][8] == "0"


def test_listing_ranges_respect_the_20_day_and_20_month_limits():
    from feeder.archive import _day_runs, _month_runs

    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(45)] + [dt.date(2024, 3, 1)]
    assert [(a.isoformat(), b.isoformat()) for a, b in _day_runs(days)] == [
        ("2024-01-01", "2024-01-20"), ("2024-01-21", "2024-02-09"), ("2024-02-10", "2024-02-14"),
        ("2024-03-01", "2024-03-01")]
    months = [dt.date(2022 + i // 12, i % 12 + 1, 1) for i in range(25)]
    runs = _month_runs(months[:24] + months[25:])
    assert [len(r) for r in runs] == [20, 4] and runs[1][-1] == dt.date(2023, 12, 1)


def test_progress_is_reported_every_few_seconds_with_rate_and_eta(tmp_path):
    """A slow CDN (100 kB/s per download): interim lines with files done, MB, MB/s and an ETA."""
    with okxsim.Simulator(seed=7, clock_start=SIM_CLOCK, speed=1, history_start="2024-02-20", n_swaps=12,
                          archive_bandwidth_bps=100_000) as slow:
        with OkxRestClient(base_url=slow.rest, ca_file=slow.ca_file) as client:
            files = list_candle_files(client, inst_type="SWAP", first=dt.date(2024, 3, 4), last=dt.date(2024, 3, 5),
                                      names=["BTC-USDT"], now_ms=slow.clock.now_ms(), cache_dir=tmp_path)
        lines: list[str] = []
        result = download(slow, files, tmp_path, concurrency=1, progress=lines.append, progress_every_s=0.2)
    assert len(result.paths) == 2 and result.seconds > 0.8
    interim = lines[:-1]
    assert len(interim) >= 2 and all("MB/s, ETA " in line for line in interim)
    assert any(line.startswith("archive downloads: 1/2 files") for line in interim)
    assert lines[-1].startswith("archive downloads: 2/2 files") and lines[-1].endswith("done")


def test_spot_is_listed_by_instid_and_its_files_hold_the_rest_candles(sim, make_client, tmp_path):
    before = len(sim.requests("market-data-history"))
    files = list_candle_files(make_client(), inst_type="SPOT", first=dt.date(2024, 3, 4), last=dt.date(2024, 3, 5),
                              names=["BTC-USDT"], now_ms=sim.clock.now_ms(), cache_dir=tmp_path)
    (sent,) = listing_requests(sim, before)
    assert sent.params["instIdList"] == "BTC-USDT" and "instFamilyList" not in sent.params
    assert [(f.inst, f.inst_family, f.period) for f in files] == [("BTC-USDT", "", "2024-03-04"),
                                                                  ("BTC-USDT", "", "2024-03-05")]
    result = download(sim, files, tmp_path)
    records, covered, _ = archive_minutes(files=files, paths=result.paths, day=dt.date(2024, 3, 4), recv_ts=1)
    assert [r["data"] for r in records] == sim.market.candles_1m("BTC-USDT", "2024-03-04")


# --------------------------------------------------------------------------- the archive stage (rule `archive`)


def _stage(sim, tmp_path, rate_state_dir, *, members=(BTC, "ETH-USDT-SWAP"), day=dt.date(2024, 3, 4), **kwargs):
    import polars as pl

    from feeder.archive import run_archive

    universe = tmp_path / "universe.parquet"
    pl.DataFrame({"day": [day] * len(members), "inst": list(members), "rank": list(range(1, len(members) + 1)),
                  "member": [True] * len(members)}).write_parquet(universe)
    out, summary = tmp_path / "raw" / "archive" / f"{day}.jsonl", tmp_path / "work" / "archive" / f"{day}.json"
    exchange = {"rest_url": sim.rest, "ca_file": sim.ca_file, "rate_state_dir": str(rate_state_dir)}
    result = run_archive(exchange=exchange, day=day, universe_path=universe, inst_type="SWAP",
                         cache_dir=tmp_path / "cache", concurrency=2, out_path=out, summary_path=summary,
                         **{"retries": 2, "backoff_base_s": 0.01, **kwargs})
    return result, out


def test_the_archive_stage_writes_the_members_bars_of_the_utc_day(sim, rate_state_dir, tmp_path):
    """Two UTC+8 daily files make one UTC day: the shard holds every candle the exchange has for the
    members that day (the same strings REST serves), and the summary says the whole day is settled."""
    from feeder.shards import read_records

    summary, out = _stage(sim, tmp_path, rate_state_dir)
    lo, hi = day_bounds_ms(dt.date(2024, 3, 4))
    got = {(r["inst"], r["ts"]): r["data"] for r in read_records([out])}
    want = {(inst, int(row[0])): row for inst in (BTC, "ETH-USDT-SWAP")
            for row in sim.market.candles_1m(inst, "2024-03-04")}
    assert got == want and {r["source"] for r in read_records([out])} == {"archive"}
    assert summary["instruments"][BTC]["covered"] == [[lo, hi]]
    assert summary["instruments"][BTC]["files"] == ["BTC-USDT-SWAP-candlesticks-2024-03-04.zip",
                                                    "BTC-USDT-SWAP-candlesticks-2024-03-05.zip"]


def test_a_throttled_cdn_fails_the_day_and_a_rerun_downloads_only_the_rest(sim, rate_state_dir, tmp_path):
    """A CDN that keeps answering 403 for one file: the other files are kept, the day fails with the
    file, what the CDN said and what to do, no shard is written; the re-run downloads one file."""
    from feeder.archive import ArchiveIncomplete

    sim.archive_error(50, 403, inst_id="ETH-USDT-SWAP", period="2024-03-05")
    before = len(sim.requests("archive-file"))
    with pytest.raises(ArchiveIncomplete, match=r"ETH-USDT-SWAP-candlesticks-2024-03-05\.zip.*403(.|\n)*again"):
        _stage(sim, tmp_path, rate_state_dir)
    assert not (tmp_path / "raw" / "archive" / "2024-03-04.jsonl").exists()
    sim.clear_faults()
    middle = len(sim.requests("archive-file"))
    assert middle - before >= 3 + 3, "the 403 was not retried"
    summary, out = _stage(sim, tmp_path, rate_state_dir)
    (again,) = sim.requests("archive-file")[middle:]
    assert again.params["path"].endswith("/ETH-USDT-SWAP-candlesticks-2024-03-05.zip")
    assert out.exists() and summary["instruments"]["ETH-USDT-SWAP"]["bars"] > 0


def test_listing_throttled_by_429_is_retried_and_a_file_missing_at_the_cdn_is_left_to_rest(sim, rate_state_dir,
                                                                                         tmp_path):
    sim.fail_next("market-data-history", 2, status=429)
    sim.archive_error(2, 404, inst_id=BTC, period="2024-03-05")
    summary, _ = _stage(sim, tmp_path, rate_state_dir, members=(BTC,))
    lo, hi = day_bounds_ms(dt.date(2024, 3, 4))
    sixteen = period_span_ms(aggregation=DAILY, period="2024-03-05")[0]
    assert summary["missing_at_cdn"] == ["BTC-USDT-SWAP-candlesticks-2024-03-05.zip"]
    assert summary["instruments"][BTC]["covered"] == [[lo, sixteen]], "REST is asked for 16:00-24:00"
    assert [r.status for r in sim.requests("market-data-history")[-3:]][:2] == [429, 429]
