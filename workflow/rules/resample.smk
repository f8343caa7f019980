# Resampling: 1m bars of one day -> every configured frequency (UTC-aligned, labelled by open),
# with funding rate and open interest attached as of each bar's close (point-in-time), and
# trade counts / taker buy volume when the trades channel is collected.


rule resample:
    input:
        bars=rules.clean.output.bars,
        funding=rules.clean_funding_oi.output.funding,
        open_interest=rules.clean_funding_oi.output.open_interest,
        trades=trades_of_day,
    output:
        # one job per day writes every frequency: a job's start-up costs more than the work
        expand(f"{WORK}/bars/{{freq}}/{{{{day}}}}.parquet", freq=FREQS),
    params:
        freqs=FREQS,
    log:
        f"{LOGS}/resample/{{day}}.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/resample.py"
