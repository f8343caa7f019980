# Resampling: 1m bars of one day -> one configured frequency (UTC-aligned, labelled by open).


rule resample:
    input:
        rules.clean.output.bars,
    output:
        f"{WORK}/bars/{{freq}}/{{day}}.parquet",
    log:
        f"{LOGS}/resample/{{freq}}/{{day}}.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/resample.py"
