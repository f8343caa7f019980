"""Which instruments the collector subscribes to, and cryptofeed's symbol table for them.

Order of preference:

1. ``--symbols`` (tests, debugging);
2. the newest universe file ``<paths.work>/universe/<YYYY-MM-DD>.parquet`` written by the
   workflow (its ``member`` rows), so the collector records exactly what research uses;
3. before the workflow has run once: a live snapshot of the market ranked as ``universe.rank_by``
   says, after the config's eligibility filters (:func:`feeder.universe.rank_live`, the same
   filters and the same ranking table as the workflow): the ``/market/tickers`` 24h quote turnover
   for ``quote_volume``, the last settled ``/public/funding-rate`` for ``abs_funding_rate``.

Instruments the exchange does not list (any more) are dropped with a warning: one unknown
``instId`` in a subscribe message makes OKX refuse that message.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptofeed.defines import OKX as OKX_ID
from cryptofeed.defines import PERPETUAL, SPOT
from cryptofeed.symbols import Symbol, Symbols

log = logging.getLogger(__name__)

_UNIVERSE_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")


@dataclass(frozen=True)
class Selection:
    """The instruments chosen and where the choice came from (for the start-up log)."""

    instruments: tuple[str, ...]
    origin: str  # "--symbols", "universe file <path>", "live tickers (24h quote turnover)", ...


def newest_universe_file(work_root: Path, *, today: dt.date | None = None) -> Path | None:
    """The universe file with the latest date not after ``today`` (any date if ``today`` is None).

    Files dated in the future (a workflow preparing tomorrow) are ignored until their day.
    """
    directory = Path(work_root) / "universe"
    if not directory.is_dir():
        return None
    dated = []
    for path in directory.iterdir():
        m = _UNIVERSE_FILE.match(path.name)
        if m:
            day = dt.date.fromisoformat(m.group(1))
            if today is None or day <= today:
                dated.append((day, path))
    return max(dated)[1] if dated else None


def universe_members(path: Path) -> list[str]:
    """``inst`` of the ``member`` rows of a universe file, best rank first when ranked."""
    import polars as pl

    frame = pl.read_parquet(path)
    missing = {"inst", "member"} - set(frame.columns)
    if missing:
        raise ValueError(f"universe file {path} lacks column(s) {sorted(missing)}; it should come from the "
                         "workflow's universe rule (columns inst, member, rank, ...)")
    members = frame.filter(pl.col("member"))
    if "rank" in frame.columns:
        members = members.sort("rank")
    return list(dict.fromkeys(members["inst"].to_list()))


def select_instruments(
    *,
    symbols: Sequence[str] | None,
    work_root: Path,
    universe_cfg: dict[str, Any],
    instruments: list[dict[str, Any]],
    live_snapshot: Callable[[], list[dict[str, Any]]] | None = None,
    today: dt.date | None = None,
) -> Selection:
    """Pick the instruments to record (see module docstring). ``live_snapshot`` is a callable
    returning the live snapshot ``universe.rank_by`` ranks from (:func:`feeder.universe.live_snapshot`),
    called only when no universe file with a live member exists."""
    live = {item.get("instId") for item in instruments if item.get("state", "live") == "live"}
    known = {item.get("instId") for item in instruments}
    if symbols:
        unknown = [s for s in symbols if s not in known]
        if unknown:
            raise ValueError(f"--symbols: {unknown} not listed by the exchange's /api/v5/public/instruments; "
                             "use OKX instrument ids exactly, e.g. BTC-USDT-SWAP")
        return Selection(tuple(symbols), "--symbols")
    path = newest_universe_file(work_root, today=today)
    if path is not None:
        members = universe_members(path)
        kept = [m for m in members if m in live]
        dropped = [m for m in members if m not in live]
        if dropped:
            log.warning("universe %s: %d member(s) not live on the exchange, not subscribed: %s",
                        path.name, len(dropped), ", ".join(dropped))
        if kept:
            return Selection(tuple(kept), f"universe file {path}")
    from feeder.universe import instruments_frame, live_origin, rank_live

    origin = live_origin(universe_cfg)
    if path is not None:
        log.warning("universe file %s has no live member; falling back to the %s ranking", path, origin)
    if live_snapshot is None:
        raise ValueError(f"no universe file with a live member, and no source for the {origin} ranking")
    live_items = [item for item in instruments if item.get("instId") in live]
    ranked = rank_live(live_snapshot(), instruments_frame(live_items), universe_cfg)
    if not ranked:
        raise ValueError(f"no eligible instrument in the {origin} snapshot; check the universe filters "
                         "in config.yaml (inst_type, settle_ccy, ct_type, inst_category, exclude_bases)")
    return Selection(tuple(ranked), origin)


def std_symbol(inst_id: str, inst_type: str | None = None) -> str | None:
    """cryptofeed's symbol for an OKX id: ``BTC-USDT-SWAP`` → ``BTC-USDT-PERP``, spot unchanged.

    None for ids the collector does not handle (futures, options, odd spellings).
    """
    parts = inst_id.split("-")
    if (inst_type in (None, "SWAP")) and len(parts) == 3 and parts[2] == "SWAP" and parts[0] and parts[1]:
        return Symbol(parts[0], parts[1], type=PERPETUAL).normalized
    if (inst_type in (None, "SPOT")) and len(parts) == 2 and parts[0] and parts[1] and parts[0] != parts[1]:
        return Symbol(parts[0], parts[1], type=SPOT).normalized
    return None


def install_symbols(instruments: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Fill cryptofeed's OKX symbol table from our instruments list; return std → instId.

    Doing this before constructing the feed stops cryptofeed from making its own blocking
    REST calls (to www.okx.com, for SPOT, SWAP, FUTURES and OPTION) at construction.
    """
    mapping: dict[str, str] = {}
    info: dict[str, dict[str, Any]] = {"tick_size": {}, "instrument_type": {}}
    for item in instruments:
        inst_id = item.get("instId")
        if not isinstance(inst_id, str):
            continue
        std = std_symbol(inst_id, item.get("instType"))
        if std is None:
            continue
        mapping[std] = inst_id
        info["tick_size"][std] = item.get("tickSz")
        info["instrument_type"][std] = PERPETUAL if inst_id.endswith("-SWAP") else SPOT
    Symbols.set(OKX_ID, mapping, info)
    return mapping
