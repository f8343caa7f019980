"""Point-in-time universes: ranking uses only days before D; eligibility follows config."""

import datetime as dt
import random
import json
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from feeder.universe import daily_metric_frame, eligible, instruments_frame, members, rank_day, rank_live

FIXTURES = Path(__file__).parent / "fixtures" / "okx-samples"
UNIVERSE_CFG = {"size": 2, "inst_type": "SWAP", "settle_ccy": "USDT", "ct_type": "linear",
                "inst_category": ["1"], "exclude_bases": ["USDC"]}


def daily(rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"inst": pl.Utf8, "day": pl.Utf8, "metric": pl.Float64}, orient="row").with_columns(
        pl.col("day").str.to_date()
    )


def test_real_instrument_payloads_are_typed_and_filtered():
    items = json.loads((FIXTURES / "rest_instruments_swap_2025.json").read_text())["data"]
    items += json.loads((FIXTURES / "rest_instruments_swap.json").read_text())["data"]
    frame = instruments_frame(items)
    assert set(frame["base"].to_list()) >= {"BTC", "ETH", "UNI", "SHIB"}
    kept = set(eligible(frame, UNIVERSE_CFG)["instId"].to_list())
    # inverse (USD-margined) swaps are out; linear USDT swaps are in
    assert "BTC-USD-SWAP" not in kept and "UNI-USD-SWAP" not in kept
    assert {"BTC-USDT-SWAP", "ETH-USDT-SWAP"} <= kept


def test_instcategory_and_stablecoin_exclusion():
    items = [
        {"instId": "BTC-USDT-SWAP", "instType": "SWAP", "settleCcy": "USDT", "ctType": "linear", "instCategory": "1"},
        {"instId": "TSLA-USDT-SWAP", "instType": "SWAP", "settleCcy": "USDT", "ctType": "linear", "instCategory": "3"},
        {"instId": "USDC-USDT-SWAP", "instType": "SWAP", "settleCcy": "USDT", "ctType": "linear", "instCategory": "1"},
    ]
    assert eligible(instruments_frame(items), UNIVERSE_CFG)["instId"].to_list() == ["BTC-USDT-SWAP"]


def test_rank_uses_trailing_window_before_the_day():
    frame = daily([
        ("A", "2024-03-01", 10.0), ("A", "2024-03-02", 10.0),
        ("B", "2024-03-01", 30.0), ("B", "2024-03-02", 1.0),
        ("C", "2024-03-02", 12.0),
        ("C", "2024-03-03", 1e12),  # day D itself: must not count
    ])
    ranking = rank_day(frame, day=dt.date(2024, 3, 3), size=2, window_days=2)
    assert ranking.columns == ["day", "inst", "rank", "metric", "days_observed", "member"]
    assert ranking["inst"].to_list() == ["B", "C", "A"]  # B mean 15.5 > C 12 > A 10
    assert members(ranking) == ["B", "C"]
    assert ranking.filter(pl.col("inst") == "B")["days_observed"].item() == 2


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCDEF"), st.integers(0, 9), st.floats(0, 1e9)), min_size=1),
       st.integers(0, 9), st.floats(0, 1e12))
def test_no_look_ahead_changing_day_d_and_later_does_not_change_rank(rows, future_offset, new_value):
    base = dt.date(2024, 3, 1)
    frame = daily([(i, (base + dt.timedelta(days=d)).isoformat(), v) for i, d, v in rows]).unique(["inst", "day"])
    day = base + dt.timedelta(days=5)
    before = rank_day(frame, day=day, size=3, window_days=7)
    altered = frame.with_columns(
        metric=pl.when(pl.col("day") >= day).then(pl.lit(new_value)).otherwise(pl.col("metric"))
    ).vstack(daily([("Z", (day + dt.timedelta(days=future_offset)).isoformat(), new_value)]))
    assert rank_day(altered, day=day, size=3, window_days=7).equals(before)


def test_daily_metric_frame_ignores_unconfirmed_and_reads_quote_turnover():
    rows = [
        ["1709251200000", "1", "1", "1", "1", "10", "10", "123.5", "1"],
        ["1709337600000", "1", "1", "1", "1", "10", "10", "999", "0"],  # today's running bar
    ]
    frame = daily_metric_frame({"X-USDT-SWAP": rows})
    assert frame.to_dicts() == [{"inst": "X-USDT-SWAP", "day": dt.date(2024, 3, 1), "metric": 123.5}]


