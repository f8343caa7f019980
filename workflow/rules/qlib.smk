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
        # read only: the published dataset new days are appended to (feeder.qlib_export.plan_append)
        qlib_dir=QLIB_DIR,
        # deleted first: a failed build must not leave the previous publish's record standing
        manifest=QLIB_MANIFEST,
    # one: the export copies bytes (measured: the same time with 1 or 2 threads), and a
    # single-core job can run beside the quality report instead of after it
    threads: 1
    resources:
        mem_mb=scaled(2048),
        runtime=scaled(60),
    log:
        f"{LOGS}/qlib.log",
    conda:
        "../../envs/transform.yaml"
    script:
        "../scripts/qlib_export.py"


# Readers (a notebook, a backtest) must keep seeing the previous dataset until the new one is
# complete, and Snakemake deletes a job's outputs before it runs: so the dataset is published
# as a new version (hard links, no copy) behind the paths.qlib symlink, switched in one rename.
# Local: Qlib reads local files, so this runs where the workflow runs, also with remote storage.
#
# A failed `qlib` job must make the next run rebuild and publish. Snakemake (9.27) records a
# failed job's metadata as if it had finished (its params and input checksums): the next run
# then sees `qlib` as up to date, and its missing outputs are not needed while the manifest
# exists. Two things undo that: the `qlib` job deletes the manifest before building (a local
# file; with remote storage that is a no-op), and the request (days, freqs, market, fields) is
# a param here too, so a run asking for other days reruns this rule, which needs `qlib`.
rule publish_qlib:
    input:
        dataset=QLIB_DATASET,
        summary=rules.qlib.output.summary,
    output:
        QLIB_MANIFEST,
    params:
        qlib_dir=QLIB_DIR,
        days=DAYS,
        freqs=FREQS,
        market=MARKET,
        fields=QLIB_FIELDS,
    threads: 1
    localrule: True
    log:
        f"{LOGS}/publish_qlib.log",
    conda:
        "../../envs/transform.yaml"
    script:
        "../scripts/publish_qlib.py"
