# The data quality report: one self-contained HTML page (coverage heatmap, gaps, conflicts and
# flagged bars from the quality JSON, universe membership and churn, turnover, funding when
# recorded). Part of `all`, so every build renders it; on its own:
#   snakemake --cores 2 quality_report
# Being in the default target, it also shows up in Snakemake's own report
# (`snakemake --report report.html`, after a build), which shows report() outputs of those jobs only.
from feeder.registry import freq_minutes

# Turnover (and funding, when the bars carry it) is read from the coarsest built frequency:
# fewest rows, and every frequency sums to the same daily turnover.
REPORT_FREQ = max(FREQS, key=freq_minutes)
QUALITY_REPORT = f"{WORK}/report/quality.html"


rule quality_report:
    input:
        quality=expand(f"{WORK}/quality/{{day}}.json", day=DAYS),
        universes=expand(f"{WORK}/universe/{{day}}.parquet", day=DAYS),
        coverage=expand(f"{WORK}/coverage/{{day}}.parquet", day=DAYS),
        bars=expand(f"{WORK}/bars/{REPORT_FREQ}/{{day}}.parquet", day=DAYS),
    output:
        report(
            QUALITY_REPORT,
            category="Data quality",
            labels={"report": "quality (coverage, gaps, flagged bars, universe, turnover, funding)"},
        ),
    params:
        days=DAYS,
        market=MARKET,
        bars_freq=REPORT_FREQ,
    # one: rendering is single-threaded; it runs beside the export
    threads: 1
    resources:
        mem_mb=scaled(2048),
        runtime=scaled(15),
    log:
        f"{LOGS}/quality_report.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report.py"
