# Qlib export: the resample jobs wrote each day as calendar-aligned float32 day blocks; `qlib`
# concatenates them into a complete provider directory (calendars, instruments: all + the
# point-in-time top<N>, feature bins) and `publish_qlib` swaps it in at paths.qlib.


rule qlib:
    input:
        blocks=expand(f"{WORK}/qlib-blocks/{{freq}}/{{day}}.arrow", freq=FREQS, day=DAYS),
        universes=expand(f"{WORK}/universe/{{day}}.parquet", day=DAYS),
    output:
        dataset=directory(QLIB_DATASET),
        summary=f"{WORK}/qlib-summary.json",
    params:
        freqs=FREQS,
        days=DAYS,
        market=MARKET,
        fields=QLIB_FIELDS,
    resources:
        mem_mb=scaled(2048),
        runtime=scaled(60),
    log:
        f"{LOGS}/qlib.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/qlib_export.py"


# Readers (a notebook, a backtest) must keep seeing the previous dataset until the new one is
# complete, and Snakemake deletes a job's outputs before it runs: so the dataset is published
# as a new version (hard links, no copy) behind the paths.qlib symlink, switched in one rename.
# Local: Qlib reads local files, so this runs where the workflow runs, also with remote storage.
rule publish_qlib:
    input:
        dataset=QLIB_DATASET,
        summary=rules.qlib.output.summary,
    output:
        QLIB_MANIFEST,
    params:
        qlib_dir=QLIB_DIR,
    localrule: True
    log:
        f"{LOGS}/publish_qlib.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/publish_qlib.py"
