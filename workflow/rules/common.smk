# Config validation, the list of days to build and input functions shared by the rules.
import datetime as dt
import functools
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

from feeder.job import job_json
from feeder.config import EXCHANGE_REST_KEYS, UNIVERSE_METRIC_KEYS, build_days, check_config, market_name
from feeder.publish import MANIFEST_NAME
from feeder.registry import FREQ_PATTERN
from feeder.shards import previous_day_hours


def config_source() -> str:
    """The config files this run read (and its --config overrides): named when the config is refused."""
    files = dict.fromkeys(str(Path(f).resolve()) for f in workflow.configfiles)
    overrides = workflow.config_settings.config_args or []
    overrides = overrides if isinstance(overrides, str) else " ".join(overrides)
    return (" + ".join(files) or "the config") + (f" with --config {overrides}" if overrides else "")


# The one config check (feeder.config.check_config), as in the collector and the scheduler: the
# human hints, the schema shipped in the feeder package, then the schema's defaults, in place.
check_config(config, source=config_source())

RAW = config["paths"]["raw"]
WORK = config["paths"]["work"]
QLIB_DIR = config["paths"]["qlib"]
QLIB_DATASET = f"{WORK}/qlib-dataset"  # the built provider directory (published at paths.qlib)
QLIB_MANIFEST = f"{WORK}/{MANIFEST_NAME}"  # what was published where (read by driver.schedule status)
DAYS = [d.isoformat() for d in build_days(config)]
FREQS = config["frequencies"]
MARKET = market_name(config)
LOGS = f"{WORK}/logs"
FROM_ARCHIVE = config["history"]["source"] == "archive+rest"
ARCHIVE_CACHE = config["paths"]["archive"] or f"{RAW}/archive-files"

wildcard_constraints:
    day=r"\d{4}-\d{2}-\d{2}",
    freq=FREQ_PATTERN,


def scaled(amount: int):
    """A resource that grows with the attempt number: a job killed for memory or time on a
    cluster is retried (``--retries``) with twice, then three times, as much.

    The rules' mem_mb (MB) and runtime (minutes) come from measured peaks (python -m
    bench.rule_memory, 50 instruments a day: clean 194 MB, resample 253 MB, qlib 281 MB over
    30 days, coverage 77 MB, REST jobs ~90 MB), with room for 300 instruments a day and a year.
    """
    return lambda wildcards, attempt: amount * attempt


# The day rules (clean, resample) run their scripts with `python -m feeder.job` instead of
# `script:`, whose preamble imports Snakemake into every job (see feeder/job.py). The shell command
# names the interpreter and the scripts' directory through these two variables, so that it stays
# the same text wherever the project lies: Snakemake would rerun every job whose command changed.
# The interpreter is the one `script:` would use: Snakemake's own, or the environment's `python`
# when jobs run in a conda environment or container (--sdm).
os.environ.update(
    FEEDER_JOB_PYTHON=os.environ.get("FEEDER_JOB_PYTHON")
    or ("python" if workflow.deployment_settings.deployment_method else sys.executable),
    FEEDER_JOB_SCRIPTS=str(Path(workflow.basedir) / "workflow" / "scripts"),
)


def script_job(**params):
    """``params.job`` for `python -m feeder.job` (clean, resample): the job's files, wildcards and
    ``params`` as one JSON argument (feeder.job.job_json)."""
    return lambda wildcards, input, output: job_json(input=input, output=output, wildcards=wildcards, params=params)


def next_day(day: str) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()


