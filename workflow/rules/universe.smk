# Point-in-time universes: the instrument list, daily turnover, and one ranking per UTC day.


rule instruments:
    output:
        f"{WORK}/reference/instruments.parquet",
    params:
        exchange=rest_params(),
        inst_type=config["universe"]["inst_type"],
        snapshot_dir=f"{RAW}/rest/instruments",
        # Changes once per UTC day, so the first run of each day records that day's listing.
        refreshed_on=dt.datetime.now(dt.timezone.utc).date().isoformat(),
    resources:
        okx_rest=1,
    log:
        f"{LOGS}/instruments.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/instruments.py"


rule daily_metrics:
    input:
        instruments=rules.instruments.output[0],
    output:
        f"{WORK}/reference/daily_{config['universe']['rank_by']}.parquet",
    params:
        exchange=rest_params(),
        universe=config["universe"],
        first_day=(
            dt.date.fromisoformat(DAYS[0])
            - dt.timedelta(days=config["universe"]["window_days"])
        ).isoformat(),
        last_day=DAYS[-1],
    resources:
        okx_rest=1,
    log:
        f"{LOGS}/daily_metrics.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/daily_metrics.py"


# A day's universe uses only data from before it, which no later fetch changes: `ancient`
# keeps refreshed reference files from re-ranking (and so rebuilding) days already built.
checkpoint universe:
    input:
        daily=ancient(rules.daily_metrics.output[0]),
        instruments=ancient(rules.instruments.output[0]),
    output:
        f"{WORK}/universe/{{day}}.parquet",
    params:
        size=config["universe"]["size"],
        window_days=config["universe"]["window_days"],
    log:
        f"{LOGS}/universe/{{day}}.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/universe.py"
