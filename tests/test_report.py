"""The data quality report (feeder.report, rule quality_report): the HTML's tables and figure data
are parsed back and compared with the data they claim to show, read here independently."""

from __future__ import annotations

import base64
import datetime as dt
import json
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
import yaml

from feeder.report import write_report

D1, D2, D3 = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ReportParser(HTMLParser):
    """Tables (by id: header + rows of cell texts), JSON scripts (by id), images (by id) and ids."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict] = {}
        self.scripts: dict[str, object] = {}
        self.images: dict[str, bytes] = {}
        self.ids: set[str] = set()
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._script: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self._table = a["id"]
            self.tables[self._table] = {"header": [], "rows": [], "data_rows": int(a["data-rows"])}
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "script" and a.get("type") == "application/json":
            self._script, self._text = a["id"], []
        elif tag == "img":
            src = a["src"]
            assert src.startswith("data:image/png;base64,"), "figures must be embedded"
            self.images[a["id"]] = base64.b64decode(src.split(",", 1)[1])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            table = self.tables[self._table]
            (table["rows"] if table["header"] else table["header"]).extend(
                [self._row] if table["header"] else self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "script" and self._script:
            self.scripts[self._script] = json.loads("".join(self._text))
            self._script = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._script:
            self._text.append(data)


def parse(path: Path) -> ReportParser:
    return parse_text(path.read_text(encoding="utf-8"))


def parse_text(html: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(html)
    return parser


def records(table: dict) -> list[dict[str, str]]:
    return [dict(zip(table["header"], row, strict=True)) for row in table["rows"]]


# --------------------------------------------------------------------------------------------
# A hand-made build: three days, members A/B then A/C, a gap, a streamed non-member
# --------------------------------------------------------------------------------------------


def write_quality(work: Path, day: dt.date, instruments: dict[str, int], *, ws: int, rest: int) -> Path:
    path = work / "quality" / f"{day}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = sum(instruments.values())
    path.write_text(json.dumps({
        "day": day.isoformat(), "files": 3, "rows_read": kept + 7, "kept": kept, "duplicates": 5, "conflicts": 1,
        "rejected_total": 2, "rejected": {"outside_day": 2}, "malformed_lines": 0,
        "kept_by_source": {"ws": ws, "rest": rest}, "instruments": instruments,
    }))
    return path


def write_universe(work: Path, day: dt.date, ranking: list[tuple[str, bool]]) -> Path:
    path = work / "universe" / f"{day}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({
        "day": [day] * len(ranking), "inst": [i for i, _ in ranking], "rank": list(range(1, len(ranking) + 1)),
        "metric": [1e9 / r for r in range(1, len(ranking) + 1)], "days_observed": [7] * len(ranking),
        "member": [m for _, m in ranking],
    }, schema_overrides={"rank": pl.Int32, "days_observed": pl.Int32}).write_parquet(path)
    return path


def write_bars(work: Path, day: dt.date, amounts: dict[str, float], funding: dict[str, float] | None) -> Path:
    path = work / "bars" / "day" / f"{day}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    insts = sorted(amounts)
    frame = pl.DataFrame({
        "inst": insts, "ts": [dt.datetime.combine(day, dt.time())] * len(insts),
        "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0,
        "amount": [amounts[i] for i in insts], "vwap": 1.0, "coverage": 1.0,
    }).with_columns(pl.col("ts").cast(pl.Datetime("ms")))
    if funding is not None:
        frame = frame.with_columns(pl.Series("funding_rate", [funding.get(i) for i in insts], dtype=pl.Float64))
    frame.write_parquet(path)
    return path


def write_coverage(work: Path, day: dt.date, rows: list[tuple]) -> Path:
    """rows: (inst, member, expected, from_ws, from_rest, exchange_none, fetch_failed, not_attempted)."""
    path = work / "coverage" / f"{day}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["inst", "member", "expected", "from_ws", "from_rest", "missing_exchange_none", "missing_fetch_failed",
            "missing_not_attempted"]
    frame = pl.DataFrame([dict(zip(cols, r, strict=True)) for r in rows]).with_columns(
        day=pl.lit(day),
        missing=pl.col("missing_exchange_none") + pl.col("missing_fetch_failed") + pl.col("missing_not_attempted"),
    )
    frame.select("day", "inst", "member", *[pl.col(c).cast(pl.Int32) for c in cols[2:]],
                 pl.col("missing").cast(pl.Int32)).write_parquet(path)
    return path


@pytest.fixture
def build(tmp_path: Path) -> dict:
    work = tmp_path / "work"
    quality = [
        write_quality(work, D1, {"A-USDT-SWAP": 1440, "B-USDT-SWAP": 1430}, ws=100, rest=2770),
        write_quality(work, D2, {"A-USDT-SWAP": 1440, "X-USDT-SWAP": 100}, ws=1540, rest=0),
        write_quality(work, D3, {"A-USDT-SWAP": 1440, "C-USDT-SWAP": 1440}, ws=2880, rest=0),
    ]
    universe = [
        write_universe(work, D1, [("A-USDT-SWAP", True), ("B-USDT-SWAP", True), ("C-USDT-SWAP", False)]),
        write_universe(work, D2, [("A-USDT-SWAP", True), ("C-USDT-SWAP", True), ("B-USDT-SWAP", False)]),
        write_universe(work, D3, [("C-USDT-SWAP", True), ("A-USDT-SWAP", True), ("B-USDT-SWAP", False)]),
    ]
    return {"work": work, "quality": quality, "universe": universe}


def test_report_from_quality_json_matches_the_data(build: dict, tmp_path: Path):
    work = build["work"]
    bars = [write_bars(work, D1, {"A-USDT-SWAP": 5e9, "B-USDT-SWAP": 1e9}, None),
            write_bars(work, D2, {"A-USDT-SWAP": 4e9, "X-USDT-SWAP": 1e6}, None),
            write_bars(work, D3, {"A-USDT-SWAP": 6e9, "C-USDT-SWAP": 2e9}, None)]
    out = tmp_path / "report" / "quality.html"
    summary = write_report(quality_paths=build["quality"], universe_paths=build["universe"], bar_paths=bars,
                           market="top2", bars_freq="day", out_path=out)
    r = parse(out)

    # coverage heatmap data: every instrument x day, bars straight from the quality JSON
    cov = r.scripts["coverage-data"]
    assert cov["days"] == [D1.isoformat(), D2.isoformat(), D3.isoformat()]
    # members by best rank (ties by name), then instruments that only had data
    assert cov["instruments"] == ["A-USDT-SWAP", "C-USDT-SWAP", "B-USDT-SWAP", "X-USDT-SWAP"]
    assert cov["bars"] == [[1440, 1440, 1440], [0, 0, 1440], [1430, 0, 0], [0, 100, 0]]
    assert cov["member"] == [[1, 1, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert r.images["coverage-heatmap"].startswith(PNG_MAGIC)

    # gaps: B short by 10 on D1; C a member on D2 with no data at all; X is not a member
    gaps = records(r.tables["gaps"])
    assert [(g["day"], g["inst"], g["bars"], g["missing"]) for g in gaps] == [
        ("2024-03-01", "B-USDT-SWAP", "1430", "10"), ("2024-03-02", "C-USDT-SWAP", "0", "1440")]
    assert summary["gap_rows"] == 2 and summary["missing_member_minutes"] == 1450
    assert summary["member_days"] == 6 and summary["complete_member_days"] == 4

    # daily quality table = the JSON's counts
    daily = {row["day"]: row for row in records(r.tables["daily-quality"])}
    q1 = json.loads(build["quality"][0].read_text())
    assert daily["2024-03-01"]["kept"] == str(q1["kept"]) == "2870"
    assert (daily["2024-03-01"]["kept_ws"], daily["2024-03-01"]["kept_rest"]) == ("100", "2770")
    assert daily["2024-03-01"]["duplicates"] == "5" and daily["2024-03-01"]["rejected"] == "2"

    # per instrument coverage over member days
    per = {row["inst"]: row for row in records(r.tables["coverage-by-instrument"])}
    assert per["B-USDT-SWAP"]["member_coverage"] == f"{1430 / 1440:.4f}"
    assert per["C-USDT-SWAP"]["member_bars"] == "1440" and per["C-USDT-SWAP"]["member_days"] == "2"
    assert per["X-USDT-SWAP"]["member_days"] == "0" and per["X-USDT-SWAP"]["bars_all_days"] == "100"

    # churn: D2 C in, B out; D3 no change
    churn = {row["day"]: row for row in records(r.tables["churn"])}
    assert (churn["2024-03-02"]["entered_names"], churn["2024-03-02"]["left_names"]) == ("C-USDT-SWAP", "B-USDT-SWAP")
    assert (churn["2024-03-03"]["entered"], churn["2024-03-03"]["left"]) == ("0", "0")
    assert r.images["membership-heatmap"].startswith(PNG_MAGIC) and r.images["churn-plot"].startswith(PNG_MAGIC)

    # turnover of members only (X's 1e6 is not a member day)
    turnover = {row["inst"]: row for row in records(r.tables["turnover"])}
    assert set(turnover) == {"A-USDT-SWAP", "B-USDT-SWAP", "C-USDT-SWAP"}
    assert turnover["A-USDT-SWAP"]["total_musdt"] == "15000.000"
    assert turnover["C-USDT-SWAP"]["member_days"] == "1"  # no bars on D2

    # no funding field in these bars: said so, no plot
    assert "funding-absent" in r.ids and "funding-plot" not in r.images
    assert r.scripts["report-summary"]["funding"] is False


def test_report_uses_the_coverage_stage_and_plots_funding(build: dict, tmp_path: Path):
    work = build["work"]
    coverage = [
        write_coverage(work, D1, [("A-USDT-SWAP", True, 1440, 100, 1340, 0, 0, 0),
                                  ("B-USDT-SWAP", True, 1440, 0, 1430, 10, 0, 0)]),
        write_coverage(work, D2, [("A-USDT-SWAP", True, 1440, 1440, 0, 0, 0, 0),
                                  ("C-USDT-SWAP", True, 600, 0, 0, 0, 600, 0),  # listed at 14:00, fetch failed
                                  ("X-USDT-SWAP", False, 1440, 100, 0, 0, 0, 1340)]),
        write_coverage(work, D3, [("A-USDT-SWAP", True, 1440, 1440, 0, 0, 0, 0),
                                  ("C-USDT-SWAP", True, 1440, 1440, 0, 0, 0, 0)]),
    ]
    funding = {"A-USDT-SWAP": 0.0001, "B-USDT-SWAP": -0.0002, "C-USDT-SWAP": 0.0003}
    bars = [write_bars(work, D1, {"A-USDT-SWAP": 5e9, "B-USDT-SWAP": 1e9}, funding),
            write_bars(work, D2, {"A-USDT-SWAP": 4e9}, funding),
            write_bars(work, D3, {"A-USDT-SWAP": 6e9, "C-USDT-SWAP": 2e9}, funding)]
    out = tmp_path / "quality.html"
    write_report(quality_paths=build["quality"], universe_paths=build["universe"], coverage_paths=coverage,
                 bar_paths=bars, market="top2", bars_freq="day", out_path=out)
    r = parse(out)
    cov = r.scripts["coverage-data"]
    c = cov["instruments"].index("C-USDT-SWAP")
    assert cov["expected"][c] == [0, 600, 1440] and cov["bars"][c] == [0, 0, 1440]
    gaps = records(r.tables["gaps"])
    assert [(g["day"], g["inst"], g["expected"], g["missing"], g["missing_exchange_none"], g["missing_fetch_failed"])
            for g in gaps] == [("2024-03-01", "B-USDT-SWAP", "1440", "10", "10", "0"),
                               ("2024-03-02", "C-USDT-SWAP", "600", "600", "0", "600")]
    # funding: from the bars' funding_rate, one row per instrument with its mean (in %)
    assert r.images["funding-plot"].startswith(PNG_MAGIC)
    fund = {row["inst"]: row for row in records(r.tables["funding"])}
    assert fund["B-USDT-SWAP"]["mean_pct"] == f"{-0.02:.5f}" and fund["A-USDT-SWAP"]["observations"] == "3"


# --------------------------------------------------------------------------------------------
# The rule, on a real build: workload shards -> plain `snakemake` (simulator for REST; the default
# target renders the page) -> `snakemake --report`. One build, shared by the tests below and by
# the operator's view tests at the end of this file.
# --------------------------------------------------------------------------------------------

# 2024-02-06..08: the simulated exchange has minutes without candles for some members (real gaps).
# Ranked on the day before only (window_days 1, one daily_metrics job a day instead of seven):
# 2024-02-07 keeps the members of 02-06, 2024-02-08 changes one (FIL out, ATOM in).
FIRST, N_DAYS, SIZE, WINDOW_DAYS = dt.date(2024, 2, 6), 3, 5, 1


@pytest.fixture(scope="module")
def real_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One plain `snakemake` build (the default target, as an operator runs it), then `snakemake --report`."""
    from bench.workload import generate
    from harness.processes import simulator, snakemake, write_config

    tmp = tmp_path_factory.mktemp("real-build")
    days = [FIRST + dt.timedelta(days=i) for i in range(N_DAYS)]
    generate(raw_root=tmp / "raw", seed=7, history_start="2024-01-01", days=days, n_symbols=SIZE)
    clock = (days[-1] + dt.timedelta(days=1)).isoformat() + "T01:00:00Z"
    with simulator(seed=7, clock_start=clock, speed=1, history_start="2024-01-01", cert_dir=tmp / "certs",
                   log_path=tmp / "simulator.log", extra_args=["--rate-limit-scale", "0"]) as sim:
        cfg = tmp / "config.yaml"
        config = write_config(cfg, endpoints=sim, data_dir=tmp, start=days[0].isoformat(), end=days[-1].isoformat(),
                              size=SIZE, frequencies=["60min", "day"])
        config["universe"]["window_days"] = WINDOW_DAYS
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        build = snakemake(cfg, "--directory", str(tmp), cores=2, log_path=tmp / "snakemake.log")
        report = snakemake(cfg, "--directory", str(tmp), "--report", str(tmp / "report.html"), cores=1,
                           log_path=tmp / "snakemake-report.log", check=False)
    return {"dir": tmp, "work": tmp / "work", "days": days, "build": build, "report": report}


