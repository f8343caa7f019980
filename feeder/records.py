"""OKX payloads → raw records (docs/ARCHITECTURE.md, "Raw record").

Pure functions, no I/O. Everything downstream (cleaning, backfill, quality reports) reads the
records this module makes, so it is deliberately strict about *structure* and deliberately
lenient about *content*:

* A record keeps one element of the exchange's ``data`` array **verbatim**: strings stay
  strings, ``seqId`` stays a JSON number, unknown fields are kept. Nothing is converted to
  ``Decimal`` or ``float``; interpreting values is cleaning's job, and a lossless raw layer is
  what lets cleaning be fixed and re-run later.
* What cannot become a record (subscribe acks, errors, notices, frames that are not JSON, an
  element without an instrument or timestamp) is returned as a :class:`Reject` with a short,
  stable ``reason`` that callers count (metrics, quality reports) and a ``detail`` for the
  log. Exchange data never makes these functions raise: a collector must not die because
  the exchange sent something odd.

Record key order is fixed (``v, source, channel, inst, ts, recv_ts, data``) so shards are
byte-for-byte reproducible from the same input.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from feeder.identifiers import is_inst_id

RECORD_VERSION = 1

#: OKX channel names the raw layer knows (ARCHITECTURE.md, ``channel``).
#: ``books5`` records are sampled by the collector (the last book of each exchange-clock second,
#: ``collector.sampler``), not every push; every other channel is recorded as pushed.
CHANNELS: frozenset[str] = frozenset({"books5", "candle1m", "funding-rate", "open-interest", "tickers", "trades"})

#: Candle arrays: ``[ts, o, h, l, c, vol, volCcy]`` before 2023, then ``+ [volCcyQuote, confirm]``.
CANDLE_MIN_LEN = 7
CANDLE_CONFIRM_INDEX = 8

# Reasons (stable strings: they are metric labels and keys of quality reports).
R_NOT_JSON = "not_json"            # frame text is not JSON (or uses NaN/Infinity)
R_NOT_OBJECT = "not_object"        # JSON, but not an object
R_EVENT = "event"                  # subscribe/unsubscribe ack, login, channel-conn-count: expected
R_ERROR = "error_event"            # {"event": "error", ...}: a subscription or request failed
R_NOTICE = "notice_event"          # {"event": "notice", ...}: e.g. 64008 "connection will close"
R_NO_ARG = "no_arg"                # data frame without an ``arg`` object
R_UNKNOWN_CHANNEL = "unknown_channel"  # a channel the raw layer does not record
R_NO_DATA = "no_data"              # ``data`` missing, not a list, or empty
R_BAD_ELEMENT = "bad_element"      # a ``data`` element of the wrong shape (e.g. candle too short)
R_MISSING_INST = "missing_inst"    # neither ``arg.instId`` nor the element's ``instId``
R_INST_MISMATCH = "inst_mismatch"  # ``arg.instId`` and the element's ``instId`` disagree
R_MISSING_TS = "missing_ts"        # no ``ts`` (nor ``fundingTime`` for funding) / candle [0] empty
R_BAD_TS = "bad_ts"                # a timestamp that is not a non-negative integer of ms
R_BAD_INST = "bad_inst"            # an instId not of OKX's shape (it would become a file name)

REASONS: frozenset[str] = frozenset({
    R_NOT_JSON, R_NOT_OBJECT, R_EVENT, R_ERROR, R_NOTICE, R_NO_ARG, R_UNKNOWN_CHANNEL, R_NO_DATA,
    R_BAD_ELEMENT, R_MISSING_INST, R_INST_MISMATCH, R_MISSING_TS, R_BAD_TS, R_BAD_INST,
})

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reject:
    """Something that did not become a record.

    ``reason`` is one of :data:`REASONS` (count it); ``detail`` is a human-readable context
    string for the log (event code/message, offending value), never needed for counting.
    """

    reason: str
    detail: str = ""
    channel: str | None = None
    inst: str | None = None


@dataclass(slots=True)
class ParseResult:
    """Records made from one frame (or one REST response) and what was rejected."""

    records: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    def extend(self, other: ParseResult) -> None:
        self.records.extend(other.records)
        self.rejects.extend(other.rejects)


def _no_constants(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


# Built once: ``json.loads``/``json.dumps`` with non-default options construct a new decoder or
# encoder on every call, a measurable share of the collector's per-message cost.
_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_frame(raw: str | bytes | bytearray) -> Mapping[str, Any] | Reject:
    """Parse one WebSocket text frame; return the object or a :class:`Reject`.

    ``NaN``/``Infinity`` are refused (they are not JSON and could not be written back as JSON).
    Numbers are parsed by the standard library: integers exactly (``seqId``), floats as
    Python floats, which re-encode to the same value (OKX sends none in the recorded channels).
    """
    try:
        obj = _DECODER.decode(raw) if type(raw) is str else json.loads(raw, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", "replace")
        return Reject(R_NOT_JSON, f"{exc}: {text[:200]!r}")
    if not isinstance(obj, dict):
        return Reject(R_NOT_OBJECT, f"JSON {type(obj).__name__}: {str(obj)[:200]!r}")
    return obj


def _parse_ms(value: Any) -> int | None:
    """Epoch ms from OKX's string (or, leniently, a JSON integer); None if not an integer >= 0."""
    kind = type(value)
    if kind is str:
        return int(value) if value.isascii() and value.isdigit() else None
    if kind is int:
        return value if value >= 0 else None
    return None  # bool (a subclass of int) and everything else


