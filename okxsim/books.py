"""The ``books5`` channel: a deterministic 5-level order book that follows the candles' price path.

Model (all randomness from stable hashes of ``(seed, instId, block start)``, like ``market.py``;
books are generated ``BLOCK_MS`` = 10 simulated minutes at a time, each instrument's blocks starting
at its own offset so the pusher never generates every instrument's next block in one pass):

* Publication times. Each instrument publishes about ``60 / mean_interval_s`` books per simulated
  minute at uniformly drawn millisecond times; with probability ``burst_prob`` a book is followed
  by 1-3 more inside the same exchange-clock second (so some seconds hold several books: only the
  last one of a second is a feature sample). Time is cut into blocks of ``quiet_block_s`` seconds
  (UTC-aligned) and a block is quiet with probability ``quiet_prob``: no book at all, so with the
  default 180 s blocks and a 60 s age limit at least one whole 1-minute bar has no book.
  No book is published before ``listTime`` or after the delisting (``state_at(ts) != "live"``).
  There is no 60 s re-send of an unchanged book: a quiet block is a feed that stalled.
* Mid. The book of time ``ts`` is centred on the price the partial candle reports at ``ts``
  (``round(o + (c - o) * f)`` ticks, ``f`` the elapsed fraction of the minute; the open for a
  zero-volume minute), which the trades and tickers channels also use as the last price. It lies
  between the minute's open and close, hence inside the candle's [low, high]; the spread is placed
  so that ``mid = (ask1 + bid1) / 2`` stays inside [low, high] too (a half-tick mid is moved down
  or up a half tick, never out).
* Volatility. ``vf`` = the minute's high-low range relative to twice the asset's per-minute sigma,
  clipped to [0.25, 6]. The spread grows with ``vf ** 0.7``, the gaps between levels with ``vf``,
  the size per level shrinks with ``1 / vf`` (a volatile minute has a wide, thin book).
* Levels: 5 per side, prices in whole ticks (``tickSz``), asks ascending, bids descending, sizes
  whole lots (``lotSz``): contracts for SWAP, base coin for SPOT; ``numOrders`` 1..40.
* ``seqId = ts * 10 + k`` (``k`` the book's rank among books of the same millisecond, 0..4; 9 for
  the ``book_at_close`` fault book), so it increases per instrument with (ts, rank) and the
  element of any pushed ``seqId`` can be rebuilt from the model: the push log keeps ``seqId``s only.
* ``book_at_close`` fault: ``BookFaults``/``BookFeed`` add an extreme book (``FAULT_RANK``) at chosen
  minute boundaries; its text is kept, since the model cannot rebuild it.

``BookFeed`` merges the model's books with the ``book_at_close`` fault books; ``BookLog`` is the log
of the elements actually sent. ``book_truth`` computes the features from that log.
"""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .common import MINUTE_MS, day_index, fmt_scaled, hash_unit, rng_for
from .instruments import InstrumentSpec
from .market import Market

LEVELS = 5
MAX_PER_MS = 5          # regular books sharing one millisecond (ranks 0..4)
FAULT_RANK = 9          # seqId rank of a book_at_close book
_SEQ_MULT = 10


_MEMO_MAX = 200_000
_memos: dict[int, dict[int, str]] = {}


def _formatter(exp: int) -> Callable[[int], str]:
    """A fast ``fmt_scaled(n, exp)`` for positive ``n``: the exact decimal of ``n * 10**exp``
    without trailing zeros, memoised per exponent (book prices and sizes repeat a lot). Below
    10**15 a float division by an exact power of ten, printed with ``-exp`` decimals, rounds back
    to the exact digits; larger ``n`` take ``fmt_scaled``'s integer path."""
    memo = _memos.setdefault(exp, {})
    mult = 10**exp if exp >= 0 else 1
    den = 10**-exp if exp < 0 else 1
    pattern = f"%.{-exp}f" if exp < 0 else ""

    def fmt(n: int) -> str:
        got = memo.get(n)
        if got is None:
            if exp >= 0:
                got = str(n * mult)
            elif n >= 10**15:
                got = fmt_scaled(n, exp)
            else:
                got = (pattern % (n / den)).rstrip("0").rstrip(".")
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[n] = got
        return got
    return fmt


