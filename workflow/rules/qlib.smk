# Qlib export: calendars, instruments (all + point-in-time top<N>) and float32 feature bins.


rule qlib:
    input:
        bars=expand(f"{WORK}/bars/{{freq}}/{{day}}.parquet", freq=FREQS, day=DAYS),
        universes=expand(f"{WORK}/universe/{{day}}.parquet", day=DAYS),
    output:
        directory(QLIB_DIR),
    params:
        freqs=FREQS,
        days=DAYS,
        market=MARKET,
    log:
        f"{LOGS}/qlib.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/qlib_export.py"