def _event_reject(frame: Mapping[str, Any]) -> Reject:
    event = str(frame.get("event"))
    arg = frame.get("arg") if isinstance(frame.get("arg"), Mapping) else {}
    parts = [f"event={event}"]
    for key in ("code", "msg", "connId", "id"):
        if frame.get(key) not in (None, ""):
            parts.append(f"{key}={frame[key]}")
    if arg:
        parts.append(f"arg={json.dumps(arg, separators=(',', ':'), ensure_ascii=False)}")
    reason = {"error": R_ERROR, "notice": R_NOTICE}.get(event, R_EVENT)
    return Reject(reason, " ".join(parts), channel=arg.get("channel"), inst=arg.get("instId"))


def record_from_element(
    channel: str,
    element: Any,
    *,
    recv_ts: int,
    source: str = "ws",
    inst: str | None = None,
) -> Record | Reject:
    """One ``data`` element (WS push or REST row) → a record, or why not.

    ``inst`` is the instrument the element belongs to when the element does not say
    (candle arrays; ``arg.instId`` of a WS frame; the request's ``instId`` for REST candles).
    If both are present and differ, the element is rejected rather than filed under the wrong
    instrument.

    Timestamps (``ts`` of the record): candles → element 0 (open time); everything else →
    ``ts``; funding elements without ``ts`` (pre-2023 pushes, ``funding-rate-history`` rows)
    → ``fundingTime``.
    """
    if channel == "candle1m":
        if type(element) is not list or len(element) < CANDLE_MIN_LEN:
            return Reject(R_BAD_ELEMENT, f"candle is not an array of >= {CANDLE_MIN_LEN} items: {str(element)[:200]}",
                          channel=channel, inst=inst)
        if not inst:
            return Reject(R_MISSING_INST, "candle without instId (pass inst=)", channel=channel)
        raw_ts = element[0]
        if raw_ts in (None, ""):
            return Reject(R_MISSING_TS, "candle without open time", channel=channel, inst=inst)
    else:
        if type(element) is not dict and not isinstance(element, Mapping):
            return Reject(R_BAD_ELEMENT, f"{channel} element is not an object: {str(element)[:200]}",
                          channel=channel, inst=inst)
        own_inst = element.get("instId")
        if own_inst not in (None, ""):
            if not isinstance(own_inst, str):
                return Reject(R_MISSING_INST, f"instId is not a string: {own_inst!r}", channel=channel)
            if inst and own_inst != inst:
                return Reject(R_INST_MISMATCH, f"arg.instId={inst} but element instId={own_inst}",
                              channel=channel, inst=own_inst)
            inst = own_inst
        if not inst:
            return Reject(R_MISSING_INST, f"{channel} element without instId", channel=channel)
        raw_ts = element.get("ts")
        if raw_ts in (None, "") and channel == "funding-rate":
            raw_ts = element.get("fundingTime")
        if raw_ts in (None, ""):
            return Reject(R_MISSING_TS, f"{channel} element without ts", channel=channel, inst=inst)
    ts = _parse_ms(raw_ts)
    if ts is None:
        return Reject(R_BAD_TS, f"timestamp {raw_ts!r} is not integer epoch ms", channel=channel, inst=inst)
    if not is_inst_id(inst):
        return Reject(R_BAD_INST, f"instId {str(inst)[:100]!r} is not an OKX instrument id", channel=channel)
    return {"v": RECORD_VERSION, "source": source, "channel": channel, "inst": inst, "ts": ts,
            "recv_ts": int(recv_ts), "data": element}


