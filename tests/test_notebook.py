"""The research notebook (research/explore.ipynb) and the functions behind it (research/notebook.py).

The helpers are checked against small files of the pipeline's formats written here. The notebook
itself is executed end to end in a real kernel (nbclient) on a sample dataset of the simulated
market written by the product's own export (research.sample_data), with the two things that
sample lacks added from the same simulated world: the funding rates the simulator settles
(``okxsim.Market.settled_funding_rate``, written as a ``funding_rate`` feature with
feeder.qlib_format) and a work directory (``coverage.parquet`` in feeder.coverage's schema with
one known gap; ``universe/<day>.parquet`` ranked by feeder.universe.rank_day from the dataset's
own daily turnover). The example model runs inside the notebook (research.run_example), then the
executed notebook is rendered to HTML.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from research import notebook as nb

FIRST, LAST = dt.date(2023, 5, 1), dt.date(2023, 6, 19)  # 50 days: 10 warm-up + 24/8/8
N_SYMBOLS, SIZE = 10, 6
GAP_INST, GAP_DAY, GAP_MISSING = "ETH-USDT-SWAP", dt.date(2023, 5, 20), 360
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# Helpers, on hand-written files
# --------------------------------------------------------------------------------------------


def test_membership_days_expands_the_market_spans(tmp_path: Path):
    (tmp_path / "instruments").mkdir()
    (tmp_path / "instruments" / "top2.txt").write_text(
        "BTC-USDT-SWAP\t2024-03-01 00:00:00\t2024-03-03 23:59:00\n"
        "SOL-USDT-SWAP\t2024-03-01 00:00:00\t2024-03-01 23:59:00\n"
        "ETH-USDT-SWAP\t2024-03-02 00:00:00\t2024-03-03 23:59:00\n")
    (tmp_path / "instruments" / "top10.txt").write_text("")
    members = nb.membership_days(qlib_dir=tmp_path, market="top2")
    d1, d2, d3 = dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)
    assert members.rows() == [(d1, "BTC-USDT-SWAP"), (d1, "SOL-USDT-SWAP"), (d2, "BTC-USDT-SWAP"),
                              (d2, "ETH-USDT-SWAP"), (d3, "BTC-USDT-SWAP"), (d3, "ETH-USDT-SWAP")]
    assert nb.top_coins(members, n=2) == ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]
    # ties on member-days go to the higher mean turnover, then to the name
    turnover = pl.DataFrame({"inst": ["ETH-USDT-SWAP", "SOL-USDT-SWAP", "SOL-USDT-SWAP"], "metric": [5.0, 1.0, 99.0]})
    tied = members.filter((pl.col("day") == d1) | ((pl.col("day") == d2) & (pl.col("inst") == "ETH-USDT-SWAP")))
    # BTC: no turnover known, so last
    assert nb.top_coins(tied, n=3, turnover=turnover) == ["SOL-USDT-SWAP", "ETH-USDT-SWAP", "BTC-USDT-SWAP"]
    assert nb.top_coins(tied, n=3) == ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP"]
    assert nb.membership_matrix(members, insts=["ETH-USDT-SWAP", "SOL-USDT-SWAP"], days=[d1, d2, d3]) == [
        [0, 1, 1], [1, 0, 0]]
    assert nb.markets(qlib_dir=tmp_path) == ["top2", "top10"]  # by N, not by name
    with pytest.raises(FileNotFoundError, match=r"no market 'top5'.*top2, top10"):
        nb.membership_days(qlib_dir=tmp_path, market="top5")


def test_coverage_from_the_work_dir(tmp_path: Path):
    from feeder.coverage import COVERAGE_SCHEMA

    d1, d2 = dt.date(2024, 3, 1), dt.date(2024, 3, 2)
    rows = [(d1, "BTC-USDT-SWAP", True, 1440, 1440, 0, 0, 0, 0, 0, 0, 0),
            (d1, "ETH-USDT-SWAP", True, 1440, 1000, 80, 0, 360, 360, 0, 0, 0),
            (d2, "BTC-USDT-SWAP", True, 720, 700, 0, 0, 20, 20, 0, 0, 0),   # listed at 12:00
            (d2, "NEW-USDT-SWAP", False, 0, 0, 0, 0, 0, 0, 0, 0, 0)]        # not listed yet
    per_day = tmp_path / "coverage"
    per_day.mkdir()
    for day in (d1, d2):  # the per-day tables, before the merge
        pl.DataFrame([r for r in rows if r[0] == day], schema=COVERAGE_SCHEMA, orient="row").write_parquet(
            per_day / f"{day}.parquet")
    cov = nb.read_coverage(work_dir=tmp_path)
    assert cov.select("day", "inst", "share").rows() == [
        (d1, "BTC-USDT-SWAP", 1.0), (d1, "ETH-USDT-SWAP", 0.75), (d2, "BTC-USDT-SWAP", 1 - 20 / 720),
        (d2, "NEW-USDT-SWAP", None)]
    matrix = nb.coverage_matrix(cov, insts=["ETH-USDT-SWAP", "NEW-USDT-SWAP"], days=[d1, d2])
    assert matrix[0][0] == 0.75 and math.isnan(matrix[0][1]) and all(math.isnan(x) for x in matrix[1])
    # the merged table wins over the per-day ones
    pl.DataFrame(rows[:1], schema=COVERAGE_SCHEMA, orient="row").write_parquet(tmp_path / "coverage.parquet")
    assert nb.read_coverage(work_dir=tmp_path).height == 1
    assert nb.read_coverage(work_dir=tmp_path / "elsewhere") is None


def test_cumulative_log_returns_span_gaps():
    t = [dt.datetime(2024, 3, 1, h) for h in range(4)]
    close = pl.DataFrame({"inst": ["A"] * 4 + ["B"] * 2, "ts": t + t[:2],
                          "close": [100.0, None, 110.0, 99.0, 10.0, 20.0]})
    cum = nb.cumulative_log_returns(close)
    a = cum.filter(pl.col("inst") == "A")
    assert a["ts"].to_list() == [t[0], t[2], t[3]]  # the missing bar is skipped, not zero-filled
    assert a["cum"].to_list() == pytest.approx([0.0, math.log(1.1), math.log(0.99)])
    assert cum.filter(pl.col("inst") == "B")["cum"].to_list() == pytest.approx([0.0, math.log(2)])


def test_parameters_are_injected_after_the_parameters_cell():
    import nbformat

    notebook = nbformat.read(nb.NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    out = nb.with_parameters(notebook, {"QLIB_DIR": "/data/qlib", "TOP_N": 3})
    injected = out.cells[tagged[0] + 1]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert injected.source == "# Parameters\nQLIB_DIR = '/data/qlib'\nTOP_N = 3\n"
    # every name injected is a parameter the notebook declares
    declared = set(re.findall(r"^(\w+)(?:, (\w+))? =", notebook.cells[tagged[0]].source, re.M))
    names = {n for pair in declared for n in pair if n}
    assert {"QLIB_DIR", "WORK_DIR", "MARKET", "FREQ", "EXAMPLE_SUMMARY", "EXAMPLE_MLFLOW_DIR"} <= names
    assert len(notebook.cells) + 1 == len(out.cells)  # the original is left as it was
    # no outputs are committed: the notebook in the repository is the source, not a result
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")


# --------------------------------------------------------------------------------------------
# The notebook, executed
# --------------------------------------------------------------------------------------------


def add_funding(qlib_dir: Path, *, first_day: dt.date, last_day: dt.date, seed: int = 7) -> dict[str, float]:
    """Write ``funding_rate.day.bin`` for every instrument: each day, the rate of the day's last
    settlement as the simulator settles it. Returns each instrument's mean rate."""
    from feeder.qlib_format import decode_feature, encode_feature
    from feeder.registry import DAY_MS, MINUTE_MS, day_start_ms
    from okxsim import Market

    market = Market(seed=seed, history_start=(first_day - dt.timedelta(days=8)).isoformat(),
                    clock_start=f"{last_day + dt.timedelta(days=1)}T01:00:00Z")
    calendar = [dt.date.fromisoformat(d) for d in (qlib_dir / "calendars" / "day.txt").read_text().split()]
    means = {}
    for feature_dir in sorted((qlib_dir / "features").iterdir()):
        start, close = decode_feature((feature_dir / "close.day.bin").read_bytes())
        spec = market.spec(feature_dir.name.upper())
        iv = spec.funding_hours * 60 * MINUTE_MS
        rates = np.array([market.settled_funding_rate(spec, (day_start_ms(calendar[start + i]) + DAY_MS - 1) // iv * iv)
                          for i in range(len(close))], dtype=np.float32)
        (feature_dir / "funding_rate.day.bin").write_bytes(encode_feature(start, rates))
        means[spec.inst_id] = float(rates.mean())
    return means


def write_work_dir(work: Path, qlib_dir: Path, *, size: int) -> None:
    """coverage.parquet (feeder.coverage's schema) from the dataset's $coverage, with one known
    gap, and universe/<day>.parquet ranked by feeder.universe.rank_day on the dataset's turnover."""
    from feeder.coverage import COVERAGE_SCHEMA
    from feeder.qlib_format import decode_feature
    from feeder.universe import rank_day

    calendar = [dt.date.fromisoformat(d) for d in (qlib_dir / "calendars" / "day.txt").read_text().split()]
    members = set(nb.membership_days(qlib_dir=qlib_dir, market=f"top{size}").iter_rows())
    cov_rows, turnover = [], []
    for feature_dir in sorted((qlib_dir / "features").iterdir()):
        inst = feature_dir.name.upper()
        start, share = decode_feature((feature_dir / "coverage.day.bin").read_bytes())
        _, amount = decode_feature((feature_dir / "amount.day.bin").read_bytes())
        for i, (s, a) in enumerate(zip(share, amount)):
            day = calendar[start + i]
            if np.isnan(s):
                continue
            missing = round(1440 * (1 - float(s))) + (GAP_MISSING if (inst, day) == (GAP_INST, GAP_DAY) else 0)
            cov_rows.append((day, inst, (day, inst) in members, 1440, 1440 - missing, 0, 0, missing, missing, 0, 0, 0))
            turnover.append({"inst": inst, "day": day, "metric": float(a)})
    work.mkdir(parents=True)
    pl.DataFrame(cov_rows, schema=COVERAGE_SCHEMA, orient="row").write_parquet(work / "coverage.parquet")
    daily = pl.DataFrame(turnover)
    (work / "universe").mkdir()
    for day in calendar[1:]:
        rank_day(daily, day=day, size=size, window_days=7).write_parquet(work / "universe" / f"{day}.parquet")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    from research.sample_data import build_sample_qlib

    root = tmp_path_factory.mktemp("notebook")
    qlib_dir = root / "qlib"
    build_sample_qlib(qlib_dir, first_day=FIRST, last_day=LAST, n_symbols=N_SYMBOLS, size=SIZE, freqs=("day",))
    funding = add_funding(qlib_dir, first_day=FIRST, last_day=LAST)
    write_work_dir(root / "work", qlib_dir, size=SIZE)
    return {"root": root, "qlib": qlib_dir, "work": root / "work", "funding": funding}


def outputs_of(executed) -> tuple[str, list[bytes], list[dict]]:
    """All printed text, all PNG images and all error outputs of an executed notebook."""
    text, images, errors = [], [], []
    for cell in executed.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                text.append(out.text)
            elif out.output_type in ("display_data", "execute_result") and "image/png" in out.data:
                images.append(base64.b64decode(out.data["image/png"]))
            elif out.output_type == "error":
                errors.append(out)
    return "".join(text), images, errors


@pytest.mark.e2e
@pytest.mark.slow
def test_notebook_runs_on_a_dataset_and_renders_plots(dataset: dict, tmp_path: Path):
    t0 = time.perf_counter()
    out = tmp_path / "out"
    params = {"QLIB_DIR": str(dataset["qlib"]), "WORK_DIR": str(dataset["work"]), "MARKET": "", "FREQ": "day",
              "TOP_N": 4, "EXAMPLE_SUMMARY": "", "EXAMPLE_FREQ": "day", "EXAMPLE_WINDOWS": [5, 10],
              "EXAMPLE_TOPK": 3, "EXAMPLE_N_DROP": 1, "EXAMPLE_MLFLOW_DIR": str(tmp_path / "mlflow")}
    executed = nb.execute_notebook(params=params, output=out / "explore.ipynb")
    text, images, errors = outputs_of(executed)
    assert not errors
    # coverage heatmap, membership, ranks, returns, funding, IC, equity: one figure each
    assert len(images) == 7 and all(img.startswith(PNG_MAGIC) for img in images)

    members = nb.membership_days(qlib_dir=dataset["qlib"], market=f"top{SIZE}")
    assert f"market top{SIZE}: {members['inst'].n_unique()} coins were members; {members.height} member-days" in text
    import qlib

    qlib.init(provider_uri=str(dataset["qlib"]), region="us", kernels=1)
    insts = members["inst"].unique().to_list()
    top = nb.top_coins(members, n=4, turnover=nb.daily_turnover(insts=insts, first=FIRST, last=LAST))
    assert f"top 4 by member-days, then USDT turnover: {', '.join(top)}" in text
    # the work directory's coverage, with the gap written into it, is what the heatmap shows
    assert f"coverage ({dataset['work']}/coverage.parquet)" in text
    assert f"lowest {1 - GAP_MISSING / 1440:.4f} ({GAP_INST} on {GAP_DAY})" in text
    # the funding plotted is the simulator's
    line = next(ln for ln in text.splitlines() if ln.startswith("mean funding rate per interval:"))
    for inst in top:
        shown = float(re.search(rf"{inst} ([+-][\d.]+)%", line).group(1))
        assert shown == pytest.approx(dataset["funding"][inst] * 100, abs=1e-4)
    # the example model ran and its backtest is what the equity curve shows
    run = re.search(r"example run (\w+): day bars, market top6, (\d+) trees", text)
    assert run and int(run.group(2)) >= 1
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    assert client.get_run(run.group(1)).info.status == "FINISHED"
    art = nb.example_artifacts({"freq": "day", "mlflow": {"uri": client.tracking_uri, "run_id": run.group(1)}})
    report = art["report"]
    assert (f"backtest {len(report)} steps" in text
            and f"account {report['account'].iloc[0]:,.0f} -> {report['account'].iloc[-1]:,.0f} USDT" in text)
    assert f"IC: {len(art['ic'].dropna())} test bars" in text and len(art["ic"].dropna()) >= 5

    html = nb.render_html(executed=out / "explore.ipynb", output=out / "explore.html").read_text()
    embedded = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == 7
    assert "Explore the dataset" in html and f"lowest {1 - GAP_MISSING / 1440:.4f}" in html
    print(f"notebook executed and rendered in {time.perf_counter() - t0:.1f}s")

    # without a work directory, the heatmap's coverage is the dataset's $coverage: the same shares
    from_dataset = nb.coverage_from_dataset(insts=members["inst"].unique().to_list(), first=FIRST, last=LAST)
    work = (nb.read_coverage(work_dir=dataset["work"]).filter(pl.col("inst").is_in(members["inst"].unique()))
            .select("day", "inst", "share"))
    assert from_dataset.height == work.height > 0
    joined = from_dataset.join(work, on=["day", "inst"], suffix="_work")
    assert joined.height == work.height
    assert ((joined["share"] - joined["share_work"]).abs() <= 1 / 1440 + 1e-6).sum() == joined.height - 1  # not the gap


def test_a_wrong_path_says_which_and_what_to_do(tmp_path: Path):
    """The notebook's first data cell reads the calendar: a wrong QLIB_DIR names the file and the fix."""
    with pytest.raises(FileNotFoundError, match=r"calendars/60min\.txt: this Qlib directory has no 60min calendar; "
                                                 r"build it with '60min' in config.yaml frequencies"):
        nb.read_calendar(qlib_dir=tmp_path, freq="60min")
