"""Assemble a Qlib provider directory (calendars, instruments, feature bins) from day blocks.

The format is feeder.qlib_format; the day blocks, which each resample job writes for its day,
are feeder.qlib_blocks: the export concatenates them (:func:`assemble_qlib`), a byte copy per
day and instrument, never a re-read of the bars. :func:`export_day_blocks` is what the
workflow's ``qlib`` rule calls (then ``publish_qlib`` publishes it with feeder.publish);
:func:`export_qlib` is the one-call form (bar files in, published dataset out) for tests and
the research examples. Both give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from feeder.atomic import link_or_copy
from feeder.identifiers import inst_path_stem
from feeder.publish import check_publish_target, is_our_dataset, publish_dataset
from feeder.qlib_blocks import (
    block_instruments,
    copy_block_rows,
    day_block,
    write_block,
)
from feeder.qlib_format import (
    SPAN_END,
    SPAN_START,
    calendar_frame,
    encode_feature,
    membership_spans,
    span_text,
    write_tsv,
)
from feeder.registry import check_fields, check_market_name, freq_minutes, qlib_fields, slots_per_day

log = logging.getLogger(__name__)

__all__ = [
    "ASSEMBLY_BUDGET_BYTES",
    "DEFAULT_FIELDS",
    "assemble_qlib",
    "export_day_blocks",
    "export_qlib",
    "read_membership",
]

#: The fields exported with the default collector channels (feeder.registry.qlib_fields).
DEFAULT_FIELDS: tuple[str, ...] = tuple(qlib_fields())
#: Bytes of float32 values the assembly holds at once (bounds peak memory whatever the history
#: length: a longer history means more, smaller instrument batches, not a bigger buffer).
ASSEMBLY_BUDGET_BYTES = 256 * 2**20


def _assemble_frequency(
    *, freq: str, blocks: dict[dt.date, Path], fields: Sequence[str], first_day: dt.date, last_day: dt.date,
    out_dir: Path,
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Calendar and feature bins of one frequency from its day blocks → (summary, data days).

    Each instrument's bin runs from its first bar to its last (NaN holes in between, days
    without a block count as holes). One field at a time, ``factor`` (the bar-present mask)
    first: so each pass maps every day block once and reads one column of it, and the buffer
    is one field of the history (instruments in batches sized to ASSEMBLY_BUDGET_BYTES).

    A frequency without a single bar raises: Qlib would answer every query with an empty
    frame and no error. A field without a single value is reported (logged, ``empty_fields``).
    """
    spd = slots_per_day(freq)
    calendar = calendar_frame(first_day, last_day, freq)
    write_tsv(calendar, out_dir / "calendars" / f"{freq}.txt")
    n_slots = calendar.height
    inside = {day: path for day, path in sorted(blocks.items()) if first_day <= day <= last_day}
    listing = {day: block_instruments(path) for day, path in inside.items()}
    names = sorted({name for day_names in listing.values() for name in day_names})
    if not names:
        raise ValueError(
            f"no {freq} bar inside {first_day}..{last_day} ({len(blocks)} day blocks): Qlib would return empty "
            "frames without an error. Check the clean and resample logs."
        )
    batch_size = min(len(names), max(1, ASSEMBLY_BUDGET_BYTES // (n_slots * 4)))
    values = dict.fromkeys(fields, 0)
    n_bars = 0
    spans: list[tuple[str, int, int]] = []
    # one buffer for every pass: a fresh allocation each time would pay the page faults again
    whole = np.empty((batch_size, n_slots), dtype="<f4")
    for start in range(0, len(names), batch_size):
        batch = names[start : start + batch_size]
        rows_of = {name: i for i, name in enumerate(batch)}
        buffer = whole[: len(batch)]

        def load(field: str) -> None:
            buffer.fill(np.nan)
            for day, path in inside.items():
                copy_block_rows(path, listing[day], spd, field, rows_of, buffer, (day - first_day).days)

        load("factor")
        bounds = []
        for i, name in enumerate(batch):
            present = np.flatnonzero(~np.isnan(buffer[i]))
            bounds.append((int(present[0]), int(present[-1])))
            n_bars += present.size
            (out_dir / "features" / inst_path_stem(name).lower()).mkdir(parents=True, exist_ok=True)
            spans.append((name, bounds[-1][0], bounds[-1][1]))
        for field in sorted(fields, key=lambda f: f != "factor"):  # factor is loaded already
            if field != "factor":
                load(field)
            for i, name in enumerate(batch):
                first, last = bounds[i]
                series = buffer[i, first : last + 1]
                (out_dir / "features" / name.lower() / f"{field}.{freq}.bin").write_bytes(encode_feature(first, series))
                values[field] += int(np.count_nonzero(~np.isnan(series)))
    return _frequency_summary(freq, n_slots=n_slots, n_bars=n_bars, n_instruments=len(names), values=values), \
        _slot_spans(spans)


def _frequency_summary(freq: str, *, n_slots: int, n_bars: int, n_instruments: int,
                       values: dict[str, int]) -> dict[str, Any]:
    """A frequency's summary; a field without a single value is logged (Qlib would show it all NaN)."""
    empty = [f for f, n in values.items() if n == 0]
    if empty:
        log.warning("qlib export %s: fields without any value: %s (all NaN)", freq, empty)
    return {"slots": n_slots, "bars": n_bars, "instruments": n_instruments, "values": values, "empty_fields": empty}


def _slot_spans(spans: Sequence[tuple[str, int, int]]) -> pl.DataFrame:
    """(inst, first bar's slot, last bar's slot) rows as a frame (the build ledger keeps them)."""
    return pl.DataFrame(list(spans), schema={"inst": pl.Utf8, "first": pl.Int64, "last": pl.Int64}, orient="row")


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------


def assemble_qlib(
    *,
    blocks: dict[str, dict[dt.date, Path]],
    days: Sequence[dt.date],
    membership: pl.DataFrame,
    market_name: str,
    out_dir: Path,
    fields: Sequence[str] = DEFAULT_FIELDS,
    base: Path | None = None,
) -> dict[str, Any]:
    """Write a complete Qlib provider directory at ``out_dir`` from day blocks.

    ``blocks``: Qlib freq name → day → that day's block file (a day without a block has no
    bars). ``membership``: ``day`` (Date), ``inst`` (Utf8), ``member`` (Bool), the point-in-time
    universe; written as ``instruments/<market_name lowercase>.txt`` (Qlib lowercases the market
    name when it looks for the file). ``instruments/all.txt`` lists every instrument with data:
    its first data day 00:00:00 to its last data day 23:59:00. Instrument names are OKX instIds
    verbatim; feature directories are their lowercase form. Returns a summary dict.

    ``base``: a provider directory this function built earlier (the published version). When it
    holds the same history (its build ledger, :data:`BUILD_LEDGER`, shows the same first day,
    frequencies, fields and market, and the very same day blocks for every day it covers) and
    ``days`` only extend it, the new days are *appended*: bins of instruments without a new bar
    are hard links to the base's files, the others are copies with the new slots written at
    their end, and no old day block is read (:func:`plan_append`). Anything else is a full
    build. Both give the same bytes. ``base`` is only ever read: readers of it keep a complete
    dataset.
    """
    if not days:
        raise ValueError("qlib export: no days")
    check_market_name(market_name)
    fields = check_fields(fields)
    for freq in blocks:
        freq_minutes(freq)  # validate every name before writing anything
    first_day, last_day = min(days), max(days)
    out_dir = Path(out_dir)
    ledger = _ledger(blocks=blocks, first_day=first_day, last_day=last_day, market_name=market_name, fields=fields)
    plan = plan_append(base, ledger) if base is not None else None
    if plan is not None:
        try:
            return _write_dataset(blocks=blocks, membership=membership, market_name=market_name, out_dir=out_dir,
                                  fields=fields, ledger=ledger, append=plan)
        except AppendNotPossible as exc:  # a base file not as its ledger says: build everything
            log.warning("qlib export: cannot append to %s (%s); building the whole dataset", base, exc)
            shutil.rmtree(out_dir, ignore_errors=True)
    return _write_dataset(blocks=blocks, membership=membership, market_name=market_name, out_dir=out_dir,
                          fields=fields, ledger=ledger, append=None)


def _write_dataset(
    *, blocks: dict[str, dict[dt.date, Path]], membership: pl.DataFrame, market_name: str, out_dir: Path,
    fields: Sequence[str], ledger: dict[str, Any], append: AppendPlan | None,
) -> dict[str, Any]:
    first_day, last_day = dt.date.fromisoformat(ledger["first_day"]), dt.date.fromisoformat(ledger["last_day"])
    for sub in ("calendars", "instruments", "features"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"first_day": first_day.isoformat(), "last_day": last_day.isoformat(), "freqs": {}}
    data_days: list[pl.DataFrame] = []
    for freq, freq_blocks in blocks.items():
        if append is None:
            freq_summary, spans = _assemble_frequency(freq=freq, blocks=freq_blocks, fields=fields,
                                                      first_day=first_day, last_day=last_day, out_dir=out_dir)
        else:
            freq_summary, spans = _append_frequency(freq=freq, blocks=freq_blocks, fields=fields, first_day=first_day,
                                                    last_day=last_day, out_dir=out_dir, plan=append)
        summary["freqs"][freq] = freq_summary
        ledger["freqs"][freq]["summary"] = freq_summary
        ledger["freqs"][freq]["spans"] = spans.rows()
        spd = slots_per_day(freq)
        data_days.append(spans.select("inst", pl.col("first") // spd, pl.col("last") // spd))
    all_spans = (
        pl.concat(data_days)
        .group_by("inst")
        .agg(pl.col("first").min(), pl.col("last").max())
        .sort("inst")
        .select(
            "inst",
            span_text(pl.lit(first_day) + pl.duration(days=pl.col("first")), SPAN_START).alias("start"),
            span_text(pl.lit(first_day) + pl.duration(days=pl.col("last")), SPAN_END).alias("end"),
        )
        if data_days
        else pl.DataFrame(schema={"inst": pl.Utf8, "start": pl.Utf8, "end": pl.Utf8})
    )
    write_tsv(all_spans, out_dir / "instruments" / "all.txt")
    market = membership_spans(membership, first_day, last_day)
    write_tsv(market, out_dir / "instruments" / f"{market_name.lower()}.txt")
    summary["instruments"] = all_spans.height
    summary["market_spans"] = market.height
    (out_dir / BUILD_LEDGER).write_text(json.dumps(ledger, separators=(",", ":")), encoding="utf-8")
    log.info("qlib export %s (%s): %s", out_dir, "appended" if append else "full build", summary)
    return summary


# --------------------------------------------------------------------------------------------
# Appending days to a built dataset
# --------------------------------------------------------------------------------------------

#: In every provider directory :func:`assemble_qlib` writes: what it was built from (each day
#: block's size, mtime and inode), and per frequency the summary and each instrument's first and
#: last bar slot. The next build compares it to decide whether it can append.
BUILD_LEDGER = ".feeder-build.json"
_LEDGER_VERSION = 1


class AppendNotPossible(RuntimeError):
    """A base file is not what its ledger says (missing, torn, other start): build everything."""


@dataclass(frozen=True)
class AppendPlan:
    """Append ``days after old_last_day`` to the dataset at ``base`` (see :func:`plan_append`)."""

    base: Path
    old_last_day: dt.date
    old: dict[str, Any]  # the base's ledger


def _fingerprint(path: Path) -> list[int]:
    """What identifies a day block's content without reading it: Snakemake replaces a rerun job's
    outputs (new inode and mtime), so an equal fingerprint means the same bytes."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _ledger(*, blocks: dict[str, dict[dt.date, Path]], first_day: dt.date, last_day: dt.date, market_name: str,
            fields: Sequence[str]) -> dict[str, Any]:
    return {
        "version": _LEDGER_VERSION, "first_day": first_day.isoformat(), "last_day": last_day.isoformat(),
        "market": market_name, "fields": list(fields),
        "freqs": {freq: {"blocks": {d.isoformat(): _fingerprint(p) for d, p in sorted(freq_blocks.items())
                                    if first_day <= d <= last_day}}
                  for freq, freq_blocks in blocks.items()},
    }


def plan_append(base: Path, ledger: dict[str, Any]) -> AppendPlan | None:
    """Whether the build described by ``ledger`` can append to the dataset at ``base``, and how.

    Only when every answer is "the same": first day, market, fields (in order), frequencies, and
    the fingerprint of every day block up to the base's last day (a re-cleaned old day, a new
    field or an earlier start means the history changed: full build). The reason for a full
    build is logged.
    """
    def no(reason: str) -> None:
        log.info("qlib export: full build, not an append to %s: %s", base, reason)

    try:
        old = json.loads((Path(base) / BUILD_LEDGER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return no("it has no build ledger")
    except (OSError, ValueError) as exc:
        return no(f"its build ledger is unreadable ({exc})")
    if not isinstance(old, dict) or old.get("version") != _LEDGER_VERSION:
        return no("its build ledger is of another version")
    for key in ("first_day", "market", "fields"):
        if old.get(key) != ledger[key]:
            return no(f"{key} changed ({old.get(key)!r} -> {ledger[key]!r})")
    if sorted(old.get("freqs", {})) != sorted(ledger["freqs"]):
        return no(f"frequencies changed ({sorted(old.get('freqs', {}))} -> {sorted(ledger['freqs'])})")
    old_last = dt.date.fromisoformat(old["last_day"])
    if old_last >= dt.date.fromisoformat(ledger["last_day"]):
        return no(f"it already reaches {old_last}, nothing to append")
    for freq, entry in ledger["freqs"].items():
        before = {d: fp for d, fp in entry["blocks"].items() if d <= old["last_day"]}
        if before != old["freqs"][freq].get("blocks"):
            changed = _changed_days(before, old["freqs"][freq].get("blocks", {}))
            return no(f"{freq} day blocks changed since it was built: {changed[:3]}{' ...' if len(changed) > 3 else ''}")
        if "spans" not in old["freqs"][freq] or "summary" not in old["freqs"][freq]:
            return no("its build ledger lacks spans")
    return AppendPlan(base=Path(base), old_last_day=old_last, old=old)


def _changed_days(now: dict[str, Any], then: dict[str, Any]) -> list[str]:
    return sorted(d for d in set(now) | set(then) if now.get(d) != then.get(d))


def _link_or_copy(src: Path, dst: Path) -> None:
    """A base bin carried into the new version unchanged; its absence means the base is torn."""
    try:
        link_or_copy(src, dst)
    except FileNotFoundError as exc:
        raise AppendNotPossible(f"{src} is missing") from exc


_FICLONE = 0x40049409  # Linux ioctl: dst shares src's blocks (btrfs, XFS with reflink, ...)
#: (source, target) file systems where FICLONE failed (ext4 has no reflinks): not tried again in
#: this process, so an export of thousands of bins asks once.
_NO_REFLINKS: set[tuple[int, int]] = set()


def _copy_into(source: int, target: int, size: int) -> None:
    """Fill the empty file ``target`` with the ``size`` bytes of ``source`` (file descriptors):
    a reflink where the file system has them (no data written), else a copy inside the kernel
    (copy_file_range, or sendfile across file systems that refuse it). Leaves ``target``'s
    position at its end."""
    devices = (os.fstat(source).st_dev, os.fstat(target).st_dev)
    if devices not in _NO_REFLINKS:
        try:
            import fcntl

            fcntl.ioctl(target, _FICLONE, source)
            os.lseek(target, 0, os.SEEK_END)
            return
        except (ImportError, OSError):
            _NO_REFLINKS.add(devices)
    copied = 0
    while copied < size:
        try:
            n = os.copy_file_range(source, target, size - copied, copied)
        except OSError:  # EXDEV, ENOSYS, EINVAL: older kernels, other file systems
            n = os.sendfile(target, source, copied, size - copied)
        if n == 0:
            raise AppendNotPossible(f"a base bin ended after {copied} of its {size} bytes while it was copied")
        copied += n


def _appended_copy(src: Path, dst: Path, *, first: int, last: int, pad: int, tail: np.ndarray) -> None:
    """``dst`` = the base bin ``src`` (slots first..last) + ``pad`` NaN slots + ``tail``; ``src`` untouched.

    A copy, not ``src`` grown in place through a hard link (which would write only the tail):
    Qlib reads past a calendar's end for forward-looking expressions (``Ref($close, -1)``), so
    the version ``src`` belongs to, which a reader may have pinned, would start answering with
    this version's bars. Each file is opened once (an append touches thousands of bins).
    """
    try:
        source = os.open(src, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise AppendNotPossible(f"{src} is missing") from exc
    try:
        size = os.fstat(source).st_size
        head = np.frombuffer(os.pread(source, 4, 0), dtype="<f4")
        if size != 4 * (last - first + 2) or head.size != 1 or int(head[0]) != first:
            raise AppendNotPossible(
                f"{src} holds {size} bytes from slot {head[:1]}, its ledger says slots {first}..{last}")
        with open(dst, "wb", buffering=0) as target:
            _copy_into(source, target.fileno(), size)
            new = memoryview(np.concatenate([np.full(pad, np.nan, dtype="<f4"),
                                             np.asarray(tail).astype("<f4", copy=False)]).tobytes())
            while new:
                new = new[target.write(new):]
    finally:
        os.close(source)


def _append_frequency(
    *, freq: str, blocks: dict[dt.date, Path], fields: Sequence[str], first_day: dt.date, last_day: dt.date,
    out_dir: Path, plan: AppendPlan,
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Like :func:`_assemble_frequency`, reading only the day blocks after the base's last day."""
    spd = slots_per_day(freq)
    calendar = calendar_frame(first_day, last_day, freq)
    write_tsv(calendar, out_dir / "calendars" / f"{freq}.txt")
    n_slots = calendar.height
    n_old = ((plan.old_last_day - first_day).days + 1) * spd
    old_entry = plan.old["freqs"][freq]
    old_spans = {inst: (int(first), int(last)) for inst, first, last in old_entry["spans"]}
    new_days = {day: path for day, path in sorted(blocks.items()) if plan.old_last_day < day <= last_day}
    listing = {day: block_instruments(path) for day, path in new_days.items()}
    new_names = sorted({name for day_names in listing.values() for name in day_names})
    values = {f: int(old_entry["summary"]["values"].get(f, 0)) for f in fields}
    n_bars = int(old_entry["summary"]["bars"])
    spans = dict(old_spans)
    base_features = plan.base / "features"

    def bin_name(name: str, field: str) -> tuple[Path, Path]:
        return (base_features / inst_path_stem(name).lower() / f"{field}.{freq}.bin",
                out_dir / "features" / inst_path_stem(name).lower() / f"{field}.{freq}.bin")

    for name in sorted(set(old_spans) - set(new_names)):  # no new bar: the base's bins, unchanged
        (out_dir / "features" / inst_path_stem(name).lower()).mkdir(parents=True, exist_ok=True)
        for field in fields:
            _link_or_copy(*bin_name(name, field))
    n_new = n_slots - n_old
    batch_size = max(1, min(len(new_names), ASSEMBLY_BUDGET_BYTES // max(1, n_new * 4)))
    whole = np.empty((batch_size, max(1, n_new)), dtype="<f4")
    for start in range(0, len(new_names), batch_size):
        batch = new_names[start : start + batch_size]
        rows_of = {name: i for i, name in enumerate(batch)}
        buffer = whole[: len(batch), :n_new]

        def load(field: str) -> None:
            buffer.fill(np.nan)
            for day, path in new_days.items():
                copy_block_rows(path, listing[day], spd, field, rows_of, buffer, (day - plan.old_last_day).days - 1)

        load("factor")
        bounds = []
        for i, name in enumerate(batch):
            present = np.flatnonzero(~np.isnan(buffer[i]))
            if present.size == 0:
                raise AppendNotPossible(f"{name} is listed in a {freq} day block without a bar")
            bounds.append((int(present[0]), int(present[-1])))
            n_bars += present.size
            (out_dir / "features" / inst_path_stem(name).lower()).mkdir(parents=True, exist_ok=True)
            old = old_spans.get(name)
            spans[name] = ((old[0] if old else n_old + bounds[-1][0]), n_old + bounds[-1][1])
        for field in sorted(fields, key=lambda f: f != "factor"):
            if field != "factor":
                load(field)
            for i, name in enumerate(batch):
                first, last = bounds[i]
                src, dst = bin_name(name, field)
                old = old_spans.get(name)
                if old is None:
                    series = buffer[i, first : last + 1]
                    dst.write_bytes(encode_feature(n_old + first, series))
                else:
                    series = buffer[i, : last + 1]
                    _appended_copy(src, dst, first=old[0], last=old[1], pad=n_old - old[1] - 1, tail=series)
                values[field] += int(np.count_nonzero(~np.isnan(series)))
    summary = _frequency_summary(freq, n_slots=n_slots, n_bars=n_bars, n_instruments=len(spans), values=values)
    return summary, _slot_spans(sorted((inst, first, last) for inst, (first, last) in spans.items()))


def _blocks_from_bar_files(
    paths: Sequence[Path], *, freq: str, days: Sequence[dt.date], fields: Sequence[str], out_dir: Path
) -> tuple[dict[dt.date, Path], int]:
    """Day blocks from bar files of any split (each bar goes to its UTC day) → (blocks, bars outside days)."""
    first_day, last_day = min(days), max(days)
    if not paths:
        return {}, 0
    bars = pl.read_parquet([Path(p) for p in paths]).with_columns(_day=pl.col("ts").dt.date())
    inside = bars.filter(pl.col("_day").is_between(first_day, last_day))
    blocks: dict[dt.date, Path] = {}
    for (day,), frame in inside.partition_by("_day", as_dict=True, maintain_order=False).items():
        blocks[day] = out_dir / freq / f"{day}.arrow"
        write_block(day_block(frame, day=day, freq=freq, fields=fields), blocks[day])
    return blocks, bars.height - inside.height


def export_qlib(
    *,
    bars_paths: dict[str, list[Path]],
    days: list[dt.date],
    membership: pl.DataFrame,
    market_name: str,
    qlib_dir: Path,
    fields: Sequence[str] = DEFAULT_FIELDS,
) -> dict[str, Any]:
    """Build the whole Qlib provider directory for ``days`` from bar files and swap it in at ``qlib_dir``.

    The one-call form (tests, research examples): ``bars_paths`` maps a Qlib freq name to bar
    Parquet files split any way; bars outside ``days`` are dropped and counted. The workflow
    instead builds day blocks in the resample jobs and calls :func:`assemble_qlib` and
    :func:`publish_dataset` from two rules. Same output, byte for byte.
    """
    if not days:
        raise ValueError("export_qlib: no days")
    check_market_name(market_name)
    fields = check_fields(fields)
    for freq in bars_paths:
        freq_minutes(freq)
    check_publish_target(qlib_dir)  # before any work: a refused target is known now, not after the build
    qlib_dir = Path(qlib_dir)
    qlib_dir.parent.mkdir(parents=True, exist_ok=True)
    # built beside qlib_dir (same file system: publishing links the files), gone afterwards;
    # nothing is written at qlib_dir until the dataset is complete
    with tempfile.TemporaryDirectory(prefix=f".{qlib_dir.name}.build-", dir=qlib_dir.parent) as scratch:
        blocks, outside = {}, {}
        for freq, paths in bars_paths.items():
            blocks[freq], outside[freq] = _blocks_from_bar_files(paths, freq=freq, days=days, fields=fields,
                                                                 out_dir=Path(scratch) / "blocks")
        dataset = Path(scratch) / "dataset"
        summary = assemble_qlib(blocks=blocks, days=days, membership=membership, market_name=market_name,
                                out_dir=dataset, fields=fields)
        for freq, n in outside.items():
            summary["freqs"][freq]["bars_outside_calendar"] = n
        version = publish_dataset(dataset, qlib_dir)
    log.info("qlib export published %s -> %s", qlib_dir, version)
    return summary


def read_membership(universe_paths: Sequence[Path]) -> pl.DataFrame:
    """Point-in-time membership from the daily universe files (only day/inst/member are read)."""
    schema = {"day": pl.Date, "inst": pl.Utf8, "member": pl.Boolean}
    if not universe_paths:
        return pl.DataFrame(schema=schema)
    return pl.scan_parquet([Path(p) for p in universe_paths]).select(
        [pl.col(c).cast(t) for c, t in schema.items()]).collect()


def export_day_blocks(
    *,
    blocks: dict[str, dict[dt.date, Path]],
    universe_paths: Sequence[Path],
    days: Sequence[dt.date],
    market_name: str,
    out_dir: Path,
    fields: Sequence[str] = DEFAULT_FIELDS,
    published: Path | None = None,
) -> dict[str, Any]:
    """The ``qlib`` rule's build: day blocks (freq → day → file) and daily universe files → ``out_dir``.

    Like :func:`assemble_qlib`, with the point-in-time membership read from the universe files
    and the summary of :func:`export_qlib` (a day block holds its own day only, so no bar is
    ever outside the calendar). ``published``: paths.qlib; when it is a dataset this project
    published, it is the base the new days are appended to (if its history is unchanged).
    """
    base = None
    if published is not None and Path(published).exists():
        resolved = Path(published).resolve()
        base = resolved if is_our_dataset(resolved) else None
    summary = assemble_qlib(blocks=blocks, days=list(days), membership=read_membership(universe_paths),
                            market_name=market_name, out_dir=Path(out_dir), fields=fields, base=base)
    for freq in blocks:
        summary["freqs"][freq]["bars_outside_calendar"] = 0
    return summary
