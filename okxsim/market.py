"""Deterministic ground truth for the simulated market (no I/O, no clock).

``Market`` answers "what did the exchange record for instrument X at time T": 1-minute
candles, bars aggregated from them, tickers, funding rates and open interest. The HTTP
and WebSocket layers only format and schedule what this module returns, so tests can
use a second ``Market`` with the same arguments as an independent oracle.

Model (all randomness from stable hashes of ``(seed, name, day)``):

* Each asset (BTC, ETH, ...) has a daily log-price anchor: a driftless random walk in price
  (log steps ``sigma * Z - sigma**2 / 2``, so no volatility earns a premium) through its
  reference price on the ``history_start`` day; pegged stablecoins revert to their peg. A day's minute closes are a Brownian bridge from
  the day's anchor to the next day's, so days are generated independently yet join up.
  Spot, linear and inverse instruments on one base share the same path.
* Daily quote turnover per instrument = a heavy-tailed scale x a slowly drifting AR(1)
  multiplier (ranks churn over days) x a boost after listing; minutes get an intraday
  seasonality and lognormal noise. Thin minutes become zero-volume candles
  (o=h=l=c, vol "0") and a few short gaps have no candle at all.
* All numbers are integers scaled by powers of ten (price ticks, lots, ...) and are
  formatted exactly, so ``volCcy == vol x ctVal`` and bar sums equal 1m sums digit for digit.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

import numpy as np

from .common import (DAY_MS, EPOCH_MS, HOUR_MS, MINUTE_MS, N_DAYS, day_index, fmt_rate, fmt_scaled,
                     hash_normal, hash_unit, parse_time_ms, rng_for)
from .instruments import InstrumentSpec, build_universe, instrument_json

# bar name -> (bar length ms, alignment offset ms): bar starts satisfy (ts - offset) % length == 0.
# Bars of 6H and longer without the "utc" suffix open on UTC+8 boundaries, like OKX.
_UTC8 = 16 * HOUR_MS
BARS: dict[str, tuple[int, int]] = {
    "1m": (MINUTE_MS, 0), "3m": (3 * MINUTE_MS, 0), "5m": (5 * MINUTE_MS, 0),
    "15m": (15 * MINUTE_MS, 0), "30m": (30 * MINUTE_MS, 0), "1H": (HOUR_MS, 0),
    "2H": (2 * HOUR_MS, 0), "4H": (4 * HOUR_MS, 0),
    "6H": (6 * HOUR_MS, _UTC8 % (6 * HOUR_MS)), "12H": (12 * HOUR_MS, _UTC8 % (12 * HOUR_MS)),
    "1D": (DAY_MS, _UTC8), "6Hutc": (6 * HOUR_MS, 0), "12Hutc": (12 * HOUR_MS, 0), "1Dutc": (DAY_MS, 0),
}
FUNDING_HISTORY_MS = 92 * DAY_MS  # funding-rate-history serves about three months

# Assets whose anchor reverts faster than this (daily AR(1) coefficient) are pegged (stablecoins);
# the others are driftless random walks in price (see Market._anchor).
PEGGED_MEAN_REVERT = 0.95

# One aggregated candle as integers: (open, high, low, close, vol, volCcy, volCcyQuote)
Agg = tuple[int, int, int, int, int, int, int]


@dataclass
class DayData:
    """One instrument's 1-minute candles for one UTC day, as scaled integers."""

    start: int
    present: np.ndarray   # bool: the exchange has a candle for this minute
    o: np.ndarray         # price ticks
    h: np.ndarray
    l: np.ndarray
    c: np.ndarray
    vol: np.ndarray       # lots (contracts or base units / lotSz)
    ccy: np.ndarray       # volCcy, scaled by 10**ccy_exp
    quote: np.ndarray     # volCcyQuote, scaled by 10**quote_exp
    vwap: np.ndarray      # ticks, inside [l, h]
    t_high: np.ndarray    # fraction of the minute at which the high is reached (partials)
    t_low: np.ndarray


def _merge(a: Agg | None, b: Agg | None) -> Agg | None:
    """Combine two consecutive aggregates (``a`` earlier than ``b``)."""
    if a is None:
        return b
    if b is None:
        return a
    return (a[0], max(a[1], b[1]), min(a[2], b[2]), b[3], a[4] + b[4], a[5] + b[5], a[6] + b[6])