@pytest.mark.slow
def test_quality_report_rule_on_a_real_build(real_build: dict):
    days = real_build["days"]
    work = real_build["work"]
    out = work / "report" / "quality.html"
    assert out.exists(), "a plain `snakemake` build renders the quality page (it is in the default target)"
    r = parse(out)

    # independent reads of what the report shows
    quality = {d: json.loads((work / "quality" / f"{d}.json").read_text()) for d in days}
    universe = pl.concat([pl.read_parquet(work / "universe" / f"{d}.parquet") for d in days])
    members = {(d, i) for d, i in universe.filter(pl.col("member")).select("day", "inst").iter_rows()}
    coverage = pl.concat([pl.read_parquet(work / "coverage" / f"{d}.parquet") for d in days])

    cov = r.scripts["coverage-data"]
    assert cov["days"] == [d.isoformat() for d in days]
    for i, inst in enumerate(cov["instruments"]):
        for j, day in enumerate(days):
            # the heatmap's bars = what cleaning kept (quality JSON), member flags = the universe files
            assert cov["bars"][i][j] == quality[day]["instruments"].get(inst, 0), (inst, day)
            assert cov["member"][i][j] == int((day, inst) in members), (inst, day)
    assert {i for _, i in members} <= set(cov["instruments"])
    assert r.images["coverage-heatmap"].startswith(PNG_MAGIC)

    gaps = records(r.tables["gaps"])
    expected_gaps = (coverage.filter(pl.col("member") & (pl.col("missing") > 0)).sort("day", "inst")
                     .select("day", "inst", "missing").rows())
    assert [(dt.date.fromisoformat(g["day"]), g["inst"], int(g["missing"])) for g in gaps] == \
        [(d, i, int(m)) for d, i, m in expected_gaps]
    assert gaps, "the chosen days have minutes the exchange never recorded"
    for g in gaps:  # the exchange has no candle for them: the backfill asked, nothing was invented
        assert int(g["bars"]) == quality[dt.date.fromisoformat(g["day"])]["instruments"].get(g["inst"], 0)
        assert int(g["missing_exchange_none"]) == int(g["missing"])

    daily = {row["day"]: row for row in records(r.tables["daily-quality"])}
    for d in days:
        q = quality[d]
        assert int(daily[d.isoformat()]["kept"]) == q["kept"]
        assert int(daily[d.isoformat()]["rows_read"]) == q["rows_read"]
        assert int(daily[d.isoformat()]["duplicates"]) == q["duplicates"]

    churn = {row["day"]: row for row in records(r.tables["churn"])}
    for prev, day in zip(days, days[1:]):
        before = {i for d, i in members if d == prev}
        now = {i for d, i in members if d == day}
        assert churn[day.isoformat()]["entered_names"].split() == sorted(now - before)
        assert churn[day.isoformat()]["left_names"].split() == sorted(before - now)
    assert any(churn[d.isoformat()]["entered"] != "0" for d in days[1:]), "the chosen days have a member change"
    assert any(churn[d.isoformat()]["entered"] == "0" for d in days[1:]), "and a day without one"

    bars = pl.concat([pl.read_parquet(work / "bars" / "day" / f"{d}.parquet") for d in days])
    turnover = {row["inst"]: float(row["total_musdt"]) for row in records(r.tables["turnover"])}
    member_bars = bars.filter(pl.struct(pl.col("ts").dt.date(), "inst").is_in(
        [{"ts": d, "inst": i} for d, i in members]))
    for inst, total in member_bars.group_by("inst").agg(pl.col("amount").sum()).rows():
        assert turnover[inst] == pytest.approx(total / 1e6, abs=1e-3)

    has_funding = "funding_rate" in bars.columns and bars["funding_rate"].drop_nulls().drop_nans().len() > 0
    assert ("funding-plot" in r.images) == has_funding
    assert ("funding-absent" in r.ids) == (not has_funding)


