# Archive: OKX's official data archive (GET /api/v5/public/market-data-history, then the zip
# files at the URLs it returns) as the bulk source of 1-minute history (history.source
# archive+rest). One job per UTC day converts the files covering the day's universe members into
# a raw shard (source "archive", the files' strings verbatim), so cleaning reads it like the other
# shards. Files are downloaded once into the archive cache (paths.archive) and shared by the
# days they cover: a monthly file serves the whole month. The archive's daily files are UTC+8
# days, so a UTC day reads two of them (or two months' files on the last day of a month).
# A file the archive has not published (T+2, or missing) or could not read (unknown layout)
# covers nothing, and the backfill asks REST for those minutes; a download that keeps failing
# (throttled, truncated) fails the day, and a re-run downloads only what is missing.


rule archive:
    input:
        universe=rules.universe.output[0],
    output:
        shard=f"{RAW}/archive/candle1m/{{day}}.jsonl",
        summary=f"{WORK}/archive/{{day}}.json",
    params:
        exchange=rest_params(),
        inst_type=config["universe"]["inst_type"],
        cache_dir=ARCHIVE_CACHE,
        concurrency=config["history"]["download_concurrency"],
    threads: 1
    resources:
        okx_rest=1,
        mem_mb=scaled(1024),
        runtime=scaled(60),
    # downloads run where the workflow runs, like the REST jobs: compute nodes often have no internet
    localrule: True
    log:
        f"{LOGS}/archive/{{day}}.log",
    conda:
        "../../envs/rest.yaml"
    script:
        "../scripts/archive.py"
