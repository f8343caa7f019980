"""Benchmark correctness: two Qlib directories hold the same values, slot by slot, at float32.

Each feature bin (``features/<inst>/<field>.<freq>.bin``: little-endian float32, element 0 the
index of the first value in that directory's ``calendars/<freq>.txt``) is decoded and its start
index mapped through *its own* calendar to timestamps, so a 24/7 calendar (the pipeline) and a
union-of-observed-timestamps calendar (Qlib's dump_bin) compare correctly. For every instrument
present on both sides and every field both wrote, at every frequency both wrote: the set of
timestamps holding a value (the NaN pattern) must be identical, and so must the float32 values.
Directories written without calendars (the bins-only baselines) get the 24/7 calendar from
their first day 00:00, which is the convention they write their start indices in.

One exception, counted and printed, never silent: sums over several minutes (``volume``,
``amount`` and ``vwap`` = amount / volume at every frequency but 1min) may differ by exactly one
float32 ulp. Their float64 value depends on the order the minutes are added in (pandas' groupby
sum is compensated, numpy's pairwise, and polars' kernels differ between its eager and lazy
engines), which moves the last float64 bits; when the exact sum sits on a float32 rounding tie,
which is common because volumes are decimal multiples (e.g. ``...6.5`` at a magnitude where the
float32 step is 1), the two sides round to neighbouring float32 values. A real difference of
work (a lost or duplicated minute) shows up as a NaN-pattern or exact-value mismatch at 1min,
and in open/high/low/close, which are compared exactly everywhere.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from feeder.resample import freq_minutes

MAX_REPORTED = 10
#: Fields whose value above 1min is a float64 sum over minutes (see the module docstring).
ORDER_DEPENDENT = frozenset({"volume", "amount", "vwap"})


@dataclass
class Comparison:
    """Outcome of comparing a reference directory (the pipeline) with a baseline's."""

    baseline: str
    instruments: int = 0
    only_reference: list[str] = field(default_factory=list)
    only_baseline: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    not_compared: list[str] = field(default_factory=list)
    slots: dict[str, int] = field(default_factory=dict)  # freq -> distinct timestamps holding a value
    values: int = 0  # float32 values compared (every valued slot of every common bin)
    ulp_ties: int = 0  # of which sums one float32 ulp apart (summation order at a rounding tie)
    mismatches: list[str] = field(default_factory=list)
    n_mismatches: int = 0

    @property
    def ok(self) -> bool:
        return self.n_mismatches == 0 and self.instruments > 0 and bool(self.slots)

    def summary(self) -> str:
        freqs = ", ".join(f"{f} {n:,}" for f, n in self.slots.items())
        head = (f"correctness: pipeline == {self.baseline} on {self.instruments} instruments x {len(self.fields)} "
                f"fields x {sum(self.slots.values()):,} slots ({freqs}): {self.values:,} float32 values and "
                f"their NaN pattern")
        extra = [f"fields {', '.join(self.fields)}",
                 f"instruments only in the pipeline {len(self.only_reference)}, only in the baseline "
                 f"{len(self.only_baseline)}"]
        if self.ulp_ties:
            extra.append(f"{self.ulp_ties:,} of the values are sums one float32 ulp apart "
                         "(float64 summation order at a float32 rounding tie; see bench/check.py)")
        if self.not_compared:
            extra.append(f"not written by the baseline, not compared: {', '.join(self.not_compared)}")
        if not self.ok:
            head = head.replace("==", "!=", 1) + f": {self.n_mismatches} mismatching bins"
        return head + "\n    " + "; ".join(extra)


def implied_calendar(first_day: dt.date, n_days: int, freq: str) -> np.ndarray:
    """The 24/7 calendar (datetime64[m]) of ``n_days`` days from ``first_day`` 00:00."""
    step = freq_minutes(freq)
    start = np.datetime64(first_day.isoformat(), "m")
    return start + np.arange(0, n_days * 1440, step).astype("timedelta64[m]")


def read_calendar(qlib_dir: Path, freq: str) -> np.ndarray:
    """``calendars/<freq>.txt`` as datetime64[m] (``%Y-%m-%d`` or ``%Y-%m-%d %H:%M:%S`` lines)."""
    text = (qlib_dir / "calendars" / f"{freq}.txt").read_text().splitlines()
    return np.array([t.strip().replace(" ", "T") for t in text if t.strip()], dtype="datetime64[m]")


