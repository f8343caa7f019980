# Cleaning: one job per UTC day reads the day's sealed shards once (archive + stream + REST) and writes
# one deduplicated, typed Parquet per symbol-day, a quality report, and the day's coverage:
# per symbol, bars expected (listed minutes), from the archive, the stream, repaired from REST, and missing
# with the reason (exchange has none / fetch failed / not attempted). Nothing is filled in.
# (Coverage is accounted here, not in a job of its own: a job's start-up costs more than it.)
# Conflicting copies, implausible bars (clean.spike_factor, the value the backfill used to fetch
# them from REST) and bars of instruments not listed are flagged in the quality report.


rule clean:
    input:
        unpack(archive_of_day),
        stream=ws_candle_shards,
        rest=rules.backfill.output.shard,
        universe=f"{WORK}/universe/{{day}}.parquet",
        instruments=lambda wc: f"{WORK}/reference/instruments/{prev_day(wc.day)}.parquet",
        backfill=rules.backfill.output.summary,
    output:
        bars=directory(f"{WORK}/clean/{{day}}"),
        quality=f"{WORK}/quality/{{day}}.json",
        coverage=f"{WORK}/coverage/{{day}}.parquet",
    params:
        spike_factor=config["clean"]["spike_factor"],
    threads: 1
    resources:
        mem_mb=scaled(2048),
        runtime=scaled(15),
    log:
        f"{LOGS}/clean/{{day}}.log",
    conda:
        "../../envs/transform.yaml"
    script:
        "../scripts/clean.py"
