# Config validation, the list of days to build and input functions shared by the rules.
import datetime as dt
from pathlib import Path

from snakemake.utils import validate

from feeder.config import build_days, explain_mistakes, market_name

_problems = explain_mistakes(config)
if _problems:
    raise ValueError("config is invalid:\n  - " + "\n  - ".join(_problems))
validate(config, schema="../schemas/config.schema.yaml")

RAW = config["paths"]["raw"]
WORK = config["paths"]["work"]
QLIB_DIR = config["paths"]["qlib"]
QLIB_MANIFEST = f"{WORK}/qlib-published.json"
DAYS = [d.isoformat() for d in build_days(config)]
FREQS = config["frequencies"]
MARKET = market_name(config)
LOGS = f"{WORK}/logs"


wildcard_constraints:
    day=r"\d{4}-\d{2}-\d{2}",
    freq=r"day|\d+min",


def next_day(day: str) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()


def ws_shards(channel: str, day: str) -> list[str]:
    """Sealed WebSocket shards holding `day`'s data of `channel`.

    Shards are partitioned by receipt hour, so the closing candle of 23:59 usually sits in the
    next day's 00 shard: that hour is included. `.jsonl.open` files (still being written) are not.
    """
    base = Path(RAW) / "ws" / channel
    paths = sorted((base / day).glob("*/*.jsonl"))
    paths += sorted((base / next_day(day) / "00").glob("*.jsonl"))
    return [str(p) for p in paths]


def ws_candle_shards(wildcards) -> list[str]:
    return ws_shards("candle1m", wildcards.day)


def rest_params() -> dict:
    """What the REST-calling scripts need to build their client (no secrets: public API only).

    `rate_state_dir` makes every job share one rate-limit window per endpoint: OKX counts
    requests per IP, not per process.
    """
    return dict(config["exchange"], rate_state_dir=f"{WORK}/.okx-rate-limits")


def universe_of_day(wildcards) -> str:
    """The day's ranking; the universe checkpoint decides which instruments the day needs."""
    return checkpoints.universe.get(day=wildcards.day).output[0]


def prev_day(day: str) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()


def window_daily_metrics(wildcards) -> list[str]:
    """The daily metric files of the `window_days` days before the day (never the day itself)."""
    day = dt.date.fromisoformat(wildcards.day)
    rank_by = config["universe"]["rank_by"]
    return [f"{WORK}/reference/daily_{rank_by}/{day - dt.timedelta(days=k)}.parquet"
            for k in range(config["universe"]["window_days"], 0, -1)]