def test_live_ticker_ranking_uses_quote_turnover_not_contracts():
    instruments = instruments_frame([
        {"instId": f"{b}-USDT-SWAP", "instType": "SWAP", "settleCcy": "USDT", "ctType": "linear"} for b in "ABC"
    ])
    tickers = [
        {"instType": "SWAP", "instId": "A-USDT-SWAP", "last": "100", "vol24h": "1", "volCcy24h": "10"},      # 1,000
        {"instType": "SWAP", "instId": "B-USDT-SWAP", "last": "0.01", "vol24h": "9e9", "volCcy24h": "9e5"},  # 9,000
        {"instType": "SWAP", "instId": "C-USDT-SWAP", "last": "1", "vol24h": "5", "volCcy24h": "5"},        # 5
    ]
    assert rank_live(tickers, instruments, UNIVERSE_CFG) == ["B-USDT-SWAP", "A-USDT-SWAP"]  # rank_by: default


def test_ranking_does_not_depend_on_row_order():
    """The same daily metrics in any row order give the same ranking, bit for bit (reproducible universes)."""
    base = dt.date(2024, 3, 1)
    rows = [(inst, (base + dt.timedelta(days=d)).isoformat(), ((d * 7919 + ord(inst)) % 1000) * 1.37e6 + 0.1)
            for inst in "ABCDEFGH" for d in range(30)]
    reference = rank_day(daily(rows), day=base + dt.timedelta(days=30), size=3, window_days=30)
    for seed in range(10):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        assert rank_day(daily(shuffled), day=base + dt.timedelta(days=30), size=3, window_days=30).equals(reference)


# --------------------------------------------------------------------------------------------
# universe.rank_by as a table (issue 13): one entry per value, the schema lists the same names,
# an unknown value is refused (never ranked by something else), and the workflow passes a REST
# job only the universe keys its metric depends on.
# --------------------------------------------------------------------------------------------

import pytest  # noqa: E402
import yaml  # noqa: E402

from feeder.config import SCHEMA_PATH, UNIVERSE_METRIC_KEYS, UNIVERSE_RANKING_KEYS  # noqa: E402
from feeder.universe import DEFAULT_RANK_BY, RANKINGS, fetch_daily_metrics, ranking_for  # noqa: E402

UNIVERSE_SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["universe"]["properties"]


def test_the_schema_lists_exactly_the_rankings_of_the_table():
    assert UNIVERSE_SCHEMA["rank_by"]["enum"] == list(RANKINGS)
    assert UNIVERSE_SCHEMA["rank_by"]["default"] == DEFAULT_RANK_BY == "quote_volume"
    assert "open_interest" not in RANKINGS  # refused at load until it is built


def test_every_universe_key_is_either_the_metrics_or_the_rankings():
    """A new universe key must be sorted: does a day's metric depend on it (REST job), or only the choice?"""
    assert set(UNIVERSE_METRIC_KEYS) | set(UNIVERSE_RANKING_KEYS) == set(UNIVERSE_SCHEMA)
    assert not set(UNIVERSE_METRIC_KEYS) & set(UNIVERSE_RANKING_KEYS)


def test_an_unknown_rank_by_is_refused_not_ranked_by_funding(tmp_path):
    with pytest.raises(ValueError, match=r"'market_cap' is not a ranking this project builds; use one of "
                                         r"quote_volume \(mean daily USDT turnover\), abs_funding_rate"):
        ranking_for("market_cap")
    # the stage refuses it before asking the exchange anything (nothing listens on port 9)
    with pytest.raises(ValueError, match="market_cap"):
        fetch_daily_metrics(exchange={"rest_url": "http://127.0.0.1:9", "give_up_after_s": 0.1},
                            universe_cfg={"rank_by": "market_cap", **UNIVERSE_CFG}, day=dt.date(2024, 3, 4),
                            history_start=dt.date(2024, 3, 1), snapshot_dir=tmp_path / "snap",
                            cache_dir=tmp_path / "cache", out_path=tmp_path / "out.parquet",
                            instruments_out=tmp_path / "instruments.parquet")
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "snap").exists()


