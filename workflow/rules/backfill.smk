# Backfill and gap repair (one mechanism, three sources): fetch from OKX REST exactly the 1m
# bars of the day's universe members that neither the archive shard (archive.smk: minutes of
# archive files read; a minute such a file leaves out had no trades) nor the WebSocket shards have. Fetched ranges are also kept as
# immutable pieces in raw/rest/candle1m/<day>.fetched/ (the fetch log), so an interrupted or
# repeated backfill never asks OKX for the same range twice. A streamed candle counts only if
# cleaning would keep it as streamed (feeder.checks): rejected, conflicting or implausible ones
# (clean.spike_factor) are fetched, so cleaning can keep the exchange's answer. "The exchange has no candle here"
# is recorded only once confirmed; `backfill.recheck_absent: true` asks those ranges again.
# The job fails (and writes nothing) if any member was refused, garbled or unconfirmed; a
# re-run fetches only what is still missing.


rule backfill:
    input:
        unpack(archive_of_day),
        universe=rules.universe.output[0],
        stream=ws_candle_shards,
    output:
        shard=f"{RAW}/rest/candle1m/{{day}}.jsonl",
        summary=f"{WORK}/backfill/{{day}}.json",
    params:
        exchange=rest_params(),
        spike_factor=config["clean"]["spike_factor"],
        recheck_absent=config.get("backfill", {}).get("recheck_absent", False),
    threads: 1
    resources:
        okx_rest=1,
        mem_mb=scaled(1024),
        runtime=scaled(60),
    # REST jobs run where the workflow runs, also on a cluster: OKX limits requests per IP
    # (one IP, one shared rate-limit state), and compute nodes often have no internet.
    localrule: True
    log:
        f"{LOGS}/backfill/{{day}}.log",
    conda:
        "../../envs/rest.yaml"
    script:
        "../scripts/backfill.py"