def records_from_frame(
    frame: Mapping[str, Any] | Any,
    *,
    recv_ts: int,
    source: str = "ws",
    channels: Collection[str] = CHANNELS,
) -> ParseResult:
    """A decoded WebSocket push frame → one record per ``data`` element.

    Events (``{"event": ...}``), frames of channels not in ``channels`` and malformed frames
    give rejects; a frame whose elements are partly bad keeps the good ones.
    """
    result = ParseResult()
    if type(frame) is not dict and not isinstance(frame, Mapping):
        result.rejects.append(Reject(R_NOT_OBJECT, f"frame is {type(frame).__name__}"))
        return result
    if "event" in frame:
        result.rejects.append(_event_reject(frame))
        return result
    arg = frame.get("arg")
    if type(arg) is not dict and not isinstance(arg, Mapping):
        result.rejects.append(Reject(R_NO_ARG, f"frame without arg object: {str(frame)[:200]}"))
        return result
    channel = arg.get("channel")
    inst = arg.get("instId")
    if type(inst) is not str or not inst:
        inst = None
    if type(channel) is not str or channel not in channels:
        result.rejects.append(Reject(R_UNKNOWN_CHANNEL, f"channel={channel!r}",
                                     channel=channel if isinstance(channel, str) else None, inst=inst))
        return result
    data = frame.get("data")
    if type(data) is not list or not data:
        result.rejects.append(Reject(R_NO_DATA, f"data={str(data)[:100]}", channel=channel, inst=inst))
        return result
    for element in data:
        out = record_from_element(channel, element, recv_ts=recv_ts, source=source, inst=inst)
        (result.rejects if isinstance(out, Reject) else result.records).append(out)  # type: ignore[arg-type]
    return result


def records_from_text(
    raw: str | bytes | bytearray,
    *,
    recv_ts: int,
    source: str = "ws",
    channels: Collection[str] = CHANNELS,
) -> ParseResult:
    """:func:`decode_frame` + :func:`records_from_frame` for a raw text frame."""
    frame = decode_frame(raw)
    if isinstance(frame, Reject):
        return ParseResult(rejects=[frame])
    return records_from_frame(frame, recv_ts=recv_ts, source=source, channels=channels)


def records_from_rest(
    channel: str,
    rows: Iterable[Any],
    *,
    recv_ts: int,
    inst: str | None = None,
) -> ParseResult:
    """REST ``data`` rows → records with ``source: "rest"`` (same shape as WS records).

    ``inst`` is required for candle rows (``history-candles`` rows carry no instrument); for
    object rows it is checked against each row's own ``instId``.
    """
    result = ParseResult()
    if channel not in CHANNELS:
        result.rejects.append(Reject(R_UNKNOWN_CHANNEL, f"channel={channel!r}", channel=channel, inst=inst))
        return result
    for row in rows:
        out = record_from_element(channel, row, recv_ts=recv_ts, source="rest", inst=inst)
        (result.rejects if isinstance(out, Reject) else result.records).append(out)  # type: ignore[arg-type]
    return result


def candle_confirmed(record: Mapping[str, Any]) -> bool:
    """True if a candle record is a closed bar (``confirm == "1"``).

    Pre-2023 arrays have no ``confirm`` and count as not confirmed: nothing says they are final.
    """
    data = record.get("data")
    return (isinstance(data, Sequence) and not isinstance(data, (str, bytes))
            and len(data) > CANDLE_CONFIRM_INDEX and data[CANDLE_CONFIRM_INDEX] == "1")


def encode_record(record: Mapping[str, Any]) -> bytes:
    """A record as one compact UTF-8 JSON line, ``\\n``-terminated.

    Raises ``ValueError`` for values JSON cannot represent (NaN, infinities): that is a bug in
    the caller, not exchange data (:func:`decode_frame` never produces them).
    """
    return (_ENCODER.encode(record) + "\n").encode("utf-8")


def decode_record(line: bytes | str) -> Record:
    """Inverse of :func:`encode_record` (for readers and tests); raises ``ValueError`` if bad."""
    obj = _DECODER.decode(line) if type(line) is str else json.loads(line, parse_constant=_no_constants)
    if not isinstance(obj, dict):
        raise ValueError(f"record line is JSON {type(obj).__name__}, not an object")
    return obj

