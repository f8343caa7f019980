"""Archive backfill end to end: sim archive files -> Snakemake -> Qlib, against REST alone.

* The same day built from OKX's archive (history.source archive+rest) and from REST alone
  (history.source rest) gives byte-identical Qlib bins: the archive's strings are the exchange's
  values, parsed by the same cleaning code. The day is the last of a month: its first 16 hours
  come from the month's monthly file, its last 8 from the next month's first daily file (the
  archive's days are UTC+8 days). One member's daily file is missing from the archive: those
  minutes are repaired from REST, and the coverage table says which bars came from where.
* Survivorship: a coin delisted before the project recorded any instrument list is known from
  the archive listing, ranked by the turnover of its archive candles, is a member of the top N
  on its days, and its bars (from the archive) are in Qlib.
* Spot: a universe of spot pairs (no settlement currency, no contract type) builds from the
  archive and REST.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import yaml

import okxsim
from feeder.publish import MANIFEST_NAME
from harness.processes import snakemake, write_config

pytestmark = pytest.mark.e2e

DAY = "2024-02-29"          # last day of February: the monthly file of February, then March's first daily file
CLOCK = "2024-03-02T20:00:00Z"  # February and the UTC+8 day 2024-03-01 are published (T+2); 2024-03-02 is not yet


def _build(tmp: Path, sim: okxsim.Simulator, *, source: str, size: int, start: str = DAY, end: str = DAY,
           universe: dict | None = None, targets: tuple[str, ...] = ()) -> Path:
    """Build ``start..end`` in ``tmp``; by default only what the assertions read: the published
    Qlib dataset and the coverage table (the quality report is another test's subject).

    The ranking uses the one day before (window_days 1): the ranked metric, from the archive or
    REST, is the same code path for any window, and each further day is another daily_metrics job."""
    cfg = tmp / "config.yaml"
    config = write_config(cfg, endpoints=sim, data_dir=tmp, start=start, end=end, size=size,
                          frequencies=["1min", "day"], channels=["candle1m"])
    config["history"] = {"source": source, "download_concurrency": 4}
    config["universe"]["window_days"] = 1
    config["universe"].update(universe or {})
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    targets = targets or (f"{tmp}/work/{MANIFEST_NAME}", f"{tmp}/work/coverage.parquet")
    snakemake(cfg, "--directory", str(tmp), *targets, cores=2, log_path=tmp / "snakemake.log")
    return tmp


def _bins(qlib_dir: Path) -> dict[str, bytes]:
    root = qlib_dir.resolve()
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and not p.name.startswith(".feeder")}


def test_archive_and_rest_give_byte_identical_qlib_bins(tmp_path):
    with okxsim.Simulator(seed=7, clock_start=CLOCK, speed=0, history_start="2024-02-01",
                          history_limit_max=300) as sim:
        archive_dir = tmp_path / "archive"
        universe = f"{archive_dir}/work/universe/{DAY}.parquet"
        _build(archive_dir, sim, source="archive+rest", size=4, targets=(universe,))
        members = pl.read_parquet(universe).filter("member")["inst"].to_list()
        # the archive lacks one member's file of the UTC+8 day 2024-03-01 (16:00-24:00 UTC of Feb 29)
        missing_inst = members[-1]
        sim.archive_missing(missing_inst, "2024-03-01")
        archive = _build(archive_dir, sim, source="archive+rest", size=4)
        rest = _build(tmp_path / "rest", sim, source="rest", size=4)
        archive_requests = [r for r in sim.requests() if r.endpoint == "archive-file"]
        rest_members = pl.read_parquet(rest / "work" / "universe" / f"{DAY}.parquet").filter("member")["inst"]

    assert rest_members.to_list() == members
    assert archive_requests, "the archive build downloaded no archive file"
    want = _bins(rest / "qlib")
    assert any(name.endswith(".1min.bin") for name in want)
    assert _bins(archive / "qlib") == want

    coverage = pl.read_parquet(archive / "work" / "coverage.parquet").filter("member")
    mine = coverage.filter(pl.col("inst") == missing_inst).row(0, named=True)
    others = coverage.filter(pl.col("inst") != missing_inst)
    # everything else of the day is in the archive: February's monthly file and March 1's daily file
    assert int(others["from_archive"].sum()) > 0 and int(others["from_rest"].sum()) == 0
    # the missing file's 8 hours were repaired from REST, and the coverage table says so
    assert mine["from_rest"] > 0 and mine["from_archive"] > 0, mine
    assert mine["from_rest"] <= 8 * 60
    assert (coverage["expected"] == coverage["from_ws"] + coverage["from_rest"] + coverage["from_archive"]
            + coverage["missing"]).all()
    assert int(coverage["missing"].sum()) == int(coverage["missing_exchange_none"].sum())


def test_a_coin_delisted_before_the_first_snapshot_is_ranked_from_the_archive(tmp_path):
    market = okxsim.Market(seed=7, history_start="2024-02-01", clock_start=CLOCK)
    (gone,) = [e for e in market.lifecycle() if e["delistTime"]]
    delist_day = dt.datetime.fromtimestamp(gone["delistTime"] / 1000, dt.timezone.utc).date()
    day = (delist_day - dt.timedelta(days=2)).isoformat()
    at = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp() * 1000) - 1
    listed = [i["instId"] for i in market.instruments(at, "SWAP")
              if i["instId"].endswith("-USDT-SWAP") and i.get("instCategory") == "1"]

    def turnover(inst: str) -> float:
        return market.day_quote_volume(inst, (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat())

    # a small field: the delisted coin plus two quieter ones, so it ranks first of a top 3
    quieter = sorted((i for i in listed if i != gone["instId"] and 0 < turnover(i) < turnover(gone["instId"])),
                     key=turnover, reverse=True)[:2]
    bases = {i.split("-")[0] for i in listed} - {i.split("-")[0] for i in [gone["instId"], *quieter]}
    with okxsim.Simulator(seed=7, clock_start=CLOCK, speed=0, history_start="2024-02-01",
                          history_limit_max=300) as sim:
        assert gone["instId"] not in {i["instId"] for i in sim.market.instruments(sim.sim_now_ms(), "SWAP")}
        built = _build(tmp_path, sim, source="archive+rest", size=3, start=day, end=day,
                       universe={"exclude_bases": sorted(bases)})
        truth = sim.market.candles_1m(gone["instId"], day)

    spans = [line.split("\t") for line in (built / "qlib" / "instruments" / "top3.txt").read_text().splitlines()]
    assert [s for s in spans if s[0] == gone["instId"]] == [[gone["instId"], f"{day} 00:00:00", f"{day} 23:59:00"]]
    close = Path(built / "qlib" / "features" / gone["instId"].lower() / "close.1min.bin")
    assert close.exists()
    coverage = pl.read_parquet(built / "work" / "coverage.parquet").filter(pl.col("inst") == gone["instId"])
    assert coverage["from_archive"].to_list() == [len(truth)]


def test_a_spot_universe_builds_from_the_archive_and_rest(tmp_path):
    with okxsim.Simulator(seed=7, clock_start=CLOCK, speed=0, history_start="2024-02-01",
                          history_limit_max=300) as sim:
        built = _build(tmp_path, sim, source="archive+rest", size=3,
                       universe={"inst_type": "SPOT", "settle_ccy": None, "ct_type": None})
        members = pl.read_parquet(built / "work" / "universe" / f"{DAY}.parquet").filter("member")["inst"].to_list()
        truth = {inst: sim.market.candles_1m(inst, DAY) for inst in members}
    assert len(members) == 3 and all(not inst.endswith("-SWAP") for inst in members)
    coverage = pl.read_parquet(built / "work" / "coverage.parquet").filter("member")
    assert {row["inst"]: row["from_archive"] + row["from_rest"] for row in coverage.iter_rows(named=True)} == \
        {inst: len(rows) for inst, rows in truth.items()}
    assert int(coverage["from_archive"].sum()) > 0
    spans = (built / "qlib" / "instruments" / "top3.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in spans) == sorted(members)
