# Qlib export: calendars, instruments (all + point-in-time top<N>) and float32 feature bins.
# Fields: docs/fields.md. open_interest needs the open-interest channel, n_trades and
# taker_buy_volume the trades channel; without them those fields would be all NaN, so they
# are not written.

QLIB_FIELDS = [
    "open", "high", "low", "close", "volume", "amount", "vwap", "factor", "coverage", "funding_rate",
    *(["open_interest"] if "open-interest" in CHANNELS else []),
    *(["n_trades", "taker_buy_volume"] if TRADES_COLLECTED else []),
]  # fmt: skip


rule qlib:
    input:
        bars=expand(f"{WORK}/bars/{{freq}}/{{day}}.parquet", freq=FREQS, day=DAYS),
        universes=expand(f"{WORK}/universe/{{day}}.parquet", day=DAYS),
    output:
        # A manifest, not the directory itself: Snakemake deletes a job's outputs before it
        # runs, and readers (a notebook, a backtest) must keep seeing the previous dataset until
        # the new one is swapped in whole. The directory is paths.qlib.
        QLIB_MANIFEST,
    params:
        qlib_dir=QLIB_DIR,
        freqs=FREQS,
        days=DAYS,
        market=MARKET,
        fields=QLIB_FIELDS,
    log:
        f"{LOGS}/qlib.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/qlib_export.py"
