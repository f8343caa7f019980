"""The collector's view of config.yaml.

The file is loaded and validated by :func:`feeder.config.load_config` (one schema, one set of
error messages for the workflow and the collector); this module only picks out what the
collector uses, resolves paths and applies command-line overrides, so the rest of the
collector works with typed attributes instead of nested dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptofeed.defines import CANDLES, FUNDING, OPEN_INTEREST, TICKER, TRADES

from feeder.config import ConfigError, load_config

__all__ = ["CHANNEL_MAP", "CollectorSettings", "ConfigError", "load_settings"]

#: OKX channel name (config, records) → cryptofeed channel constant.
CHANNEL_MAP: dict[str, str] = {
    "candle1m": CANDLES,  # with candle_interval "1m"
    "funding-rate": FUNDING,
    "open-interest": OPEN_INTEREST,
    "tickers": TICKER,
    "trades": TRADES,
}


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
    if unknown:  # the schema enum already refuses these; kept for configs validated elsewhere
        raise ConfigError(f"collector.channels: {unknown} not supported; choose from {sorted(CHANNEL_MAP)}")
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
    )
