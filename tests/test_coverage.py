"""Coverage: every expected minute is present (by source) or missing with a reason."""

import datetime as dt

import polars as pl

from feeder.coverage import coverage_day

DAY = dt.date(2024, 3, 4)
START = int(dt.datetime(2024, 3, 4, tzinfo=dt.timezone.utc).timestamp() * 1000)
M = 60_000


def bars(inst: str, minutes: range, source: str) -> pl.DataFrame:
    return pl.DataFrame({"inst": inst, "ts": [START + m * M for m in minutes], "source": source}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms")))


def instruments(**listing) -> pl.DataFrame:
    rows = [{"instId": i, "listTime": lt, "expTime": et} for i, (lt, et) in listing.items()]
    return pl.DataFrame(rows, schema={"instId": pl.Utf8, "listTime": pl.Utf8, "expTime": pl.Utf8})


def test_each_missing_minute_gets_exactly_one_reason():
    frame = coverage_day(
        day=DAY,
        bars=pl.concat([bars("A", range(0, 600), "rest"), bars("A", range(600, 1430), "ws"),
                        bars("B", range(0, 100), "rest"), bars("C", range(0, 50), "ws")]),
        members=["A", "B", "D", "E"],
        instruments=instruments(
            A=(None, None),
            B=(None, None),
            C=(None, None),
            D=(str(START + 720 * M), None),  # listed at noon: 720 minutes expected
            E=(None, None),  # delisted since: OKX answers 51001 for its history
        ),
        attempted={"A": [[START + 1430 * M, START + 1440 * M]], "D": [[START, START + 1440 * M]]},
        failed={"B"},
        unknown={"E"},
    )
    rows = {r["inst"]: r for r in frame.to_dicts()}
    a, b, c, d, e = rows["A"], rows["B"], rows["C"], rows["D"], rows["E"]
    assert (a["expected"], a["from_rest"], a["from_ws"], a["missing_exchange_none"]) == (1440, 600, 830, 10)
    assert (b["missing"], b["missing_fetch_failed"]) == (1340, 1340)
    assert (c["member"], c["missing_not_attempted"]) == (False, 1390)
    assert (d["expected"], d["missing_exchange_none"]) == (720, 720)
    assert (e["missing"], e["missing_unknown_to_exchange"], e["missing_fetch_failed"]) == (1440, 1440, 0)
    for r in rows.values():
        assert r["from_ws"] + r["from_rest"] + r["from_archive"] + r["missing"] == r["expected"]
        assert r["missing"] == (r["missing_exchange_none"] + r["missing_unknown_to_exchange"]
                                + r["missing_fetch_failed"] + r["missing_not_attempted"])


def test_delisting_time_ends_the_expected_minutes():
    frame = coverage_day(day=DAY, bars=bars("X", range(0, 180), "ws"), members=["X"],
                         instruments=instruments(X=(None, str(START + 180 * M))), attempted={}, failed=set())
    assert frame.select("expected", "missing").row(0) == (180, 0)


def test_merge_reads_day_tables_written_before_a_reason_column_existed(tmp_path):
    """Per-day tables built by an older version lack `missing_unknown_to_exchange`: still merged."""
    from feeder.coverage import COVERAGE_SCHEMA, merge_coverage

    new = coverage_day(day=DAY, bars=bars("X", range(0, 1400), "ws"), members=["X"],
                       instruments=instruments(X=(None, None)), attempted={}, failed=set(), unknown={"X"})
    old = new.with_columns(pl.lit(DAY + dt.timedelta(days=1)).alias("day")).drop("missing_unknown_to_exchange")
    old.write_parquet(tmp_path / "old.parquet")
    new.write_parquet(tmp_path / "new.parquet")
    merged = merge_coverage(day_paths=[tmp_path / "old.parquet", tmp_path / "new.parquet"],
                            out_parquet=tmp_path / "coverage.parquet", out_gaps_csv=tmp_path / "gaps.csv")
    assert merged.schema == pl.Schema(COVERAGE_SCHEMA)
    assert merged.sort("day")["missing_unknown_to_exchange"].to_list() == [40, 0]


def test_archive_bars_and_minutes_an_archive_file_leaves_out(tmp_path):
    """Bars from the archive count as `from_archive`; a minute inside the span of an archive file
    that was read, with no bar, is one without trades (`missing_exchange_none`), as the backfill's
    summary records (`archive_settled`); minutes after it, REST was asked for."""
    import json

    from feeder.coverage import build_coverage_day

    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    pl.concat([bars("A", range(0, 950), "archive").filter(pl.col("ts") != START + 5 * M),
               bars("A", range(960, 1440), "rest")]).drop("inst").write_parquet(clean_dir / "A.parquet")
    pl.DataFrame({"day": [DAY], "inst": ["A"], "rank": [1], "member": [True]}).write_parquet(tmp_path / "u.parquet")
    instruments(A=(None, None)).write_parquet(tmp_path / "i.parquet")
    (tmp_path / "b.json").write_text(json.dumps({
        "attempted": {"A": [[START + 960 * M, START + 1440 * M]]},
        "archive_settled": {"A": [[START, START + 960 * M]]}}))
    frame = build_coverage_day(day=DAY, clean_dir=clean_dir, universe_path=tmp_path / "u.parquet",
                               instruments_path=tmp_path / "i.parquet", backfill_summary_path=tmp_path / "b.json",
                               out_path=tmp_path / "c.parquet")
    row = frame.row(0, named=True)
    assert (row["from_archive"], row["from_rest"], row["from_ws"]) == (949, 480, 0)
    assert (row["missing"], row["missing_exchange_none"]) == (11, 11)