def read_bin(path: Path, calendar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps, float32 values) of the slots of one bin that hold a value (not NaN)."""
    raw = np.fromfile(path, dtype="<f4")
    if raw.size == 0:
        raise ValueError(f"{path}: empty bin")
    start, values = int(raw[0]), raw[1:]
    if start != raw[0] or start < 0 or start + values.size > calendar.size:
        raise ValueError(f"{path}: start {raw[0]} + {values.size} values does not fit its calendar "
                         f"of {calendar.size} slots")
    present = ~np.isnan(values)
    return calendar[start: start + values.size][present], values[present]


def bins_of(features: Path) -> dict[str, set[tuple[str, str]]]:
    """instrument dir -> {(field, freq)} of the bins it holds."""
    out: dict[str, set[tuple[str, str]]] = {}
    for inst_dir in sorted(p for p in features.iterdir() if p.is_dir()) if features.is_dir() else []:
        names = (p.name.split(".") for p in inst_dir.glob("*.bin"))
        out[inst_dir.name] = {(parts[0], parts[1]) for parts in names if len(parts) == 3}
    return out


def compare_bins(ref: Path, ref_cal: np.ndarray, other: Path, other_cal: np.ndarray,
                 *, order_dependent: bool) -> tuple[str | None, np.ndarray, int]:
    """(None if equal else a one-line description of the first difference, the pipeline's
    valued timestamps, the number of values one ulp apart that ``order_dependent`` allows)."""
    ts_a, va = read_bin(ref, ref_cal)
    ts_b, vb = read_bin(other, other_cal)
    if not np.array_equal(ts_a, ts_b):
        only_a = np.setdiff1d(ts_a, ts_b)
        only_b = np.setdiff1d(ts_b, ts_a)
        return (f"NaN pattern differs: {ts_a.size} vs {ts_b.size} valued slots; only pipeline {only_a.size} "
                f"(first {only_a[:3]}), only baseline {only_b.size} (first {only_b[:3]})"), ts_a, 0
    diff = np.flatnonzero(va != vb)  # both sides are NaN-free here
    ties = 0
    if order_dependent and diff.size:
        neighbours = (np.signbit(va[diff]) == np.signbit(vb[diff])) & (
            np.abs(va[diff].view(np.int32).astype(np.int64) - vb[diff].view(np.int32)) == 1)
        ties, diff = int(neighbours.sum()), diff[~neighbours]
    if diff.size:
        i = diff[0]
        return f"{diff.size} values differ, first at {ts_a[i]}: pipeline {va[i]!r} vs baseline {vb[i]!r}", ts_a, ties
    return None, ts_a, ties


def compare_dirs(
    *, baseline: str, reference: Path, other: Path, freqs: list[str], fields: list[str],
    other_calendar: dict[str, np.ndarray] | None = None,
) -> Comparison:
    """Compare ``other`` (features/ and, unless ``other_calendar`` is given, calendars/) with the
    pipeline's ``reference`` directory over the common instruments and the ``fields`` both wrote."""
    result = Comparison(baseline=baseline)
    ref_bins, other_bins = bins_of(reference / "features"), bins_of(other / "features")
    common = sorted(set(ref_bins) & set(other_bins))
    result.instruments = len(common)
    result.only_reference = sorted(set(ref_bins) - set(other_bins))
    result.only_baseline = sorted(set(other_bins) - set(ref_bins))
    written = set().union(*other_bins.values()) if other_bins else set()
    result.fields = [f for f in fields if any((f, q) in written for q in freqs)]
    ref_fields = {f for bins in ref_bins.values() for f, _ in bins}
    result.not_compared = sorted(ref_fields - set(result.fields))
    for freq in freqs:
        compared = [f for f in result.fields if (f, freq) in written]
        if not compared:
            continue
        ref_cal = read_calendar(reference, freq)
        other_cal = other_calendar[freq] if other_calendar else read_calendar(other, freq)
        valued = np.zeros(ref_cal.size, dtype=bool)  # calendar slots where some bin has a value
        for inst in common:
            for fld in compared:
                a, b = (d / "features" / inst / f"{fld}.{freq}.bin" for d in (reference, other))
                if not a.exists() or not b.exists():
                    problem: str | None = f"bin missing on the {'pipeline' if not a.exists() else 'baseline'} side"
                else:
                    problem, ts, ties = compare_bins(
                        a, ref_cal, b, other_cal, order_dependent=fld in ORDER_DEPENDENT and freq != "1min")
                    result.values += ts.size
                    result.ulp_ties += ties
                    valued[np.searchsorted(ref_cal, ts)] = True
                if problem:
                    result.n_mismatches += 1
                    if len(result.mismatches) < MAX_REPORTED:
                        result.mismatches.append(f"{inst} {fld}.{freq}: {problem}")
        result.slots[freq] = int(valued.sum())
    return result