def seq_id(ts: int, rank: int) -> int:
    """``seqId`` of the book of millisecond ``ts`` with rank ``rank``."""
    return ts * _SEQ_MULT + rank


def seq_ts(seq: int) -> int:
    """The ``ts`` a ``seqId`` was built from."""
    return seq // _SEQ_MULT


@dataclass(frozen=True)
class BookOptions:
    """Publication options (simulated seconds); see the module docstring."""

    mean_interval_s: float = 2.0
    burst_prob: float = 0.1
    quiet_prob: float = 0.05
    quiet_block_s: int = 180

    def check(self) -> "BookOptions":
        if not self.mean_interval_s > 0:
            raise ValueError(f"books mean_interval_s must be > 0 simulated seconds, got {self.mean_interval_s}")
        if not 0 <= self.burst_prob <= 1 or not 0 <= self.quiet_prob <= 1:
            raise ValueError("books burst_prob and quiet_prob must be probabilities in [0, 1]")
        if int(self.quiet_block_s) < 1:
            raise ValueError(f"books quiet_block_s must be >= 1, got {self.quiet_block_s}")
        return self


class _Block:
    """One instrument's regular books over ``BLOCK_MS``: (ts, seqId, element JSON), in order."""

    __slots__ = ("ts", "seq", "texts")

    def __init__(self, ts: list[int], seq: list[int], texts: list[str]) -> None:
        self.ts, self.seq, self.texts = ts, seq, texts


