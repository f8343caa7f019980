# Order-book fields (only with the books5 channel): one job per UTC day turns the day's books5
# shards, plus the previous day's last receipt hour(s) (a book from 23:59:30 is still the state at
# 00:00:10), into per-minute sums over the seconds with a book; the resample rule divides them
# into spread_bps, depth_bid_25bps, depth_ask_25bps, imbalance and book_coverage at every
# frequency (docs/fields.md, "Order-book fields").
#
# clean_books   books5 shards -> work/books/<day>.parquet + work/quality/books/<day>.json

if BOOKS_COLLECTED:

    rule clean_books:
        input:
            stream=ws_book_shards,
            # ctVal: the instrument list as known when the day before was ranked
            instruments=lambda wc: f"{WORK}/reference/instruments/{prev_day(wc.day)}.parquet",
        output:
            books=f"{WORK}/books/{{day}}.parquet",
            quality=f"{WORK}/quality/books/{{day}}.json",
        params:
            max_age_s=config["books"]["max_age_s"],
        threads: 1
        resources:
            mem_mb=scaled(2048),
            runtime=scaled(15),
        log:
            f"{LOGS}/clean_books/{{day}}.log",
        conda:
            "../../envs/transform.yaml"
        script:
            "../scripts/clean_books.py"