# --------------------------------------------------------------------------------------------
# Conflicts and flagged bars (issue 12): the quality JSON's `flags`, one table row each
# --------------------------------------------------------------------------------------------


def test_report_lists_conflicts_and_flagged_bars(tmp_path: Path):
    """The section shows every flag of every day: instrument, minute, each copy's values, the bar
    kept and the resolution; a day without flags adds nothing, a build without any says so."""
    from feeder.clean import clean_candles
    from feeder.raw import RAW_SCHEMA

    def rec(ts_ms: int, ohlc: tuple[str, ...], source: str = "ws", recv: int = 0) -> dict:
        return {"v": 1, "source": source, "channel": "candle1m", "inst": "A-USDT-SWAP", "ts": ts_ms,
                "recv_ts": ts_ms + 60_000 + recv, "data": [str(ts_ms), *ohlc, "10", "0.1", "10.05", "1"]}

    start = int(dt.datetime(2024, 3, 1, tzinfo=dt.UTC).timestamp() * 1000)
    calm = ("100", "100.1", "99.9", "100")
    raw = [rec(start + i * 60_000, calm) for i in range(30) if i != 12]
    raw += [rec(start + 12 * 60_000, ("100", "10010", "99.9", "100")),  # a x100 wick, REST says otherwise
                rec(start + 12 * 60_000, calm, source="rest"),
                rec(start + 20 * 60_000, ("100", "100.1", "99.9", "100.05"), recv=5)]  # a later, different copy
    _, stats = clean_candles(pl.DataFrame(raw, schema=RAW_SCHEMA), D1)
    work = tmp_path / "work"
    q1 = write_quality(work, D1, {"A-USDT-SWAP": 30}, ws=29, rest=1)
    flagged = {k: stats[k] for k in ("flags", "flag_counts", "conflicts")}
    q1.write_text(json.dumps(json.loads(q1.read_text()) | flagged))
    q2 = write_quality(work, D2, {"A-USDT-SWAP": 1440}, ws=1440, rest=0)  # written before flags existed
    universe = [write_universe(work, d, [("A-USDT-SWAP", True)]) for d in (D1, D2)]
    out = tmp_path / "quality.html"
    summary = write_report(quality_paths=[q1, q2], universe_paths=universe, out_path=out)
    r = parse(out)

    rows = records(r.tables["flags"])
    assert [(f["day"], f["check"], f["inst"], f["minute"], f["resolution"]) for f in rows] == [
        ("2024-03-01", "spike", "A-USDT-SWAP", "2024-03-01T00:12Z", "corrected"),
        ("2024-03-01", "conflict", "A-USDT-SWAP", "2024-03-01T00:20Z", "unresolved"),
    ]
    spike, conflict = rows
    assert spike["copies"] == "rest 100/100.1/99.9/100/0.1/10.05; ws 100/10010/99.9/100/0.1/10.05"
    assert spike["kept"] == "rest 100/100.1/99.9/100/0.1/10.05" and "typical ranges" in spike["detail"]
    assert conflict["copies"] == "ws 100/100.1/99.9/100/0.1/10.05; ws 100/100.1/99.9/100.05/0.1/10.05"
    assert conflict["kept"] == "ws 100/100.1/99.9/100.05/0.1/10.05"  # the later copy, unresolved
    counts = {(c["check"], c["resolution"]): c["bars"] for c in records(r.tables["flag-counts"])}
    assert counts == {("conflict", "unresolved"): "1", ("spike", "corrected"): "1"}
    assert summary["flagged_bars"] == 2 and summary["flags"] == {"conflict:unresolved": 1, "spike:corrected": 1}
    assert r.scripts["report-summary"]["flagged_bars"] == 2
    assert "flags-absent" not in r.ids

    write_report(quality_paths=[q2], universe_paths=universe[1:], out_path=out)
    r = parse(out)
    assert "flags-absent" in r.ids and r.tables["flags"]["data_rows"] == 0


