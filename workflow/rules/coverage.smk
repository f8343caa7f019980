# Coverage: per symbol-day, bars expected, from the stream, repaired from REST, and missing
# with the reason (exchange has none / fetch failed / not attempted). Nothing is filled in.


rule coverage_day:
    input:
        clean=rules.clean.output.bars,
        universe=f"{WORK}/universe/{{day}}.parquet",
        instruments=lambda wc: f"{WORK}/reference/instruments/{prev_day(wc.day)}.parquet",
        backfill=rules.backfill.output.summary,
    output:
        f"{WORK}/coverage/{{day}}.parquet",
    log:
        f"{LOGS}/coverage/{{day}}.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/coverage_day.py"


rule coverage:
    input:
        expand(f"{WORK}/coverage/{{day}}.parquet", day=DAYS),
    output:
        table=f"{WORK}/coverage.parquet",
        gaps=f"{WORK}/gaps.csv",
    log:
        f"{LOGS}/coverage.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/coverage.py"
