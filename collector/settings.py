"""The collector's view of config.yaml.

The file is loaded and validated by :func:`feeder.config.load_config`, the same check the workflow
and the scheduler run (the hints, the schema shipped in the feeder package, its defaults: one set
of error messages wherever a config is refused); this module only picks out what the collector
uses, resolves paths and applies command-line overrides, so the rest of the collector works with
typed attributes instead of nested dicts. What it checks itself is not the file's values but
this host and this command line: that ``exchange.ca_file`` exists here, and ``--symbols``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptofeed.defines import CANDLES, FUNDING, L2_BOOK, OPEN_INTEREST, TICKER, TRADES

from feeder.config import ConfigError, load_config, split_s3_url

__all__ = ["CHANNEL_MAP", "CollectorSettings", "ConfigError", "S3Settings", "load_settings"]

#: OKX channel name (config, records) → cryptofeed channel constant.
CHANNEL_MAP: dict[str, str] = {
    "books5": L2_BOOK,    # subscribed as OKX "books5" (collector.okx_feed), sampled (collector.sampler)
    "candle1m": CANDLES,  # with candle_interval "1m"
    "funding-rate": FUNDING,
    "open-interest": OPEN_INTEREST,
    "tickers": TICKER,
    "trades": TRADES,
}


@dataclass(frozen=True)
class S3Settings:
    """``collector.s3``: where sealed shards are uploaded. No credentials: boto3's chain finds them."""

    bucket: str
    key_prefix: str              # "" = the bucket root; never starts or ends with "/"
    endpoint_url: str | None     # None = AWS S3 (or AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 from the environment)

    @property
    def url(self) -> str:
        """``s3://bucket/key_prefix``, normalised (no trailing slash): what logs and metrics show."""
        return f"s3://{self.bucket}/{self.key_prefix}" if self.key_prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class CollectorSettings:
    """Everything the collector needs, resolved (absolute paths, typed values)."""

    rest_url: str
    ws_public_url: str
    ws_business_url: str
    ca_file: str | None
    timeout_s: float
    raw_root: Path
    work_root: Path
    channels: tuple[str, ...]
    subscribe_chunk: int
    universe_poll_s: float
    flush_interval_s: float
    metrics_host: str
    metrics_port: int
    universe: dict[str, Any] = field(default_factory=dict)
    symbols: tuple[str, ...] | None = None  # --symbols: fixed instrument list, no universe lookup
    s3: S3Settings | None = None             # collector.s3: also upload sealed shards there
    compress_channels: frozenset[str] = frozenset({"books5"})  # sealed as .jsonl.zst


def load_settings(
    config_path: str | Path,
    *,
    symbols: list[str] | None = None,
    metrics_port: int | None = None,
) -> CollectorSettings:
    """Load and validate ``config_path``; relative ``paths`` are taken from the working
    directory (as Snakemake does), so run the collector from the repository root."""
    cfg = load_config(config_path)
    ex, paths, col = cfg["exchange"], cfg["paths"], cfg.get("collector") or {}
    channels = tuple(dict.fromkeys(col.get("channels") or ["candle1m", "funding-rate", "open-interest"]))
    unknown = [c for c in channels if c not in CHANNEL_MAP]
    if unknown:  # the schema's enum refuses these first; this catches CHANNEL_MAP and the enum drifting apart
        raise ConfigError(f"collector.channels: {unknown} not supported; choose from {sorted(CHANNEL_MAP)}")
    compress = col.get("compress_channels")
    compress = frozenset(["books5"] if compress is None else compress)
    unknown = sorted(c for c in compress if c not in CHANNEL_MAP)
    if unknown:
        raise ConfigError(f"collector.compress_channels: {unknown} not supported; choose from {sorted(CHANNEL_MAP)}")
    ca_file = ex.get("ca_file")
    if ca_file and not Path(ca_file).is_file():
        raise ConfigError(f"exchange.ca_file: {ca_file} does not exist; point it at the CA bundle (PEM) "
                          "of the server (the simulator prints it as ca_file) or set it to null for OKX.")
    if symbols is not None:
        symbols = [s.strip() for s in symbols if s.strip()]
        if not symbols:
            raise ConfigError("--symbols is empty; pass OKX instrument ids like BTC-USDT-SWAP,ETH-USDT-SWAP")
    return CollectorSettings(
        rest_url=ex["rest_url"].rstrip("/"),
        ws_public_url=ex["ws_public_url"],
        ws_business_url=ex["ws_business_url"],
        ca_file=str(Path(ca_file).resolve()) if ca_file else None,
        timeout_s=float(ex.get("timeout_s", 10)),
        raw_root=Path(paths["raw"]).resolve(),
        work_root=Path(paths["work"]).resolve(),
        channels=channels,
        subscribe_chunk=int(col.get("subscribe_chunk", 20)),
        universe_poll_s=float(col.get("universe_poll_s", 60)),
        flush_interval_s=float(col.get("flush_interval_s", 1.0)),
        metrics_host=str(col.get("metrics_host", "127.0.0.1")),
        metrics_port=int(col.get("metrics_port", 9108) if metrics_port is None else metrics_port),
        universe=dict(cfg.get("universe") or {}),
        symbols=tuple(dict.fromkeys(symbols)) if symbols else None,
        s3=_s3_settings(col.get("s3")),
        compress_channels=compress,
    )


def _s3_settings(s3: dict[str, Any] | None) -> S3Settings | None:
    """``collector.s3`` (already validated by :func:`feeder.config.check_config`) as typed settings."""
    if not s3:
        return None
    bucket, key_prefix = split_s3_url(s3["prefix"])
    endpoint = s3.get("endpoint_url")
    return S3Settings(bucket=bucket, key_prefix=key_prefix, endpoint_url=endpoint.rstrip("/") if endpoint else None)
