# Point-in-time universes: each day's ranking metric (and instrument snapshot), then one ranking
# per UTC day from the days before it. Everything is per day, so adding a day never rewrites,
# and so never rebuilds, the days already built.
#
# `universe` is a plain rule, not a checkpoint: the ranking decides what goes *into* each day's
# files (which instruments the archive, backfill and clean jobs handle), never which files exist
# (every stage writes one file or directory per day). A checkpoint would plan the same jobs, and
# Snakemake re-creates every job depending on a finished checkpoint at each DAG build: 40 % of
# the DAG time of a run on a 365-day store (profiled), paid again after every universe job.


rule daily_metrics:
    output:
        daily=f"{WORK}/reference/daily_{config['universe']['rank_by']}/{{day}}.parquet",
        instruments=f"{WORK}/reference/instruments/{{day}}.parquet",
    params:
        exchange=rest_params(),
        # only the keys the metric depends on (ranking, eligibility): a new universe.size or
        # window_days re-ranks the days (the universe job), it never re-fetches their metrics
        universe={key: config["universe"][key] for key in UNIVERSE_METRIC_KEYS},
        history_start=(
            dt.date.fromisoformat(DAYS[0])
            - dt.timedelta(days=config["universe"]["window_days"])
        ).isoformat(),
        snapshot_dir=f"{RAW}/rest/instruments",
        cache_dir=f"{WORK}/.daily-metric-cache",
        # instruments known only from OKX's archive listing (delisted before the first snapshot)
        archive_cache=ARCHIVE_CACHE if FROM_ARCHIVE else None,
        download_concurrency=config["history"]["download_concurrency"],
    threads: 1
    resources:
        okx_rest=1,
        mem_mb=scaled(512),
        runtime=scaled(30),
    # REST jobs run where the workflow runs, also on a cluster: OKX limits requests per IP
    # (one IP, one shared rate-limit state), and compute nodes often have no internet.
    localrule: True
    log:
        f"{LOGS}/daily_metrics/{{day}}.log",
    conda:
        "../../envs/rest.yaml"
    script:
        "../scripts/daily_metrics.py"


rule universe:
    input:
        daily=window_daily_metrics,
        instruments=lambda wc: f"{WORK}/reference/instruments/{prev_day(wc.day)}.parquet",
    output:
        f"{WORK}/universe/{{day}}.parquet",
    params:
        size=config["universe"]["size"],
        window_days=config["universe"]["window_days"],
    threads: 1
    resources:
        mem_mb=scaled(512),
        runtime=scaled(5),
    log:
        f"{LOGS}/universe/{{day}}.log",
    conda:
        "../../envs/transform.yaml"
    script:
        "../scripts/universe.py"