def list_matches(pattern: str):
    """glob_wildcards(pattern) where Snakemake will look for the files: on the default storage
    provider when the run has one (``--default-storage-provider s3 ...``), else on disk.

    Listing through Snakemake's storage rather than Path.glob keeps the rules free of hand-made
    local paths: the same workflow lists raw shards in a directory or under an S3 prefix.
    On S3 the keys are listed with the storage plugin's own boto3 session:
    snakemake-storage-plugin-s3 0.3.6's list_candidate_matches() rejects every s3:// query.
    """
    settings = workflow.storage_settings
    if settings.default_storage_provider is None:
        return glob_wildcards(pattern)
    prefix = os.path.join(settings.default_storage_prefix, "")  # with one trailing separator
    target = workflow.modifier.path_modifier.apply_default_storage(pattern)
    storage_object = target.flags["storage_object"]
    if settings.default_storage_provider == "s3":
        bucket, _, key_prefix = prefix[len("s3://"):].partition("/")
        listed = storage_object.provider.s3c.Bucket(bucket).objects.filter(
            Prefix=key_prefix + pattern[: pattern.index("{")])
        queries = (f"s3://{bucket}/{item.key}" for item in listed)
    else:
        queries = storage_object.list_candidate_matches()
    return glob_wildcards(pattern, files=[q[len(prefix):] for q in queries if q.startswith(prefix)])


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_HOUR = re.compile(r"\d{2}")


@functools.cache
def sealed_shards(channel: str) -> dict[tuple[str, str], list[str]]:
    """Every sealed WebSocket shard of ``channel``, by (receipt day, hour): one listing per run.

    Only ``*.jsonl`` and ``*.jsonl.zst`` files are shards; ``.jsonl.open`` ones are still being written.
    """
    found = list_matches(f"{RAW}/ws/{channel}/{{day}}/{{hour}}/{{name,[^/]+\\.jsonl(?:\\.zst)?}}")
    shards = defaultdict(list)
    for day, hour, name in zip(found.day, found.hour, found.name):
        if _DAY.fullmatch(day) and _HOUR.fullmatch(hour) and "/" not in name:
            shards[(day, hour)].append(f"{RAW}/ws/{channel}/{day}/{hour}/{name}")
    return {key: sorted(paths) for key, paths in shards.items()}


def shards_of_hours(channel: str, day: str, hours) -> list[str]:
    shards = sealed_shards(channel)
    return [path for hour in hours for path in shards.get((day, f"{hour:02d}"), [])]


def ws_shards(channel: str, day: str) -> list[str]:
    """Sealed WebSocket shards holding ``day``'s data of ``channel``.

    Shards are partitioned by receipt hour, so the closing candle of 23:59 usually sits in the
    next day's 00 shard: that hour is included.
    """
    return shards_of_hours(channel, day, range(24)) + shards_of_hours(channel, next_day(day), [0])


def ws_candle_shards(wildcards) -> list[str]:
    return ws_shards("candle1m", wildcards.day)


def ws_book_shards(wildcards) -> list[str]:
    """books5 shards for day D: D's (ws_shards) and the last receipt hours of D-1 that can hold a
    book still the state at D 00:00:00 (books.max_age_s; feeder.shards.previous_day_hours)."""
    hours = previous_day_hours(config["books"]["max_age_s"])
    paths = shards_of_hours("books5", prev_day(wildcards.day), hours) + ws_shards("books5", wildcards.day)
    return list(dict.fromkeys(paths))


def rest_params() -> dict:
    """What the REST-calling scripts need to build their client (no secrets: public API only).

    Only the keys the client reads: a rule's params are part of what Snakemake compares to decide
    whether a job re-runs. `rate_state_dir` makes every job share one rate-limit window per
    endpoint: OKX counts requests per IP, not per process.
    """
    exchange = {key: config["exchange"][key] for key in EXCHANGE_REST_KEYS if key in config["exchange"]}
    return dict(exchange, rate_state_dir=f"{WORK}/.okx-rate-limits")


def prev_day(day: str) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()


def window_daily_metrics(wildcards) -> list[str]:
    """The daily metric files of the `window_days` days before the day (never the day itself)."""
    day = dt.date.fromisoformat(wildcards.day)
    rank_by = config["universe"]["rank_by"]
    return [f"{WORK}/reference/daily_{rank_by}/{day - dt.timedelta(days=k)}.parquet"
            for k in range(config["universe"]["window_days"], 0, -1)]


def archive_of_day(wildcards) -> dict[str, str]:
    """The day's archive shard and summary (history.source archive+rest); none with history.source rest."""
    if not FROM_ARCHIVE:
        return {}
    return {"archive": f"{RAW}/archive/candle1m/{wildcards.day}.jsonl",
            "archive_summary": f"{WORK}/archive/{wildcards.day}.json"}
