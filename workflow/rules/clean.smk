# Cleaning: one job per UTC day reads the day's sealed shards once (stream + REST) and writes
# one deduplicated, typed Parquet per symbol-day plus a quality report.


rule clean:
    input:
        stream=ws_candle_shards,
        rest=rules.backfill.output[0],
    output:
        bars=directory(f"{WORK}/clean/{{day}}"),
        quality=f"{WORK}/quality/{{day}}.json",
    log:
        f"{LOGS}/clean/{{day}}.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/clean.py"