def _strings(values: np.ndarray, exp: int) -> np.ndarray:
    """``fmt_scaled(v, exp)`` of every value, as an object array of the same shape (each distinct
    value formatted once)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    fmt = _formatter(exp)
    strs = np.array([fmt(v) for v in uniq.tolist()], dtype=object)
    return strs[inverse.reshape(-1)].reshape(values.shape)


_ORDER_STRINGS = np.array([str(k) for k in range(42)], dtype=object)
_LEVEL = '["%s","%s","0","%s"]'
_TEMPLATE = ('{"asks":[' + ",".join([_LEVEL] * LEVELS) + '],"bids":[' + ",".join([_LEVEL] * LEVELS)
             + '],"instId":"%s","ts":"%d","seqId":%d}')


BLOCK_MS = 10 * MINUTE_MS  # books are generated 10 minutes at a time


class BookModel:
    """Books of every instrument as a pure function of (market, options)."""

    def __init__(self, market: Market, options: BookOptions | None = None, cache_blocks: int = 256) -> None:
        self.market = market
        self.options = (options or BookOptions()).check()
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int], _Block] = OrderedDict()
        self._cache_blocks = cache_blocks

    # ------------------------------------------------------------------ schedule
    def block_offset(self, spec: InstrumentSpec) -> int:
        """Where the instrument's generation blocks start (whole seconds into a ``BLOCK_MS`` period):
        staggered per instrument, so the pusher never has to generate every instrument's next block
        in the same pass."""
        return int(hash_unit(self.market.seed, "bookblock", spec.inst_id) * (BLOCK_MS // 1000)) * 1000

    def is_quiet(self, spec: InstrumentSpec, ts: int) -> bool:
        """Whether ``ts`` falls in one of the instrument's quiet blocks (no book published)."""
        block_ms = int(self.options.quiet_block_s) * 1000
        return hash_unit(self.market.seed, "bookquiet", spec.inst_id, ts // block_ms) < self.options.quiet_prob

    def _times(self, spec: InstrumentSpec, start: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(ts, rank) of the regular books of the block opening at ``start``, in publication order."""
        opt = self.options
        n = int(rng.poisson(BLOCK_MS / 1000.0 / opt.mean_interval_s))
        base = start + rng.integers(0, BLOCK_MS, n)
        burst = rng.random(n) < opt.burst_prob
        extra_n = rng.integers(1, 4, n)
        offsets = rng.integers(1, 250, (n, 3))
        take = burst[:, None] & (np.arange(3)[None, :] < extra_n[:, None])
        # 1-3 more books later in the same second (blocks start on whole seconds)
        extra = np.minimum(base[:, None] + offsets, (base - base % 1000 + 999)[:, None])[take]
        ts = np.sort(np.concatenate([base, extra]))
        rank = np.zeros(ts.size, dtype=np.int64)
        for i in (np.flatnonzero(ts[1:] == ts[:-1]) + 1).tolist():  # books sharing a millisecond (rare)
            rank[i] = rank[i - 1] + 1
        keep = rank < MAX_PER_MS
        keep &= ts >= spec.list_ms
        if spec.delist_ms is not None:
            keep &= ts < spec.delist_ms
        if opt.quiet_prob > 0:
            qb = int(opt.quiet_block_s) * 1000
            for b in sorted(set((ts // qb).tolist())):
                if self.is_quiet(spec, b * qb):
                    keep &= ts // qb != b
        return ts[keep], rank[keep]

    # ------------------------------------------------------------------ content
    def _context(self, spec: InstrumentSpec, ts: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per book: (open, close, high, low, vol lots) of its minute's candle, the fraction of the
        minute elapsed, and the minute's volatility factor."""
        first, last = day_index(int(ts[0])), day_index(int(ts[-1]))
        days = [self.market.day_data(spec, d) for d in range(first, last + 1)]  # one, or two at midnight
        start = days[0].start
        i = (ts - start) // MINUTE_MS  # minute index from the first day's 00:00

        def col(name: str) -> np.ndarray:
            return np.concatenate([getattr(dd, name) for dd in days])[i]

        o, c, h, lo, vol = col("o"), col("c"), col("h"), col("l"), col("vol")
        f = (ts - start - i * MINUTE_MS) / MINUTE_MS
        sig_min = spec.asset.sigma_daily / math.sqrt(1440.0)
        vf = np.clip((h - lo) / np.maximum(c, 1) / (2.0 * sig_min), 0.25, 6.0)
        return o, c, h, lo, vol, f, vf

    def _lots(self, spec: InstrumentSpec, usd: np.ndarray, px_ticks: np.ndarray) -> np.ndarray:
        """Whole lots worth about ``usd`` at ``px_ticks`` (contracts for swaps, base coin for spot)."""
        px = px_ticks.astype(np.float64) * 10.0 ** spec.tick_exp
        lot = 10.0 ** spec.lot_exp
        ct_val = spec.ct_val_mant * 10.0 ** spec.ct_val_exp
        if spec.ct_type == "linear":
            units = usd / (px * ct_val)
        elif spec.ct_type == "inverse":
            units = usd / ct_val
        else:
            units = usd / px
        return np.maximum(np.rint(units / lot), 1).astype(np.int64)

    def _levels(self, spec: InstrumentSpec, ts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """(bid px, bid lots, bid orders, ask px, ask lots, ask orders), each (n, 5), of books at
        times ``ts`` (sorted)."""
        n = ts.size
        o, c, h, lo, vol, f, vf = self._context(spec, ts)
        centre = np.where(vol == 0, o, np.rint(o + (c - o) * f).astype(np.int64))
        base_bps = min(20.0, max(0.3, 2.0 * (1e9 / max(spec.turnover, 1.0)) ** 0.25))
        spread_bps = base_bps * vf ** 0.7 * np.exp(0.35 * rng.standard_normal(n) - 0.06)
        spread = np.maximum(np.rint(spread_bps * 1e-4 * centre), 1).astype(np.int64)
        spread += np.where(h == lo, spread % 2, 0)  # a flat candle: an odd spread would put the mid outside
        bid1 = centre - spread // 2
        up = 2 * bid1 + spread > 2 * h  # the mid half a tick above the high: move the book down a tick
        bid1 = np.where(up, bid1 - 1, bid1)
        ask1 = bid1 + spread
        gap_bps = max(3.0, base_bps) * vf[None, :, None] * rng.exponential(1.0, (2, n, LEVELS - 1))
        gaps = np.maximum(np.rint(gap_bps * 1e-4 * centre[None, :, None]), 1).astype(np.int64)
        zero = np.zeros((n, 1), np.int64)
        bid_px = bid1[:, None] - np.concatenate([zero, np.cumsum(gaps[0], axis=1)], axis=1)
        ask_px = ask1[:, None] + np.concatenate([zero, np.cumsum(gaps[1], axis=1)], axis=1)
        level_usd = (spec.turnover / 1440.0 * 0.02 / vf[None, :, None]
                     * np.exp(0.6 * rng.standard_normal((2, n, LEVELS)) - 0.18))
        bid_lots = self._lots(spec, level_usd[0], np.maximum(bid_px, 1))
        ask_lots = self._lots(spec, level_usd[1], ask_px)
        u = rng.random((2, n, LEVELS))
        bid_ord = 1 + np.floor(u[0] * np.minimum(bid_lots, 40)).astype(np.int64)
        ask_ord = 1 + np.floor(u[1] * np.minimum(ask_lots, 40)).astype(np.int64)
        return bid_px, bid_lots, bid_ord, ask_px, ask_lots, ask_ord

    @staticmethod
    def element_json(spec: InstrumentSpec, ts: int, seq: int, bids: list[tuple[int, int, int]],
                     asks: list[tuple[int, int, int]]) -> str:
        """The books5 ``data`` element as compact JSON, keys in OKX's order (asks, bids, instId, ts,
        seqId); every level is 4 strings ``[price, size, "0", numOrders]``. Built by hand: it is the
        pusher's hot path (``json.dumps`` gives the same text)."""
        fp, fs = _formatter(spec.tick_exp), _formatter(spec.lot_exp)
        a = ",".join(['["%s","%s","0","%d"]' % (fp(p), fs(q), k) for p, q, k in asks])
        b = ",".join(['["%s","%s","0","%d"]' % (fp(p), fs(q), k) for p, q, k in bids if p >= 1])
        return '{"asks":[%s],"bids":[%s],"instId":"%s","ts":"%d","seqId":%d}' % (a, b, spec.inst_id, ts, seq)

    def _texts(self, spec: InstrumentSpec, ts: np.ndarray, seq: np.ndarray, levels: tuple[np.ndarray, ...]
               ) -> list[str]:
        """Element JSON of every book of a block: the pusher's hot path, so the numbers are formatted
        column-wise and each element filled into one template (``element_json`` gives the same text)."""
        bp, bs, bo, ap, as_, ao = levels
        n = ts.size
        px = _strings(np.stack([ap, bp], axis=1), spec.tick_exp)            # (n, side, level)
        sz = _strings(np.stack([as_, bs], axis=1), spec.lot_exp)
        orders = _ORDER_STRINGS[np.stack([ao, bo], axis=1)]
        rows = np.stack([px, sz, orders], axis=-1).reshape(n, 6 * LEVELS).tolist()
        inst = spec.inst_id
        texts = [_TEMPLATE % (*row, inst, t, q) for row, t, q in zip(rows, ts.tolist(), seq.tolist())]
        for i in np.flatnonzero((bp < 1).any(axis=1)).tolist():  # a bid level below one tick is left out
            texts[i] = self.element_json(spec, int(ts[i]), int(seq[i]), list(zip(bp[i].tolist(), bs[i].tolist(),
                                                                                 bo[i].tolist())),
                                         list(zip(ap[i].tolist(), as_[i].tolist(), ao[i].tolist())))
        return texts

    def _block(self, spec: InstrumentSpec, start: int) -> _Block:
        key = (spec.inst_id, start)
        with self._lock:
            got = self._cache.get(key)
            if got is not None:
                self._cache.move_to_end(key)
                return got
        rng = rng_for(self.market.seed, "books", spec.inst_id, start)
        ts, rank = self._times(spec, start, rng)
        seq = ts * _SEQ_MULT + rank
        texts = self._texts(spec, ts, seq, self._levels(spec, ts, rng)) if ts.size else []
        block = _Block(ts.tolist(), seq.tolist(), texts)
        with self._lock:
            self._cache[key] = block
            if len(self._cache) > self._cache_blocks:
                self._cache.popitem(last=False)
        return block

    def books(self, spec: InstrumentSpec, lo: int, hi: int) -> list[tuple[int, str]]:
        """(seqId, element JSON) of the regular books with ``lo < ts <= hi``, in publication order."""
        out: list[tuple[int, str]] = []
        if hi <= lo:
            return out
        off = self.block_offset(spec)
        start = (lo + 1) - (lo + 1 - off) % BLOCK_MS
        while start <= hi:
            block = self._block(spec, start)
            i0 = bisect.bisect_right(block.ts, lo)
            i1 = bisect.bisect_right(block.ts, hi)
            out.extend(zip(block.seq[i0:i1], block.texts[i0:i1]))
            start += BLOCK_MS
        return out

    def minute_books(self, spec: InstrumentSpec, minute: int) -> list[tuple[int, str]]:
        """(seqId, element JSON) of the regular books of the minute opening at ``minute``, in order."""
        minute -= minute % MINUTE_MS
        return self.books(spec, minute - 1, minute + MINUTE_MS - 1)

    def extreme_book(self, spec: InstrumentSpec, ts: int, spread_mult: float) -> str:
        """The ``book_at_close`` book at ``ts``: a model book of that instant with a spread
        ``spread_mult`` times wider around the same mid, 1 lot per bid level and asks 50 times
        deeper (one-sided depth: imbalance near -1)."""
        rng = rng_for(self.market.seed, "bookfault", spec.inst_id, ts)
        bp, bs, bo, ap, as_, ao = (a[0].tolist() for a in self._levels(spec, np.array([ts], np.int64), rng))
        spread = ap[0] - bp[0]
        wide = max(1, int(round(spread * spread_mult)))
        wide += (wide - spread) % 2  # same parity as the spread: the mid does not move
        shift = (wide - spread) // 2
        bids = [(p - shift, 1, 1) for p in bp]
        asks = [(p + shift, s * 50, k) for p, s, k in zip(ap, as_, ao)]
        return self.element_json(spec, ts, seq_id(ts, FAULT_RANK), bids, asks)


@dataclass
class _CloseFault:
    inst_id: str
    first_boundary: int
    count: int          # boundaries covered; 0 = every boundary from first_boundary on
    spread_mult: float
    hold_ms: int

    def boundaries_in(self, lo: int, hi: int) -> list[int]:
        """The fault's minute boundaries B with lo < B <= hi."""
        b = max(self.first_boundary, lo + 1 + (-(lo + 1)) % MINUTE_MS)
        last = hi if self.count <= 0 else min(hi, self.first_boundary + (self.count - 1) * MINUTE_MS)
        return list(range(b, last + 1, MINUTE_MS)) if b <= last else []

    def suppresses(self, ts: int) -> bool:
        """Whether a regular book at ``ts`` is withheld (it would hide the fault book)."""
        if ts < self.first_boundary:
            return False
        k = (ts - self.first_boundary) // MINUTE_MS
        if self.count > 0 and k >= self.count:
            return False
        return ts - (self.first_boundary + k * MINUTE_MS) < self.hold_ms


@dataclass
class BookFaults:
    """``book_at_close`` faults, per instrument (see ``BookFeed``)."""

    faults: list[_CloseFault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, inst_ids: list[str], now_ms: int, count: int, spread_mult: float, hold_s: float) -> int:
        """Arm the fault for ``inst_ids`` from the first minute boundary after ``now_ms``."""
        first = now_ms - now_ms % MINUTE_MS + MINUTE_MS
        hold_ms = max(1000, int(round(hold_s * 1000)))
        hold_ms += (-hold_ms) % 1000  # whole seconds: the fault book is the last one of its second
        with self._lock:
            for inst in inst_ids:
                self.faults.append(_CloseFault(inst, first, int(count), float(spread_mult), hold_ms))
        return first

    def of(self, inst_id: str) -> list[_CloseFault]:
        with self._lock:
            return [f for f in self.faults if f.inst_id == inst_id]

    def clear(self) -> None:
        with self._lock:
            self.faults = []

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"inst_id": f.inst_id, "first_boundary": f.first_boundary, "count": f.count,
                     "spread_mult": f.spread_mult, "hold_s": f.hold_ms / 1000} for f in self.faults]


class BookFeed:
    """What the exchange publishes on books5: the model's books plus ``book_at_close`` books."""

    def __init__(self, model: BookModel, faults: BookFaults | None = None) -> None:
        self.model = model
        self.faults = faults or BookFaults()
        self._fault_books: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def between(self, inst_id: str, lo: int, hi: int) -> list[tuple[int, str]]:
        """(seqId, element JSON) of the books with ``lo < ts <= hi``, in publication order."""
        if hi <= lo:
            return []
        spec = self.model.market.spec(inst_id)
        faults = self.faults.of(inst_id)
        out = self.model.books(spec, lo, hi)
        if faults:
            out = [(seq, text) for seq, text in out if not any(f.suppresses(seq_ts(seq)) for f in faults)]
        extra = []
        for f in faults:
            for b in f.boundaries_in(lo, hi):
                if spec.state_at(b) != "live":
                    continue
                seq = seq_id(b, FAULT_RANK)
                with self._lock:
                    text = self._fault_books.get((inst_id, seq))
                    if text is None:
                        text = self._fault_books[(inst_id, seq)] = self.model.extreme_book(spec, b, f.spread_mult)
                extra.append((seq, text))
        if extra:
            out = sorted(out + sorted(set(extra)), key=lambda x: x[0])
        return out

    def current(self, inst_id: str, at_ms: int, lookback_minutes: int = 30) -> tuple[int, str] | None:
        """The last book published at or before ``at_ms`` (None if none in the lookback)."""
        hi = at_ms
        for _ in range(lookback_minutes):
            lo = hi - hi % MINUTE_MS - 1
            got = self.between(inst_id, lo, hi)
            if got:
                return got[-1]
            hi = lo
        return None

    def element(self, inst_id: str, seq: int) -> str:
        """The element JSON of a published ``seqId`` (rebuilt from the model; fault books kept)."""
        with self._lock:
            text = self._fault_books.get((inst_id, seq))
        if text is not None:
            return text
        spec = self.model.market.spec(inst_id)
        ts = seq_ts(seq)
        for s, t in self.model.books(spec, ts - 1, ts):
            if s == seq:
                return t
        raise KeyError(f"{inst_id}: no book with seqId {seq}")


class BookLog:
    """The ``seqId``s of every books5 element sent on at least one connection, per instrument,
    sorted. Eight bytes per book; past ``max_per_inst`` the oldest half is dropped and
    ``truncated_before`` records from when the log is complete."""

    def __init__(self, max_per_inst: int = 5_000_000) -> None:
        self.max_per_inst = max_per_inst
        self._seqs: dict[str, array] = {}
        self.truncated_before: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, inst_id: str, seq: int) -> None:
        with self._lock:
            arr = self._seqs.get(inst_id)
            if arr is None:
                arr = self._seqs[inst_id] = array("q")
            if not arr or seq > arr[-1]:
                arr.append(seq)
            else:
                i = bisect.bisect_left(arr, seq)
                if i < len(arr) and arr[i] == seq:
                    return
                arr.insert(i, seq)
            if len(arr) > self.max_per_inst:
                cut = len(arr) // 2
                self.truncated_before[inst_id] = seq_ts(arr[cut])
                del arr[:cut]

    def seqs(self, inst_id: str) -> list[int]:
        with self._lock:
            return list(self._seqs.get(inst_id, ()))

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {k: len(v) for k, v in self._seqs.items()}