class Market:
    """The simulated exchange's data, as a pure function of its constructor arguments."""

    def __init__(self, seed: int = 7, history_start: Any = "2024-02-01", clock_start: Any = "2024-03-04T22:00:00Z",
                 n_swaps: int = 80, cache_days: int = 512) -> None:
        """Build the universe. Pass the server's ``seed``, ``history_start``, ``clock_start`` and
        ``n_swaps`` to get the same world: listing/delisting times are placed inside
        [history_start, clock_start] (``/sim/state`` → ``market_args`` has the exact values).
        Candle values of an instrument depend only on (seed, instId, minute) and its listing time.
        """
        self.seed = int(seed)
        self.history_start_ms = parse_time_ms(history_start)
        self.clock_start_ms = parse_time_ms(clock_start) if clock_start is not None else None
        if self.history_start_ms < EPOCH_MS + 7 * DAY_MS:
            raise ValueError("history_start must be on or after 2017-01-08")
        self.n_swaps = n_swaps
        self.specs: list[InstrumentSpec] = build_universe(self.seed, history_start, clock_start, n_swaps)
        self.by_id: dict[str, InstrumentSpec] = {s.inst_id: s for s in self.specs}
        self._lock = threading.Lock()
        self._cache_days = cache_days
        self._days: OrderedDict[tuple[str, int], DayData] = OrderedDict()
        self._day_aggs: OrderedDict[tuple[str, int], Agg | None] = OrderedDict()
        self._anchors: dict[str, np.ndarray] = {}
        self._turnover: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ instruments
    def spec(self, inst_id: str) -> InstrumentSpec:
        """The instrument's spec; ``KeyError`` if it never exists in this world."""
        return self.by_id[inst_id]

    def live_specs(self, at_ms: int, inst_type: str | None = None) -> list[InstrumentSpec]:
        """Instruments listed by ``/public/instruments`` at ``at_ms`` (state live or preopen)."""
        return [s for s in self.specs
                if s.state_at(at_ms) is not None and (inst_type is None or s.inst_type == inst_type)]

    def instruments(self, at_ms: int, inst_type: str | None = "SWAP") -> list[dict[str, Any]]:
        """``/public/instruments`` data elements at ``at_ms``."""
        return [instrument_json(s, at_ms) for s in self.live_specs(at_ms, inst_type)]

    def first_minute(self, spec: InstrumentSpec) -> int:
        """Open time of the first candle the exchange can serve for ``spec``."""
        return max(self.history_start_ms, spec.list_ms)

    def lifecycle(self) -> list[dict[str, Any]]:
        """Listing/delisting events inside or after the history (for reports and tests)."""
        out = []
        for s in self.specs:
            if s.list_ms > self.history_start_ms or s.delist_ms is not None:
                out.append({"instId": s.inst_id, "listTime": s.list_ms, "preopenFrom": s.preopen_ms,
                            "delistTime": s.delist_ms})
        return out

    # ------------------------------------------------------------------ model series
    def _anchor(self, spec: InstrumentSpec) -> np.ndarray:
        """Daily log-price anchors of the spec's asset (index = day index from EPOCH).

        Pegged assets (``mean_revert`` below ``PEGGED_MEAN_REVERT``: stablecoins) follow an AR(1)
        around their reference price. Every other asset is a driftless random walk in *price*:
        each day's log step is ``sigma * Z - sigma**2 / 2``, so ``E[P[d+1] / P[d]] = 1`` at every
        volatility (a zero-mean log step would give ``exp(sigma**2 / 2) - 1``, +0.4 % a day at
        sigma 9 %, a premium for holding volatile coins). A stationary (mean-reverting) log price
        cannot have that property, so these assets do not revert; the walk passes through the
        reference price on the day of ``history_start``, where the served history begins.
        """
        name = spec.asset.name
        arr = self._anchors.get(name)
        if arr is None:
            rng = rng_for(self.seed, "anchor", name)
            sigma = spec.asset.sigma_daily
            z = rng.standard_normal(N_DAYS + 2) * sigma
            phi = spec.asset.mean_revert
            if phi < PEGGED_MEAN_REVERT:
                x = np.empty_like(z)
                acc = 0.0
                for i, zi in enumerate(z.tolist()):
                    acc = phi * acc + zi
                    x[i] = acc
            else:
                x = np.concatenate(([0.0], np.cumsum(z[1:] - 0.5 * sigma * sigma)))
                x -= x[min(max(day_index(self.history_start_ms), 0), x.size - 1)]
            arr = math.log(spec.asset.ref_price) + x
            self._anchors[name] = arr
        return arr

    def _turnover_mult(self, spec: InstrumentSpec) -> np.ndarray:
        """Daily log multiplier of turnover: AR(1), so rankings drift and churn."""
        arr = self._turnover.get(spec.inst_id)
        if arr is None:
            rng = rng_for(self.seed, "turnover", spec.inst_id)
            z = rng.standard_normal(N_DAYS + 2) * 0.2
            x = np.empty_like(z)
            acc = 0.0
            for i, zi in enumerate(z.tolist()):
                acc = 0.9 * acc + zi
                x[i] = acc
            arr = x - 0.5 * (0.2**2 / (1 - 0.81))
            self._turnover[spec.inst_id] = arr
        return arr

    def model_turnover(self, spec: InstrumentSpec, day: int) -> float:
        """Expected quote turnover of ``spec`` on day index ``day`` (before minute noise)."""
        t = spec.turnover * math.exp(float(self._turnover_mult(spec)[day]))
        age_days = (EPOCH_MS + day * DAY_MS - spec.list_ms) / DAY_MS
        if age_days >= -1:
            t *= 1.0 + 3.0 * math.exp(-max(age_days, 0.0) / 4.0)  # listing hype fades in days
        return t

    # ------------------------------------------------------------------ day generation
    def is_cached(self, spec: InstrumentSpec, day: int) -> bool:
        with self._lock:
            return (spec.inst_id, day) in self._days

    def day_data(self, spec: InstrumentSpec, day: int) -> DayData:
        """Cached 1-minute arrays of ``spec`` for day index ``day``."""
        key = (spec.inst_id, day)
        with self._lock:
            dd = self._days.get(key)
            if dd is not None:
                self._days.move_to_end(key)
                return dd
        dd = self._generate_day(spec, day)
        with self._lock:
            self._days[key] = dd
            if len(self._days) > self._cache_days:
                self._days.popitem(last=False)
        return dd

    def _generate_day(self, spec: InstrumentSpec, day: int) -> DayData:
        n = 1440
        start = EPOCH_MS + day * DAY_MS
        anchors = self._anchor(spec)
        a0, a1 = float(anchors[day]), float(anchors[day + 1])
        sig = spec.asset.sigma_daily / math.sqrt(n)

        # Price path: shared by every instrument on the asset.
        rp = rng_for(self.seed, "path", spec.asset.name, day)
        w = np.cumsum(rp.standard_normal(n) * sig)
        t = np.arange(1, n + 1) / n
        logc = a0 + t * (a1 - a0) + w - t * w[-1]
        wick_h = np.abs(rp.standard_normal(n)) * sig * 0.7
        wick_l = np.abs(rp.standard_normal(n)) * sig * 0.7
        u_vwap, t_high, t_low = rp.random((3, n))

        tick = 10.0 ** spec.tick_exp
        c_lat = np.maximum(np.rint(np.exp(logc) / tick).astype(np.int64), 1)
        o0 = max(int(round(math.exp(a0) / tick)), 1)

        # Flow: per instrument.
        rv = rng_for(self.seed, "flow", spec.inst_id, day)
        minute = np.arange(n)
        season = 1.0 + 0.35 * np.cos(2 * np.pi * (minute / n - 14.5 / 24))
        noise = np.exp(0.8 * rv.standard_normal(n) - 0.32)
        per_min = self.model_turnover(spec, day) / n
        turn = per_min * season * noise
        mid = np.exp(logc)
        lot = 10.0 ** spec.lot_exp
        ct_val = spec.ct_val_mant * 10.0 ** spec.ct_val_exp
        if spec.ct_type == "linear":
            lots = np.rint(turn / (mid * ct_val) / lot)
        elif spec.ct_type == "inverse":
            lots = np.rint(turn / ct_val / lot)
        else:
            lots = np.rint(turn / mid / lot)
        lots = lots.astype(np.int64)
        zero_p = min(0.5, 1000.0 / max(per_min, 1.0))
        zero = (rv.random(n) < zero_p) | (lots <= 0)
        missing = np.zeros(n, dtype=bool)
        if rv.random() < 0.12:  # a short stretch where the exchange recorded nothing
            length = int(rv.integers(1, 5))
            s0 = int(rv.integers(0, n - length))
            missing[s0:s0 + length] = True

        # Observed prices: a zero-volume minute keeps the last traded close.
        idx = np.where(~zero, minute, -1)
        last = np.maximum.accumulate(idx)
        c = np.where(last >= 0, c_lat[np.maximum(last, 0)], o0)
        o = np.concatenate(([o0], c[:-1]))
        top = np.maximum(o, c)
        bot = np.minimum(o, c)
        h = np.where(zero, o, top + (c_lat * wick_h).astype(np.int64))
        lo = np.where(zero, o, np.maximum(bot - (c_lat * wick_l).astype(np.int64), 1))
        c = np.where(zero, o, c)
        lots = np.where(zero, 0, lots)
        vwap = np.minimum(lo + np.floor(u_vwap * (h - lo + 1)).astype(np.int64), h)
        ccy, quote = self._amounts(spec, lots, vwap)

        ts = start + minute * MINUTE_MS
        present = ~missing & (ts >= self.first_minute(spec))
        if spec.delist_ms is not None:
            present &= ts < spec.delist_ms
        return DayData(start, present, o.astype(np.int64), h.astype(np.int64), lo.astype(np.int64),
                       c.astype(np.int64), lots, ccy, quote, vwap, t_high, t_low)

    @staticmethod
    def _amounts(spec: InstrumentSpec, lots: np.ndarray, vwap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(volCcy, volCcyQuote) as scaled integers for ``lots`` traded at ``vwap`` ticks."""
        if spec.ct_type == "linear":
            ccy = lots * spec.ct_val_mant
            return ccy, ccy * vwap
        if spec.ct_type == "inverse":
            quote = lots * spec.ct_val_mant
            usd = quote.astype(np.float64) * 10.0 ** spec.ct_val_exp
            price = vwap.astype(np.float64) * 10.0 ** spec.tick_exp
            return np.rint(usd / price * 1e8).astype(np.int64), quote
        quote = lots * vwap
        return quote, quote

    def _exps(self, spec: InstrumentSpec) -> tuple[int, int, int]:
        """Decimal exponents of (vol, volCcy, volCcyQuote) integers."""
        if spec.ct_type == "linear":
            e = spec.lot_exp + spec.ct_val_exp
            return spec.lot_exp, e, e + spec.tick_exp
        if spec.ct_type == "inverse":
            return spec.lot_exp, -8, spec.ct_val_exp
        e = spec.lot_exp + spec.tick_exp
        return spec.lot_exp, e, e

    def format_row(self, spec: InstrumentSpec, ts: int, agg: Agg, confirm: bool) -> list[str]:
        """The 9-string OKX candle array for ``agg``."""
        ve, ce, qe = self._exps(spec)
        te = spec.tick_exp
        return [str(ts), fmt_scaled(agg[0], te), fmt_scaled(agg[1], te), fmt_scaled(agg[2], te),
                fmt_scaled(agg[3], te), fmt_scaled(agg[4], ve), fmt_scaled(agg[5], ce),
                fmt_scaled(agg[6], qe), "1" if confirm else "0"]

    # ------------------------------------------------------------------ aggregation
    def _closed_agg(self, spec: InstrumentSpec, lo: int, hi: int) -> Agg | None:
        """Aggregate of the candles with open time in [lo, hi) (treated as closed)."""
        out: Agg | None = None
        t = lo
        while t < hi:
            day = day_index(t)
            dd = self.day_data(spec, day)
            i0 = (t - dd.start) // MINUTE_MS
            end = min(hi, dd.start + DAY_MS)
            i1 = (end - dd.start + MINUTE_MS - 1) // MINUTE_MS
            out = _merge(out, self._slice_agg(spec, dd, i0, i1))
            t = dd.start + DAY_MS
        return out

    def _slice_agg(self, spec: InstrumentSpec, dd: DayData, i0: int, i1: int) -> Agg | None:
        if i0 == 0 and i1 == 1440:
            key = (spec.inst_id, day_index(dd.start))
            with self._lock:
                if key in self._day_aggs:
                    return self._day_aggs[key]
        idx = np.flatnonzero(dd.present[i0:i1]) + i0
        if idx.size == 0:
            agg = None
        else:
            agg = (int(dd.o[idx[0]]), int(dd.h[idx].max()), int(dd.l[idx].min()), int(dd.c[idx[-1]]),
                   int(dd.vol[idx].sum()), int(dd.ccy[idx].sum()), int(dd.quote[idx].sum()))
        if i0 == 0 and i1 == 1440:
            with self._lock:
                self._day_aggs[key] = agg
                if len(self._day_aggs) > 8 * self._cache_days:
                    self._day_aggs.popitem(last=False)
        return agg

    def _partial(self, spec: InstrumentSpec, minute_ms: int, now_ms: int) -> Agg | None:
        """The candle of ``minute_ms`` as it stands at ``now_ms`` (final once the minute closed).

        Partial values are consistent with the final candle: same open, high/low only
        reach the final extremes, cumulative volume grows to the final volume.
        """
        dd = self.day_data(spec, day_index(minute_ms))
        i = (minute_ms - dd.start) // MINUTE_MS
        if not dd.present[i] or now_ms < minute_ms:
            return None
        f = (now_ms - minute_ms) / MINUTE_MS
        o, h, lo, c, vol = int(dd.o[i]), int(dd.h[i]), int(dd.l[i]), int(dd.c[i]), int(dd.vol[i])
        if f >= 1.0:
            return (o, h, lo, c, vol, int(dd.ccy[i]), int(dd.quote[i]))
        if vol == 0:
            return (o, o, o, o, 0, 0, 0)
        cp = int(round(o + (c - o) * f))
        hp = h if f >= dd.t_high[i] else max(o, cp)
        lp = lo if f >= dd.t_low[i] else min(o, cp)
        vp = int(vol * f)
        vw = min(max(int(dd.vwap[i]), lp), hp)
        ccy, quote = self._amounts(spec, np.array([vp], dtype=np.int64), np.array([vw], dtype=np.int64))
        return (o, hp, lp, cp, vp, int(ccy[0]), int(quote[0]))

    def bar_agg(self, spec: InstrumentSpec, bar_ms: int, start: int, now_ms: int) -> tuple[Agg, bool] | None:
        """(aggregate, confirmed) of the bar opening at ``start`` as seen at ``now_ms``."""
        if now_ms < start:
            return None
        end = start + bar_ms
        cur = now_ms - now_ms % MINUTE_MS
        if end <= now_ms:
            return (agg, True) if (agg := self._closed_agg(spec, start, end)) else None
        agg = self._closed_agg(spec, start, cur) if cur > start else None
        agg = _merge(agg, self._partial(spec, cur, now_ms))
        return (agg, False) if agg else None

    # ------------------------------------------------------------------ candle queries
    def candles_1m(self, inst_id: str, day: str | date | int, until_ms: int | None = None) -> list[list[str]]:
        """All 1m candles of ``inst_id`` on UTC ``day``, oldest first, all ``confirm "1"``.

        With ``until_ms``, only minutes that closed by then (as REST would serve them).
        """
        spec = self.spec(inst_id)
        d0 = parse_time_ms(day) if not isinstance(day, int) else day
        d0 -= d0 % DAY_MS
        dd = self.day_data(spec, day_index(d0))
        idx = np.flatnonzero(dd.present)
        if until_ms is not None:
            idx = idx[dd.start + (idx + 1) * MINUTE_MS <= until_ms]
        return [self.format_row(spec, dd.start + int(i) * MINUTE_MS,
                                (int(dd.o[i]), int(dd.h[i]), int(dd.l[i]), int(dd.c[i]),
                                 int(dd.vol[i]), int(dd.ccy[i]), int(dd.quote[i])), True) for i in idx]

    def minute_columns(self, inst_id: str, lo_ms: int, hi_ms: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Open times and the 7 integer columns (o, h, l, c, vol, volCcy, volCcyQuote) of every
        1m candle of ``inst_id`` with open time in [lo_ms, hi_ms), oldest first.

        The archive formats whole months at once from these; ``format_row`` gives the same strings
        one row at a time (``value_exps`` holds the decimal exponents both use).
        """
        spec = self.spec(inst_id)
        ts_parts: list[np.ndarray] = []
        cols: list[list[np.ndarray]] = [[] for _ in range(7)]
        t = lo_ms - lo_ms % MINUTE_MS
        while t < hi_ms:
            dd = self.day_data(spec, day_index(t))
            i0 = (t - dd.start) // MINUTE_MS
            i1 = min(1440, (hi_ms - dd.start + MINUTE_MS - 1) // MINUTE_MS)
            idx = np.flatnonzero(dd.present[i0:i1]) + i0
            ts_parts.append(dd.start + idx.astype(np.int64) * MINUTE_MS)
            for k, arr in enumerate((dd.o, dd.h, dd.l, dd.c, dd.vol, dd.ccy, dd.quote)):
                cols[k].append(arr[idx])
            t = dd.start + DAY_MS
        empty = np.zeros(0, dtype=np.int64)
        return (np.concatenate(ts_parts) if ts_parts else empty,
                [np.concatenate(c).astype(np.int64) if c else empty for c in cols])

    def value_exps(self, spec: InstrumentSpec) -> tuple[int, int, int, int]:
        """Decimal exponents of (prices, vol, volCcy, volCcyQuote) as ``format_row`` applies them."""
        return (spec.tick_exp, *self._exps(spec))

    def candles(self, inst_id: str, bar: str, now_ms: int, after: int | None = None,
                before: int | None = None, limit: int = 100, recent_only: bool = False) -> list[list[str]]:
        """Rows as ``/market/(history-)candles`` returns them: newest first.

        ``after`` → open time < after; ``before`` → open time > before (both exclusive).
        With only ``before``, the newest rows are returned. The bar in progress at
        ``now_ms`` is included with ``confirm "0"``. ``recent_only`` keeps the last
        1,440 bars (``/market/candles``).
        """
        spec = self.spec(inst_id)
        bar_ms, off = BARS[bar]

        def down(t: int) -> int:
            return t - (t - off) % bar_ms

        last_t = now_ms if spec.delist_ms is None else min(now_ms, spec.delist_ms - 1)
        top = down(last_t)
        if after is not None:
            top = min(top, down(after - 1))
        bottom = down(self.first_minute(spec))
        if recent_only:
            bottom = max(bottom, down(now_ms) - 1439 * bar_ms)
        if before is not None:
            bottom = max(bottom, down(before) + bar_ms)
        rows: list[list[str]] = []
        if limit <= 0 or top < bottom:
            return rows
        if bar_ms == MINUTE_MS:
            return self._candles_1m_desc(spec, top, bottom, now_ms, limit)
        s = top
        while s >= bottom and len(rows) < limit:
            got = self.bar_agg(spec, bar_ms, s, now_ms)
            if got:
                rows.append(self.format_row(spec, s, got[0], got[1]))
            s -= bar_ms
        return rows

    def _candles_1m_desc(self, spec: InstrumentSpec, top: int, bottom: int, now_ms: int,
                         limit: int) -> list[list[str]]:
        rows: list[list[str]] = []
        cur = now_ms - now_ms % MINUTE_MS
        if top >= cur:  # the minute in progress
            p = self._partial(spec, cur, now_ms) if cur >= bottom else None
            if p is not None:
                rows.append(self.format_row(spec, cur, p, False))
            top = cur - MINUTE_MS
        t = top
        while t >= bottom and len(rows) < limit:
            dd = self.day_data(spec, day_index(t))
            i_hi = (t - dd.start) // MINUTE_MS
            i_lo = max(0, (bottom - dd.start + MINUTE_MS - 1) // MINUTE_MS)
            idx = np.flatnonzero(dd.present[i_lo:i_hi + 1])[::-1] + i_lo
            for i in idx[: limit - len(rows)]:
                rows.append(self.format_row(spec, dd.start + int(i) * MINUTE_MS,
                                            (int(dd.o[i]), int(dd.h[i]), int(dd.l[i]), int(dd.c[i]),
                                             int(dd.vol[i]), int(dd.ccy[i]), int(dd.quote[i])), True))
            t = dd.start - MINUTE_MS
        return rows

    def day_quote_volume(self, inst_id: str, day: str | date | int) -> float:
        """Sum of ``volCcyQuote`` over the UTC day (USDT; USD for inverse swaps)."""
        spec = self.spec(inst_id)
        d0 = parse_time_ms(day) if not isinstance(day, int) else day
        d0 -= d0 % DAY_MS
        agg = self._closed_agg(spec, d0, d0 + DAY_MS)
        return 0.0 if agg is None else agg[6] * 10.0 ** self._exps(spec)[2]

    # ------------------------------------------------------------------ tickers
    def last_price(self, spec: InstrumentSpec, now_ms: int) -> int | None:
        """Last traded price (ticks) at ``now_ms``: the current candle's close, else the last one."""
        cur = now_ms - now_ms % MINUTE_MS
        p = self._partial(spec, cur, now_ms)
        if p is not None:
            return p[3]
        t = cur - MINUTE_MS
        floor = max(self.first_minute(spec), cur - 2 * DAY_MS)
        while t >= floor:
            dd = self.day_data(spec, day_index(t))
            i_hi = (t - dd.start) // MINUTE_MS
            idx = np.flatnonzero(dd.present[: i_hi + 1])
            if idx.size:
                return int(dd.c[idx[-1]])
            t = dd.start - MINUTE_MS
        return None

    def ticker(self, inst_id: str, now_ms: int) -> dict[str, str] | None:
        """The ``tickers`` element at ``now_ms`` over the trailing 24 simulated hours."""
        spec = self.spec(inst_id)
        last = self.last_price(spec, now_ms)
        if last is None:
            return None
        cur = now_ms - now_ms % MINUTE_MS
        win = _merge(self._closed_agg(spec, cur - 1439 * MINUTE_MS, cur), self._partial(spec, cur, now_ms))
        if win is None:
            win = (last, last, last, last, 0, 0, 0)
        # Opening prices of the UTC and UTC+8 days: first candle since 00:00 / 16:00 UTC.
        day0 = now_ms - now_ms % DAY_MS
        sod0 = self._closed_agg(spec, day0, cur + MINUTE_MS)
        s8 = now_ms - (now_ms - _UTC8) % DAY_MS
        sod8 = self._closed_agg(spec, s8, cur + MINUTE_MS)
        te, (ve, ce, qe) = spec.tick_exp, self._exps(spec)
        sz = 1 + int(hash_unit(self.seed, "lastSz", inst_id, now_ms // 1000) * 20)
        ask_sz = 1 + int(hash_unit(self.seed, "askSz", inst_id, now_ms // 1000) * 500)
        bid_sz = 1 + int(hash_unit(self.seed, "bidSz", inst_id, now_ms // 1000) * 500)
        return {
            "instType": spec.inst_type, "instId": inst_id, "last": fmt_scaled(last, te),
            "lastSz": fmt_scaled(sz, spec.lot_exp), "askPx": fmt_scaled(last + 1, te),
            "askSz": fmt_scaled(ask_sz, spec.lot_exp), "bidPx": fmt_scaled(last, te),
            "bidSz": fmt_scaled(bid_sz, spec.lot_exp), "open24h": fmt_scaled(win[0], te),
            "high24h": fmt_scaled(win[1], te), "low24h": fmt_scaled(win[2], te),
            "volCcy24h": fmt_scaled(win[6], qe) if spec.inst_type == "SPOT" else fmt_scaled(win[5], ce),
            "vol24h": fmt_scaled(win[4], ve),
            "sodUtc0": fmt_scaled(sod0[0] if sod0 else last, te),
            "sodUtc8": fmt_scaled(sod8[0] if sod8 else last, te), "ts": str(now_ms),
        }

    def trade(self, inst_id: str, now_ms: int) -> dict[str, Any] | None:
        """A synthetic ``trades`` element at the last price (the trades channel is not modelled
        against candle volumes; it exists so subscriptions to it behave)."""
        spec = self.spec(inst_id)
        last = self.last_price(spec, now_ms)
        if last is None:
            return None
        u = hash_unit(self.seed, "trade", inst_id, now_ms)
        seq = now_ms // 10
        return {"instId": inst_id, "tradeId": str(seq), "px": fmt_scaled(last, spec.tick_exp),
                "sz": fmt_scaled(1 + int(u * 50), spec.lot_exp), "side": "buy" if u < 0.5 else "sell",
                "ts": str(now_ms), "count": "1", "source": "0", "seqId": int(seq)}

    # ------------------------------------------------------------------ funding
    def _funding_caps(self, spec: InstrumentSpec) -> tuple[str, float]:
        return ("0.00375", 0.00375) if spec.formula == "noRate" else ("0.015", 0.015)

    def settled_funding_rate(self, spec: InstrumentSpec, funding_time: int) -> float:
        """Rate settled at ``funding_time``: a deterministic function of (seed, instId, time)."""
        day = day_index(funding_time)
        anchors = self._anchor(spec)
        momentum = float(anchors[day] - anchors[day - 3])
        scale = spec.funding_hours / 8.0
        bias = 0.00004 * hash_normal(self.seed, "fbias", spec.inst_id)
        noise = spec.asset.sigma_daily * 0.004 * hash_normal(self.seed, "fund", spec.inst_id, funding_time)
        cap = self._funding_caps(spec)[1]
        rate = (0.0001 + bias + 0.004 * momentum + noise) * scale
        return round(min(cap, max(-cap, rate)), 16)

    def funding_rate(self, inst_id: str, now_ms: int) -> dict[str, str]:
        """``/public/funding-rate`` element: ``fundingTime`` is the next settlement."""
        spec = self.spec(inst_id)
        iv = spec.funding_hours * HOUR_MS
        t1 = (now_ms // iv + 1) * iv
        minute = now_ms - now_ms % MINUTE_MS
        final = self.settled_funding_rate(spec, t1)
        drift = (t1 - minute) / iv * spec.asset.sigma_daily * 0.002
        est = final + drift * hash_normal(self.seed, "fest", inst_id, minute)
        premium = est - 0.0001 + 0.00002 * hash_normal(self.seed, "prem", inst_id, minute)
        cap_s, cap = self._funding_caps(spec)
        with_rate = spec.formula == "withRate"
        return {
            "formulaType": spec.formula, "fundingRate": fmt_rate(min(cap, max(-cap, est))),
            "fundingTime": str(t1), "impactValue": "10000.0000000000000000" if with_rate else "",
            "instId": inst_id, "instType": "SWAP",
            "interestRate": "0.0001000000000000" if with_rate else "", "maxFundingRate": cap_s,
            "method": "current_period", "minFundingRate": "-" + cap_s, "nextFundingRate": "",
            "nextFundingTime": str(t1 + iv), "premium": fmt_rate(premium),
            "settFundingRate": fmt_rate(self.settled_funding_rate(spec, t1 - iv)),
            "settState": "settled", "ts": str(now_ms),
        }

    def funding_history(self, inst_id: str, now_ms: int, after: int | None = None,
                        before: int | None = None, limit: int = 100) -> list[dict[str, str]]:
        """``/public/funding-rate-history`` rows, newest first (``after``/``before`` exclusive)."""
        spec = self.spec(inst_id)
        iv = spec.funding_hours * HOUR_MS
        newest = now_ms - now_ms % iv
        if spec.delist_ms is not None:
            newest = min(newest, (spec.delist_ms - 1) - (spec.delist_ms - 1) % iv)
        if after is not None:
            newest = min(newest, (after - 1) - (after - 1) % iv)
        oldest_t = max(now_ms - FUNDING_HISTORY_MS, spec.list_ms + 1)
        oldest = oldest_t + (-oldest_t) % iv
        if before is not None:
            oldest = max(oldest, before - before % iv + iv)
        rows = []
        t = newest
        while t >= oldest and len(rows) < limit:
            rate = self.settled_funding_rate(spec, t)
            realized = rate + 1e-9 * hash_normal(self.seed, "real", inst_id, t)
            rows.append({"formulaType": spec.formula, "fundingRate": fmt_rate(rate), "fundingTime": str(t),
                         "instId": inst_id, "instType": "SWAP", "method": "current_period",
                         "realizedRate": fmt_rate(realized)})
            t -= iv
        return rows

    # ------------------------------------------------------------------ open interest
    def open_interest(self, inst_id: str, now_ms: int) -> dict[str, str] | None:
        """``open-interest`` element at ``now_ms`` (changes every 5 simulated seconds)."""
        spec = self.spec(inst_id)
        price = self.last_price(spec, now_ms)
        if price is None:
            return None
        day = day_index(now_ms)
        phase = 2 * math.pi * hash_unit(self.seed, "oiphase", inst_id)
        usd = (spec.oi_ratio * self.model_turnover(spec, day)
               * (1 + 0.08 * math.sin(2 * math.pi * (now_ms % DAY_MS) / DAY_MS + phase))
               * math.exp(0.01 * hash_normal(self.seed, "oi", inst_id, now_ms // 5000)))
        ct_val = spec.ct_val_mant * 10.0 ** spec.ct_val_exp
        px = price * 10.0 ** spec.tick_exp
        if spec.ct_type == "inverse":
            lots = max(1, round(usd / ct_val))
            oi_usd = lots * spec.ct_val_mant
            oi_ccy = round(lots * ct_val / px * 1e8)
            vals = (fmt_scaled(lots, spec.lot_exp), fmt_scaled(oi_ccy, -8), fmt_scaled(oi_usd, spec.ct_val_exp))
        else:
            lots = max(1, round(usd / (px * ct_val) / 10.0 ** spec.lot_exp))
            ccy = lots * spec.ct_val_mant
            e = spec.lot_exp + spec.ct_val_exp
            vals = (fmt_scaled(lots, spec.lot_exp), fmt_scaled(ccy, e), fmt_scaled(ccy * price, e + spec.tick_exp))
        return {"instId": inst_id, "instType": "SWAP", "oi": vals[0], "oiCcy": vals[1], "oiUsd": vals[2],
                "ts": str(now_ms)}

    # ------------------------------------------------------------------ helpers for callers
    def days_between(self, start_ms: int, end_ms: int) -> Iterable[int]:
        """Day-start timestamps from ``start_ms``'s day to ``end_ms``'s day inclusive."""
        d = start_ms - start_ms % DAY_MS
        while d <= end_ms:
            yield d
            d += DAY_MS
