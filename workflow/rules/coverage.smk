# Coverage of the whole build: the clean jobs' per-day tables in one Parquet, and the member
# gaps as a CSV a person can open (work/gaps.csv).


rule coverage:
    input:
        expand(f"{WORK}/coverage/{{day}}.parquet", day=DAYS),
    output:
        table=f"{WORK}/coverage.parquet",
        gaps=f"{WORK}/gaps.csv",
    # one: a second of work, which can then run while the day jobs still run
    threads: 1
    resources:
        mem_mb=scaled(1024),
        runtime=scaled(10),
    log:
        f"{LOGS}/coverage.log",
    conda:
        "../../envs/transform.yaml"
    script:
        "../scripts/coverage.py"
