"""The simulated instrument universe: who exists, with which contract specs, and when.

The list is a deterministic function of ``(seed, history_start, clock_start, n_swaps)``.
It mimics the shape of OKX's real universe so that the pipeline's filters have work to do:

* ``n_swaps`` USDT-margined linear crypto perpetuals (``instCategory`` "1"),
* stablecoin perps (USDC/DAI/USDE-USDT-SWAP) with high turnover, so excluding
  stable bases visibly changes the top-N,
* non-crypto perps (stocks ``instCategory`` "3", gold "4"), also liquid,
* inverse swaps (``ctType`` inverse, settled in the coin),
* a few spot pairs,
* some swaps listed inside the simulated history, one delisted inside it, and one
  listed shortly after the clock start (visible as ``preopen`` for a day before).

Field sets follow the sample payloads (``rest_instruments_swap_2025.json`` plus the
documented ``instCategory``/``groupId``/``upcChg``); nothing here invents a field name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .common import DAY_MS, HOUR_MS, parse_time_ms, rng_for

# (base, reference price in USDT, ctVal or None for "pick one", daily log-vol)
_CRYPTO: list[tuple[str, float, str | None, float]] = [
    ("BTC", 52000, "0.01", 0.030), ("ETH", 2900, "0.1", 0.035), ("SOL", 105, "1", 0.050),
    ("XRP", 0.54, "100", 0.040), ("DOGE", 0.085, "1000", 0.050), ("ADA", 0.58, "100", 0.045),
    ("AVAX", 37, "1", 0.055), ("LINK", 19, "1", 0.050), ("DOT", 7.6, "1", 0.045),
    ("TRX", 0.135, "1000", 0.025), ("MATIC", 0.92, "10", 0.050), ("LTC", 70, "1", 0.040),
    ("BCH", 265, "0.1", 0.045), ("UNI", 7.2, "1", 0.050), ("ATOM", 10.5, "1", 0.050),
    ("ETC", 27, "10", 0.045), ("FIL", 5.9, "0.1", 0.055), ("APT", 9.4, "1", 0.060),
    ("ARB", 1.95, "10", 0.060), ("OP", 3.6, "1", 0.060), ("NEAR", 3.4, "10", 0.060),
    ("INJ", 37, "0.1", 0.070), ("SUI", 1.7, "1", 0.070), ("SEI", 0.74, "10", 0.070),
    ("TIA", 17, "1", 0.070), ("WLD", 6.2, "1", 0.080), ("PEPE", 0.0000012, "10000000", 0.080),
    ("SHIB", 0.0000098, "1000000", 0.050), ("BONK", 0.000012, "100000", 0.090),
    ("FLOKI", 0.000045, "100000", 0.080), ("ORDI", 66, "0.1", 0.080),
    # newer names: candidates for "listed inside the history"
    ("JTO", 2.8, None, 0.080), ("PYTH", 0.6, None, 0.080), ("JUP", 0.55, None, 0.090),
    ("STRK", 2.0, None, 0.090), ("MEME", 0.03, None, 0.090), ("ACE", 9.0, None, 0.090),
    ("XAI", 0.9, None, 0.090), ("MANTA", 3.0, None, 0.090), ("ALT", 0.4, None, 0.090),
    ("PORTAL", 2.3, None, 0.090), ("PIXEL", 0.55, None, 0.090), ("DYM", 7.0, None, 0.090),
    ("STX", 2.6, "10", 0.060), ("IMX", 2.9, "1", 0.060), ("RNDR", 6.5, "1", 0.070),
    ("FET", 0.9, "10", 0.070), ("AGIX", 0.45, "10", 0.070), ("GRT", 0.27, "10", 0.060),
    ("AAVE", 95, "0.1", 0.050), ("MKR", 2100, "0.01", 0.050), ("CRV", 0.55, "10", 0.060),
    ("LDO", 3.1, "1", 0.060), ("SNX", 3.6, "1", 0.060), ("COMP", 55, "0.1", 0.050),
    ("SUSHI", 1.3, "1", 0.060), ("YFI", 7800, "0.0001", 0.050), ("DYDX", 3.0, "1", 0.060),
    ("GMX", 52, "0.1", 0.050), ("BLUR", 0.65, "10", 0.070), ("APE", 1.7, "0.1", 0.060),
    ("SAND", 0.46, "10", 0.050), ("MANA", 0.48, "10", 0.050), ("AXS", 7.5, "0.1", 0.050),
    ("GALA", 0.03, "10", 0.060), ("CHZ", 0.1, "10", 0.050), ("ENJ", 0.33, "1", 0.050),
    ("FLOW", 0.98, "10", 0.050), ("EOS", 0.78, "10", 0.040), ("XLM", 0.12, "100", 0.035),
    ("XTZ", 1.05, "1", 0.040), ("ALGO", 0.19, "10", 0.045), ("HBAR", 0.095, "100", 0.050),
    ("ICP", 13, "0.01", 0.060), ("VET", 0.04, "1000", 0.045), ("THETA", 1.3, "10", 0.050),
    ("EGLD", 60, "0.1", 0.050), ("KSM", 40, "0.1", 0.050), ("ZIL", 0.025, "100", 0.050),
    ("IOTA", 0.28, "10", 0.050), ("NEO", 13, "1", 0.045), ("QTUM", 3.5, "1", 0.045),
    ("ONT", 0.25, "10", 0.050), ("WAVES", 2.4, "1", 0.070), ("ZEC", 23, "0.1", 0.045),
    ("DASH", 29, "0.1", 0.045), ("BSV", 72, "1", 0.050), ("KAVA", 0.72, "1", 0.050),
    ("RUNE", 5.1, "1", 0.070), ("CFX", 0.22, "10", 0.070), ("MINA", 1.2, "1", 0.060),
    ("ROSE", 0.11, "100", 0.060), ("CELO", 0.78, "1", 0.050), ("ONE", 0.02, "100", 0.060),
]
_NEW_NAMES = {"JTO", "PYTH", "JUP", "STRK", "MEME", "ACE", "XAI", "MANTA", "ALT", "PORTAL", "PIXEL", "DYM"}
# Delisting candidates: old, mid/low-liquidity names.
_DELIST_NAMES = ["WAVES", "ZIL", "ONT", "QTUM", "IOTA", "KSM", "ENJ", "CELO", "FLOW", "NEO"]

# (instId, base, price, ctVal, instCategory, daily vol, turnover USDT/day)
_STABLE = [("USDC-USDT-SWAP", "USDC", 1.0, "10", "1", 0.0004, 3.0e8),
           ("DAI-USDT-SWAP", "DAI", 1.0, "1", "1", 0.0006, 2.0e7),
           ("USDE-USDT-SWAP", "USDE", 1.0, "1", "1", 0.0008, 6.0e7)]
_NONCRYPTO = [("TSLA-USDT-SWAP", "TSLA", 190.0, "0.1", "3", 0.025, 2.5e8),
              ("NVDA-USDT-SWAP", "NVDA", 700.0, "0.01", "3", 0.028, 1.6e8),
              ("XAU-USDT-SWAP", "XAU", 2030.0, "0.001", "4", 0.008, 4.0e8)]
# (instId, base, ctVal USD, tickSz exponent, turnover USD/day)
_INVERSE = [("BTC-USD-SWAP", "BTC", "100", -1, 1.2e9), ("ETH-USD-SWAP", "ETH", "10", -2, 4.0e8)]
# (instId, base, lotSz exponent, turnover USDT/day)
_SPOT = [("BTC-USDT", "BTC", -6, 1.5e9), ("ETH-USDT", "ETH", -6, 8.0e8), ("SOL-USDT", "SOL", -4, 3.0e8),
         ("DOGE-USDT", "DOGE", -2, 1.0e8), ("USDC-USDT", "USDC", -2, 2.0e8)]

PREOPEN_MS = DAY_MS           # instruments show up as "preopen" this long before listTime
DELIST_NOTICE_MS = 3 * DAY_MS  # expTime (the delisting time) is published this long before


@dataclass(frozen=True)
class Asset:
    """A price process shared by every instrument on the same base (spot, linear, inverse)."""

    name: str
    ref_price: float
    sigma_daily: float
    mean_revert: float  # daily AR(1) coefficient of the log-price anchor around ref_price


@dataclass(frozen=True)
class InstrumentSpec:
    """Static description of one instrument plus its lifecycle (epoch ms)."""

    inst_id: str
    inst_type: str            # "SWAP" | "SPOT"
    kind: str                 # "crypto" | "stable" | "noncrypto" | "inverse" | "spot"
    asset: Asset
    inst_category: str
    ct_type: str              # "linear" | "inverse" | "" (spot)
    ct_val: str               # "" for spot
    ct_val_mant: int          # ct_val == ct_val_mant * 10**ct_val_exp
    ct_val_exp: int
    tick_exp: int             # tickSz == 10**tick_exp
    lot_exp: int              # lotSz == minSz == 10**lot_exp
    turnover: float           # typical daily quote turnover (USDT or USD)
    list_ms: int
    delist_ms: int | None
    funding_hours: int        # 8 or 4 (swaps only)
    formula: str              # funding formulaType: "noRate" | "withRate"
    inst_id_code: int
    lever: str
    oi_ratio: float           # open interest in USD as a fraction of daily turnover

    @property
    def quote_ccy(self) -> str:
        return "USD" if self.ct_type == "inverse" else "USDT"

    @property
    def is_swap(self) -> bool:
        return self.inst_type == "SWAP"

    @property
    def preopen_ms(self) -> int:
        return self.list_ms - PREOPEN_MS

    def state_at(self, ms: int) -> str | None:
        """``"live"``, ``"preopen"`` or ``None`` (not listed by /public/instruments)."""
        if self.delist_ms is not None and ms >= self.delist_ms:
            return None
        if ms >= self.list_ms:
            return "live"
        if ms >= self.preopen_ms:
            return "preopen"
        return None

    def known_at(self, ms: int) -> bool:
        """Whether market-data endpoints recognise the instId at ``ms`` (delisted ones still do)."""
        return ms >= self.preopen_ms

    def trades_at(self, minute_ms: int) -> bool:
        return minute_ms >= self.list_ms and (self.delist_ms is None or minute_ms < self.delist_ms)


def _ct_val_parts(ct_val: str) -> tuple[int, int]:
    """``"0.01"`` → (1, -2); ``"1000000"`` → (1, 6); ``"10"`` → (1, 1)."""
    if "." in ct_val:
        int_part, frac = ct_val.split(".")
        mant = int(int_part + frac)
        exp = -len(frac)
    else:
        mant, exp = int(ct_val), 0
    while mant and mant % 10 == 0:
        mant //= 10
        exp += 1
    return mant, exp


def _tick_exp(price: float) -> int:
    """About six significant digits of price resolution (BTC 0.1, ETH 0.01), like OKX."""
    return min(0, math.floor(math.log10(price)) - 5)


def _auto_ct_val(price: float, rng) -> str:
    """Pick a power-of-ten contract size worth roughly 1-300 USD."""
    target = 10 ** rng.uniform(0.0, 2.5)
    exp = round(math.log10(target / price))
    return f"{10.0 ** exp:.{max(0, -exp)}f}" if exp < 0 else str(10**exp)


def _round_hour(ms: float) -> int:
    return int(round(ms / HOUR_MS)) * HOUR_MS


def build_universe(seed: int, history_start: Any, clock_start: Any = None,
                   n_swaps: int = 80) -> list[InstrumentSpec]:
    """All instruments that ever exist in this simulated world, in a stable order."""
    hist_ms = parse_time_ms(history_start)
    clock_ms = parse_time_ms(clock_start) if clock_start is not None else None
    span = max(2 * DAY_MS, (clock_ms - hist_ms) if clock_ms is not None else 30 * DAY_MS)
    rng = rng_for(seed, "universe")

    names = list(_CRYPTO[:n_swaps])
    for i in range(len(names), n_swaps):  # beyond the table: synthetic small caps
        names.append((f"SIM{i:03d}", float(10 ** rng.uniform(-3, 2)), None, 0.08))

    new_present = [n[0] for n in names if n[0] in _NEW_NAMES]
    picks = list(rng.permutation(new_present))
    late = picks[:4]
    upcoming = picks[4] if clock_ms is not None and len(picks) > 4 else None
    delist_pool = [n for n in _DELIST_NAMES if any(x[0] == n for x in names)]
    delisted = str(rng.choice(delist_pool)) if delist_pool else None

    late_ms: dict[str, int] = {}
    for k, base in enumerate(late):
        frac = (0.12, 0.33, 0.55, 0.80)[k] + rng.uniform(-0.03, 0.03)
        late_ms[str(base)] = _round_hour(hist_ms + frac * span)
    if upcoming is not None:
        late_ms[str(upcoming)] = -(-(clock_ms + 2 * HOUR_MS) // HOUR_MS) * HOUR_MS  # >= 2 h after the clock start
    delist_ms = _round_hour(hist_ms + (0.60 + rng.uniform(-0.03, 0.03)) * span) if delisted else None

    specs: list[InstrumentSpec] = []
    assets: dict[str, Asset] = {}

    def asset(name: str, price: float, sigma: float, revert: float = 0.995) -> Asset:
        if name not in assets:
            assets[name] = Asset(name, price, sigma, revert)
        return assets[name]

    def add(**kw: Any) -> None:
        mant, exp = _ct_val_parts(kw["ct_val"]) if kw["ct_val"] else (1, 0)
        specs.append(InstrumentSpec(ct_val_mant=mant, ct_val_exp=exp,
                                    inst_id_code=10000 + len(specs) * 7, **kw))

    old_list = parse_time_ms("2019-11-12T08:00:00Z")
    for i, (base, price, ct_val, sigma) in enumerate(names):
        a = asset(base, price, sigma)
        if ct_val is None:
            ct_val = _auto_ct_val(price, rng)
        # Heavy-tailed turnover: a power law in the list position times lognormal noise.
        if i < 3:
            turnover = (7.0e9, 3.5e9, 1.3e9)[i]
        else:
            turnover = 7.0e9 * (i + 1) ** -1.35 * math.exp(0.5 * rng.standard_normal())
        old_offset = int(rng.integers(0, 1200)) * DAY_MS if i > 2 else 0
        list_ms = late_ms.get(base, old_list + old_offset)
        lot_exp = -2 if base in ("BTC", "ETH") else int(rng.choice([-2, -1, 0, 0, 0]))
        add(inst_id=f"{base}-USDT-SWAP", inst_type="SWAP", kind="crypto", asset=a, inst_category="1",
            ct_type="linear", ct_val=ct_val, tick_exp=_tick_exp(price), lot_exp=lot_exp,
            turnover=turnover, list_ms=list_ms, delist_ms=delist_ms if base == delisted else None,
            funding_hours=4 if (i >= 10 and rng.random() < 0.15) else 8,
            formula="noRate" if i < 10 else "withRate", lever="100" if i < 10 else "50",
            oi_ratio=float(rng.uniform(0.2, 0.8)))
    for inst_id, base, price, ct_val, cat, sigma, turnover in _STABLE + _NONCRYPTO:
        stable = inst_id in {s[0] for s in _STABLE}
        add(inst_id=inst_id, inst_type="SWAP", kind="stable" if stable else "noncrypto",
            asset=asset(base, price, sigma, 0.9 if stable else 0.99), inst_category=cat, ct_type="linear",
            ct_val=ct_val, tick_exp=_tick_exp(price) - (1 if stable else 0), lot_exp=-1,
            turnover=turnover, list_ms=parse_time_ms("2023-06-15T08:00:00Z"), delist_ms=None,
            funding_hours=8, formula="withRate", lever="20", oi_ratio=0.3)
    for inst_id, base, ct_val, tick_exp, turnover in _INVERSE:
        a = assets[base]
        add(inst_id=inst_id, inst_type="SWAP", kind="inverse", asset=a, inst_category="1",
            ct_type="inverse", ct_val=ct_val, tick_exp=tick_exp, lot_exp=0, turnover=turnover,
            list_ms=parse_time_ms("2018-08-28T02:43:23Z"), delist_ms=None, funding_hours=8,
            formula="noRate", lever="100", oi_ratio=0.5)
    for inst_id, base, lot_exp, turnover in _SPOT:
        a = assets[base]
        add(inst_id=inst_id, inst_type="SPOT", kind="spot", asset=a, inst_category="1", ct_type="",
            ct_val="", tick_exp=_tick_exp(a.ref_price) - (1 if base == "USDC" else 0), lot_exp=lot_exp,
            turnover=turnover, list_ms=parse_time_ms("2017-10-17T08:00:00Z"), delist_ms=None,
            funding_hours=0, formula="", lever="10", oi_ratio=0.0)
    return specs


_SWAP_LIMITS = {"maxIcebergSz": "100000000.0000000000000000", "maxLmtAmt": "20000000",
                "maxLmtSz": "100000000", "maxMktAmt": "", "maxMktSz": "30000", "maxStopSz": "30000",
                "maxTriggerSz": "100000000.0000000000000000", "maxTwapSz": "100000000.0000000000000000"}
_SPOT_LIMITS = {"maxIcebergSz": "9999999999.0000000000000000", "maxLmtAmt": "20000000",
                "maxLmtSz": "9999999999", "maxMktAmt": "1000000", "maxMktSz": "1000000",
                "maxStopSz": "1000000", "maxTriggerSz": "9999999999.0000000000000000",
                "maxTwapSz": "9999999999.0000000000000000"}


def instrument_json(spec: InstrumentSpec, at_ms: int) -> dict[str, Any]:
    """The ``/public/instruments`` element for ``spec`` as seen at ``at_ms``.

    Key set = the 2025 SWAP sample's keys plus ``groupId``, ``instCategory`` and ``upcChg``
    from the documented (newest) field set; keys in alphabetical order like the samples.
    """
    state = spec.state_at(at_ms) or "live"
    tick = _pow10(spec.tick_exp)
    lot = _pow10(spec.lot_exp)
    exp_time = ""
    if spec.delist_ms is not None and at_ms >= spec.delist_ms - DELIST_NOTICE_MS:
        exp_time = str(spec.delist_ms)  # OKX publishes the offline time in expTime
    base = spec.asset.name
    swap = spec.is_swap
    d: dict[str, Any] = {
        "alias": "", "auctionEndTime": "", "baseCcy": "" if swap else base, "category": "1",
        "contTdSwTime": "", "ctMult": "1" if swap else "", "ctType": spec.ct_type,
        "ctVal": spec.ct_val, "ctValCcy": ("USD" if spec.ct_type == "inverse" else base) if swap else "",
        "expTime": exp_time, "futureSettlement": False,
        "groupId": "1", "instCategory": spec.inst_category,
        "instFamily": f"{base}-{spec.quote_ccy}" if swap else "", "instId": spec.inst_id,
        "instIdCode": spec.inst_id_code, "instType": spec.inst_type, "lever": spec.lever,
        "listTime": str(spec.list_ms), "lotSz": lot,
    }
    d.update(_SWAP_LIMITS if swap else _SPOT_LIMITS)
    d.update({
        "maxPlatOILmt": "", "minSz": lot, "openType": "" if swap else "call_auction", "optType": "",
        "posLmtAmt": "", "posLmtPct": "", "preMktSwTime": "", "quoteCcy": "" if swap else "USDT",
        "ruleType": "normal", "settleCcy": (base if spec.ct_type == "inverse" else "USDT") if swap else "",
        "state": state, "stk": "", "tickSz": tick, "tradeQuoteCcyList": [] if swap else ["USDT"],
        "uly": f"{base}-{spec.quote_ccy}" if swap else "", "upcChg": [],
    })
    return dict(sorted(d.items()))


def _pow10(exp: int) -> str:
    return str(10**exp) if exp >= 0 else f"{10.0 ** exp:.{-exp}f}"
