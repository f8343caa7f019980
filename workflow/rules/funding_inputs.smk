# Input functions and switches of funding.smk, books.smk, resample.smk and qlib.smk (no rules).
from feeder.registry import DEFAULT_CHANNELS, qlib_fields

CHANNELS = config.get("collector", {}).get("channels") or list(DEFAULT_CHANNELS)
TRADES_COLLECTED = "trades" in CHANNELS
BOOKS_COLLECTED = "books5" in CHANNELS

# The Qlib fields (feeder.registry, docs/fields.md): a field whose channel is not collected
# would be all NaN, so it is not written.
QLIB_FIELDS = qlib_fields(CHANNELS)


def ws_funding_shards(wildcards) -> list[str]:
    """Pushes reporting settlements in [D 00:00 - 8 h, D+1 00:00]: D-1, D and D+1 hour 00."""
    paths = ws_shards("funding-rate", prev_day(wildcards.day)) + ws_shards("funding-rate", wildcards.day)
    return list(dict.fromkeys(paths))


def ws_open_interest_shards(wildcards) -> list[str]:
    """Pushes with ts in [D 00:00 - 15 min, D+1 00:00]: hour 23 of D-1, D and D+1 hour 00."""
    paths = shards_of_hours("open-interest", prev_day(wildcards.day), [23]) + ws_shards("open-interest", wildcards.day)
    return list(dict.fromkeys(paths))


def ws_trade_shards(wildcards) -> list[str]:
    return ws_shards("trades", wildcards.day)


def trades_of_day(wildcards) -> list[str]:
    """The day's per-minute trade sums for resample, when the trades channel is collected."""
    return [f"{WORK}/trades/{wildcards.day}.parquet"] if TRADES_COLLECTED else []


def books_of_day(wildcards) -> list[str]:
    """The day's per-minute book sums for resample, when the books5 channel is collected."""
    return [f"{WORK}/books/{wildcards.day}.parquet"] if BOOKS_COLLECTED else []
