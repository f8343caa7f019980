"""OKX's historical-data archive (feeder.archive): reading files, UTC+8 dates, listing and downloads.

File tests build their zips here, from the archive's header and a real row (the first bar of
ETH-USDT-SWAP's file dated 2025-10-23 = 2025-10-22 16:00 UTC). Listing and download tests run
against the local simulator over 127.0.0.1 (okxsim), with the faults the real archive shows.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import time
import zipfile
from pathlib import Path

import pytest

from feeder.archive import (ARCHIVE_LISTING, CANDLE_HEADER, DAILY, MONTHLY, ArchiveFile, ArchiveFormatError,
                            archive_minutes, archive_path, parse_listing, period_span_ms, read_candle_file,
                            size_plausible, utc8_dates_of_utc_day)
from feeder.rest import RATE_LIMITS

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
    return f"{inst},3839.44,3843.58,3836.71,{close},23503.2,2350.32,9024127.30277,{FIRST_BAR + minute * MINUTE},{confirm}"


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


def test_a_monthly_file_reads_fast(tmp_path):
    """A month of 1-minute bars (~43,000 rows): every row checked, in well under a second."""
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
    assert seconds < 2.0


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


_ = io  # (kept for the simulator tests below)
