# Backfill and gap repair (one mechanism): fetch from OKX REST exactly the 1m bars that the
# WebSocket shards lack for the day's universe members.


rule backfill:
    input:
        universe=universe_of_day,
        stream=ws_candle_shards,
    output:
        f"{RAW}/rest/candle1m/{{day}}.jsonl",
    params:
        exchange=rest_params(),
    resources:
        okx_rest=1,
    log:
        f"{LOGS}/backfill/{{day}}.log",
    conda:
        "../../envs/feeder.yaml"
    script:
        "../scripts/backfill.py"
