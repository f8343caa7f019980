# Cleaning: one job per UTC day reads the day's sealed candle shards once (archive + stream + REST) and
# writes one deduplicated, typed Parquet per symbol-day, a quality report, and the day's coverage:
# per symbol, bars expected (listed minutes), from the archive, the stream, repaired from REST, and missing
# with the reason (exchange has none / fetch failed / not attempted). Nothing is filled in.
# The same job cleans the day's settled funding rates (REST + stream) and open-interest pushes
# (feeder.clean_funding, feeder.clean_open_interest): the resample rule attaches them as
# point-in-time fields. (Coverage, funding and open interest are cleaned here, not in jobs of their
# own: a job's start-up, ~0.5 s of CPU, costs more than their work.)
# Conflicting copies, implausible bars (clean.spike_factor, the value the backfill used to fetch
# them from REST) and bars of instruments not listed are flagged in the quality report.


rule clean:
    input:
        unpack(archive_of_day),
        stream=ws_candle_shards,
        rest=rules.backfill.output.shard,
        universe=rules.universe.output[0],
        instruments=lambda wc: f"{WORK}/reference/instruments/{prev_day(wc.day)}.parquet",
        backfill=rules.backfill.output.summary,
        funding_rest=rules.funding_history.output[0],
        funding_stream=ws_funding_shards,
        open_interest_stream=ws_open_interest_shards,
    output:
        bars=directory(f"{WORK}/clean/{{day}}"),
        quality=f"{WORK}/quality/{{day}}.json",
        coverage=f"{WORK}/coverage/{{day}}.parquet",
        funding=f"{WORK}/funding/{{day}}.parquet",
        open_interest=f"{WORK}/open_interest/{{day}}.parquet",
        funding_quality=f"{WORK}/quality/funding/{{day}}.json",
        open_interest_quality=f"{WORK}/quality/open-interest/{{day}}.json",
    params:
        job=script_job(spike_factor=config["clean"]["spike_factor"]),
    threads: 1
    resources:
        mem_mb=scaled(2048),
        runtime=scaled(15),
    log:
        f"{LOGS}/clean/{{day}}.log",
    conda:
        "../../envs/transform.yaml"
    shell:
        '"$FEEDER_JOB_PYTHON" -m feeder.job "$FEEDER_JOB_SCRIPTS/clean.py" {params.job:q} {log:q}'
