# Resampling: 1m bars of one day -> every configured frequency (UTC-aligned, labelled by open),
# with funding rate and open interest attached as of each bar's close (point-in-time), and
# trade counts / taker buy volume when the trades channel is collected, and the order-book fields
# (time-weighted over the bar's seconds with a book) when books5 is. Each frequency is also
# written as the Qlib export's day block (feeder.qlib_blocks.day_block), so the export only
# concatenates days and adding a day never re-reads the history.


rule resample:
    input:
        bars=rules.clean.output.bars,
        funding=rules.clean.output.funding,
        open_interest=rules.clean.output.open_interest,
        trades=trades_of_day,
        books=books_of_day,
    output:
        # one job per day writes every frequency: a job's start-up costs more than the work
        bars=expand(f"{WORK}/bars/{{freq}}/{{{{day}}}}.parquet", freq=FREQS),
        blocks=expand(f"{WORK}/qlib-blocks/{{freq}}/{{{{day}}}}.arrow", freq=FREQS),
    params:
        job=script_job(freqs=FREQS, fields=QLIB_FIELDS),
    threads: 1
    resources:
        mem_mb=scaled(2048),
        runtime=scaled(15),
    log:
        f"{LOGS}/resample/{{day}}.log",
    conda:
        "../../envs/transform.yaml"
    shell:
        '"$FEEDER_JOB_PYTHON" -m feeder.job "$FEEDER_JOB_SCRIPTS/resample.py" {params.job:q} {log:q}'