def test_live_ranking_by_abs_funding_rate_uses_the_last_settled_rate(okx_samples_dir):
    sample = json.loads((okx_samples_dir / "rest_funding_rate.json").read_text())["data"][0]  # BTC, settled 1.46e-5
    snapshot = [
        sample,
        dict(sample, instId="A-USDT-SWAP", settFundingRate="-0.0003", fundingRate="0.00001"),  # |settled| first
        dict(sample, instId="B-USDT-SWAP", settFundingRate="", fundingRate="0.0001"),  # no settled rate: the estimate
        dict(sample, instId="C-USDT-SWAP", settFundingRate="0.5"),  # not eligible: left out
    ]
    instruments = instruments_frame([
        {"instId": f"{b}-USDT-SWAP", "instType": "SWAP", "settleCcy": "USDT", "ctType": "linear",
         "instCategory": "2" if b == "C" else "1"} for b in ("A", "B", "C", "BTC")
    ])
    cfg = UNIVERSE_CFG | {"rank_by": "abs_funding_rate", "size": 3}
    assert rank_live(snapshot, instruments, cfg) == ["A-USDT-SWAP", "B-USDT-SWAP", "BTC-USDT-SWAP"]
    assert RANKINGS["abs_funding_rate"].live_params("SWAP") == {"instId": "ANY"}


def test_instruments_known_only_from_the_archive_are_eligible_by_their_id():
    """The archive listing gives only instId and type: settlement and contract type are read from
    the id, so a delisted USDT perpetual passes the default filters and an inverse one does not,
    and the instrument counts as listed up to the last day the archive has it."""
    from feeder.universe import archive_instruments_frame, eligible, listed_on

    seen = dt.date(2024, 2, 20)
    frame = archive_instruments_frame({"GONE-USDT-SWAP": "SWAP", "GONE-USD-SWAP": "SWAP", "USDC-USDT-SWAP": "SWAP"},
                                      seen_through=seen)
    cfg = {"inst_type": "SWAP", "settle_ccy": "USDT", "ct_type": "linear", "inst_category": ["1"],
           "exclude_bases": ["USDC"]}
    assert eligible(frame, cfg)["instId"].to_list() == ["GONE-USDT-SWAP"]
    assert "GONE-USDT-SWAP" in listed_on(frame, seen)
    assert "GONE-USDT-SWAP" not in listed_on(frame, seen + dt.timedelta(days=1))
    spot = archive_instruments_frame({"GONE-USDT": "SPOT"}, seen_through=seen)
    assert eligible(spot, {"inst_type": "SPOT", "settle_ccy": None, "ct_type": None})["instId"].to_list() == \
        ["GONE-USDT"]


def test_archive_turnover_is_the_quote_volume_of_the_utc_day():
    from feeder.universe import archive_turnover

    day = dt.date(2024, 2, 19)
    start = int(dt.datetime(2024, 2, 19, tzinfo=dt.timezone.utc).timestamp() * 1000)
    bars = pl.DataFrame({"inst": ["A", "A", "A", "B"],
                         "ts": [start - 60_000, start, start + 86_340_000, start + 60_000],
                         "vol_quote": ["1000.5", "10.25", "20.25", "7"]})
    got = archive_turnover(bars, day=day)
    assert got.rows() == [("A", day, 30.5), ("B", day, 7.0)]


def test_moving_start_earlier_fetches_the_days_the_metric_cache_lacks(tmp_path):
    """The metric cache knows the span it covers at both ends: a day before it (the config's
    `start` moved earlier) is fetched, never read as "no turnover that day", which would rank
    that day without every instrument."""
    import okxsim

    cfg = {"size": 3, "rank_by": "quote_volume", "inst_type": "SWAP", "settle_ccy": "USDT", "ct_type": "linear",
           "inst_category": ["1"], "exclude_bases": []}
    late, early = dt.date(2024, 3, 3), dt.date(2024, 2, 26)
    with okxsim.Simulator(seed=7, clock_start="2024-03-04T22:00:00Z", speed=1, history_start="2024-02-01",
                          n_swaps=6) as sim:
        def run(day: dt.date, history_start: dt.date) -> pl.DataFrame:
            return fetch_daily_metrics(
                exchange={"rest_url": sim.rest, "ca_file": sim.ca_file}, universe_cfg=cfg, day=day,
                history_start=history_start, snapshot_dir=tmp_path / "snapshots", cache_dir=tmp_path / "cache",
                out_path=tmp_path / f"daily-{day}.parquet", instruments_out=tmp_path / f"instruments-{day}.parquet")

        assert run(late, late - dt.timedelta(days=1)).height > 0  # a first build from 2024-03-02
        earlier = run(early, early - dt.timedelta(days=1))       # then `start` moved a week earlier
        want = {inst: sim.market.day_quote_volume(inst, early.isoformat()) for inst in earlier["inst"].to_list()}
    # every instrument ranked on the later day has its metric on the earlier one too
    assert earlier.height == pl.read_parquet(tmp_path / f"daily-{late}.parquet").height > 0
    for row in earlier.iter_rows(named=True):
        assert abs(row["metric"] - want[row["inst"]]) <= 1e-6 * want[row["inst"]], row

