# Funding rates, open interest and (when collected) trades: one job per UTC day each, attached
# to the bars as point-in-time fields by the resample rule (see docs/fields.md).
#
# funding_history  REST funding-rate-history of the day's universe members -> raw rest shard
#                  (a per-instrument cache in work/.funding-history makes later days free)
#                  The clean rule (clean.smk) cleans it with the stream's settled rates and
#                  open-interest pushes: they are too small for a job of their own.
# clean_trades     per-minute trade counts and taker buy volume (only with the trades channel)
# clean_books      per-minute order-book sums (only with the books5 channel; books.smk)

include: "funding_inputs.smk"
include: "books.smk"


rule funding_history:
    input:
        universe=rules.universe.output[0],
    output:
        f"{RAW}/rest/funding-rate/{{day}}.jsonl",
    params:
        exchange=rest_params(),
        cache_dir=f"{WORK}/.funding-history",
    threads: 1
    resources:
        okx_rest=1,
        mem_mb=scaled(512),
        runtime=scaled(30),
    # REST jobs run where the workflow runs, also on a cluster: OKX limits requests per IP
    # (one IP, one shared rate-limit state), and compute nodes often have no internet.
    localrule: True
    log:
        f"{LOGS}/funding_history/{{day}}.log",
    conda:
        "../../envs/rest.yaml"
    script:
        "../scripts/funding_history.py"


if TRADES_COLLECTED:

    rule clean_trades:
        input:
            stream=ws_trade_shards,
            # ctVal: the instrument list as known when the day before was ranked
            instruments=lambda wc: f"{WORK}/reference/instruments/{prev_day(wc.day)}.parquet",
        output:
            trades=f"{WORK}/trades/{{day}}.parquet",
            quality=f"{WORK}/quality/trades/{{day}}.json",
        threads: 1
        resources:
            mem_mb=scaled(2048),
            runtime=scaled(15),
        log:
            f"{LOGS}/clean_trades/{{day}}.log",
        conda:
            "../../envs/transform.yaml"
        script:
            "../scripts/clean_trades.py"