# --------------------------------------------------------------------------------------------
# The operator's view (issue 16), on the real build above: Snakemake's own report (`snakemake
# --report`) carries the quality page, and the run's output has no "Shell command: None"
# --------------------------------------------------------------------------------------------


def embedded_pages(report_html: str) -> list[str]:
    """Every HTML document embedded in Snakemake's report (data URIs, base64), decoded."""
    import re

    pages = []
    for payload in re.findall(r"data:text/html[^,\"']*;base64,([A-Za-z0-9+/=]+)", report_html):
        pages.append(base64.b64decode(payload).decode("utf-8", errors="replace"))
    return pages


@pytest.mark.slow
def test_snakemake_report_contains_the_quality_page(real_build: dict):
    """README: the quality page "is included in Snakemake's own report" after a plain build."""
    report = real_build["report"]
    assert report.returncode == 0, report.stderr[-3000:]
    quality = real_build["work"] / "report" / "quality.html"
    assert quality.is_file(), "a plain `snakemake` build renders the quality page (it is in the default target)"
    pages = [p for p in embedded_pages((real_build["dir"] / "report.html").read_text(encoding="utf-8"))
             if 'id="coverage-data"' in p]
    assert len(pages) == 1, "Snakemake's report embeds the quality page"
    embedded = parse_text(pages[0])
    # the very page the build rendered: same coverage data, same member days
    assert embedded.scripts["coverage-data"] == parse(quality).scripts["coverage-data"]
    assert embedded.scripts["coverage-data"]["days"] == [d.isoformat() for d in real_build["days"]]


