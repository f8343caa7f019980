"""Ground truth of the order-book features, computed from books5 elements (the tests' oracle).

Written plainly (loops over seconds), for clarity rather than speed, straight from the
definition the pipeline implements on its own:

* Per instrument, exact duplicate elements count once; for every epoch second ``s`` the sample is
  the element with the greatest ``(ts, seqId)`` among those with ``ts // 1000 == s``.
* The state at second ``s`` is the sample of the greatest ``s' <= s`` that has one, if
  ``s - s' < max_age_s``; a state book with an empty side, or with best ask <= best bid, is
  unusable, and a second whose state is unusable has no book.
* Per-second values of a state book (float64 from the strings): ``mid = (ask1 + bid1) / 2``,
  ``spread_bps = (ask1 - bid1) / mid * 1e4``, ``qty = sz * ctVal`` (SWAP) or ``sz`` (SPOT),
  ``depth_bid_25bps`` = qty of bid levels with ``px >= mid * (1 - 25e-4)``, ``depth_ask_25bps`` =
  qty of ask levels with ``px <= mid * (1 + 25e-4)``, ``imbalance = (bids - asks) / (bids + asks)``
  over all levels.
* A bar ``[open, close)`` holds the seconds with ``open <= s * 1000 < close``; ``book_coverage`` =
  covered seconds / seconds in the bar; each feature is the mean over the covered seconds (None
  when there are none). A longer bar is the mean over all its covered seconds, computed here
  directly from the seconds (never from minute means).

Inverse swaps (contracts worth ``ctVal`` USD) are outside the contract's definition; here their
quantity is ``sz * ctVal / px`` (base coin).
"""

from __future__ import annotations

import bisect
import json
import math
import re
from typing import Any

SECOND_MS = 1000
MINUTE_MS = 60_000
DAY_MS = 86_400_000
FEATURES = ("spread_bps", "depth_bid_25bps", "depth_ask_25bps", "imbalance")
_FREQ = re.compile(r"^([1-9][0-9]*)min$")


def freq_ms(freq: str) -> int:
    """Bar length of ``"day"`` or ``"<N>min"`` (N dividing a day, so bars never cross a day)."""
    if freq == "day":
        return DAY_MS
    m = _FREQ.match(freq)
    if not m or 1440 % int(m.group(1)):
        raise ValueError(f"freq {freq!r}: use 'day' or '<N>min' with N dividing 1440 (1min, 60min, ...)")
    return int(m.group(1)) * MINUTE_MS


def second_samples(elements: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Epoch second → the book with the greatest (ts, seqId) of that second (duplicates once)."""
    seen: set[str] = set()
    best: dict[int, tuple[int, int, dict[str, Any]]] = {}
    for el in elements:
        text = json.dumps(el, sort_keys=True)
        if text in seen:
            continue
        seen.add(text)
        ts = int(el["ts"])
        seq = int(el["seqId"])
        s = ts // SECOND_MS
        if s not in best or (ts, seq) > (best[s][0], best[s][1]):
            best[s] = (ts, seq, el)
    return {s: v[2] for s, v in best.items()}


def book_values(el: dict[str, Any], *, inst_type: str, ct_type: str, ct_val: float) -> dict[str, float] | None:
    """The four per-second values of one book; None if the book is unusable."""
    bids = el.get("bids") or []
    asks = el.get("asks") or []
    if not bids or not asks:
        return None
    bid1 = float(bids[0][0])
    ask1 = float(asks[0][0])
    if ask1 <= bid1:
        return None
    mid = (ask1 + bid1) / 2

    def qty(level: list[str]) -> float:
        sz = float(level[1])
        if inst_type == "SPOT":
            return sz
        if ct_type == "inverse":
            return sz * ct_val / float(level[0])
        return sz * ct_val

    depth_bid = 0.0
    for lvl in bids:
        if float(lvl[0]) >= mid * (1 - 25e-4):
            depth_bid += qty(lvl)
    depth_ask = 0.0
    for lvl in asks:
        if float(lvl[0]) <= mid * (1 + 25e-4):
            depth_ask += qty(lvl)
    all_bids = sum(qty(lvl) for lvl in bids)
    all_asks = sum(qty(lvl) for lvl in asks)
    return {"spread_bps": (ask1 - bid1) / mid * 1e4, "depth_bid_25bps": depth_bid,
            "depth_ask_25bps": depth_ask, "imbalance": (all_bids - all_asks) / (all_bids + all_asks)}


def bar_features(elements: list[dict[str, Any]], *, inst_type: str, ct_type: str, ct_val: float, freq: str,
                 start_ms: int, end_ms: int, max_age_s: int = 60) -> list[dict[str, Any]]:
    """One row per bar with open in [start_ms, end_ms): ts, the four features (None when no
    second is covered) and book_coverage."""
    length = freq_ms(freq)
    samples = second_samples(elements)
    sample_secs = sorted(samples)
    values = {s: book_values(samples[s], inst_type=inst_type, ct_type=ct_type, ct_val=ct_val)
              for s in sample_secs}
    rows = []
    bar_open = start_ms + (-start_ms) % length
    while bar_open < end_ms:
        first = bar_open // SECOND_MS
        n_seconds = length // SECOND_MS
        per_feature: dict[str, list[float]] = {k: [] for k in FEATURES}
        covered = 0
        for s in range(first, first + n_seconds):
            i = bisect.bisect_right(sample_secs, s) - 1  # greatest sampled second <= s
            if i < 0 or s - sample_secs[i] >= max_age_s:
                continue
            v = values[sample_secs[i]]
            if v is None:
                continue
            covered += 1
            for k in FEATURES:
                per_feature[k].append(v[k])
        row: dict[str, Any] = {"ts": bar_open}
        for k in FEATURES:
            row[k] = math.fsum(per_feature[k]) / covered if covered else None
        row["book_coverage"] = covered / n_seconds
        rows.append(row)
        bar_open += length
    return rows