@pytest.mark.slow
def test_a_run_prints_no_shell_command_none(real_build: dict):
    """Every rule runs a script: Snakemake's "Shell command: None" line for each job is noise, and
    so is the day rules' `python -m feeder.job` command (the job's files again, as JSON)."""
    out = real_build["build"].stdout + real_build["build"].stderr
    assert "Shell command: None" not in out, f"{out.count('Shell command: None')} noise lines"
    assert "feeder.job" not in out, f"{out.count('feeder.job')} commands of day jobs printed"
    assert "rule clean:" in out and "rule resample:" in out
    assert "rule quality_report:" in out and "rule publish_qlib:" in out  # the jobs are still announced


def test_only_the_shell_commands_of_script_jobs_are_silenced():
    """A real shell command (a `shell:` rule someone adds) and every other record still pass."""
    import logging

    from snakemake_interface_logger_plugins.common import LogEvent

    from feeder.logs import quiet_empty_shell_commands

    logger = logging.getLogger("test.quiet-shell-commands")
    quiet_empty_shell_commands(logger)
    quiet_empty_shell_commands(logger)  # idempotent: one filter
    assert len(logger.filters) == 1

    def passes(**extra) -> bool:
        return logger.filter(logging.makeLogRecord({"msg": "x", **extra}))

    assert not passes(event=LogEvent.SHELLCMD, shellcmd=None)
    assert not passes(event=LogEvent.SHELLCMD,
                      shellcmd='"$FEEDER_JOB_PYTHON" -m feeder.job "$FEEDER_JOB_SCRIPTS/clean.py" \'{}\' clean.log')
    assert passes(event=LogEvent.SHELLCMD, shellcmd="echo hi > out.txt")
    assert passes(event=LogEvent.JOB_INFO, shellcmd=None) and passes()
