"""Exchange identifiers that become parts of file names.

Why a module of its own: an ``instId`` arrives from the exchange (the instruments endpoint,
WebSocket pushes, REST rows) and then names files: ``clean/<day>/<instId>.parquet``, the
backfill's fetch-log pieces, the daily-metric cache, Qlib's ``features/<instid>/``. A string such
as ``../../../../PWNED-USDT-SWAP`` must never get that far. Every place that reads an ``instId``
from outside checks it here first, and every place that builds a path from one asks for
:func:`inst_path_stem`, so a path can only ever be made from a string of OKX's own shape.

OKX instrument ids are upper-case letters and digits in 2 to 6 dash-separated parts:
``BTC-USDT`` (spot), ``BTC-USDT-SWAP``, ``BTC-USD-240329`` (futures),
``BTC-USD-240329-50000-C`` (options), ``BTC-USD_UM_XPERP-310404`` (an underscore occurs in
some futures families). A part may also hold ``.`` (decimal option strikes), never first, so no
part is ``.`` or ``..``; there is no ``/`` anywhere. Upper case only: Qlib lower-cases
instrument directories, so two ids differing in case alone would share one directory.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

log = logging.getLogger(__name__)

INST_ID_PATTERN = r"[A-Z0-9][A-Z0-9_.]{0,31}(?:-[A-Z0-9][A-Z0-9_.]{0,31}){1,5}"
_INST_ID_RE = re.compile(INST_ID_PATTERN)
MAX_INST_ID_LENGTH = 64


class InvalidInstrumentId(ValueError):
    """A string that is not an OKX instrument id was about to be used as one."""


def is_inst_id(value: object) -> bool:
    """True if ``value`` has the shape of an OKX ``instId`` (and so is safe in a file name)."""
    return (isinstance(value, str) and len(value) <= MAX_INST_ID_LENGTH
            and _INST_ID_RE.fullmatch(value) is not None)


def inst_path_stem(inst: object) -> str:
    """``inst`` itself, for use as a file or directory name; raises if it is not an instId.

    Called where a path is built, as the last line of defence: the readers already refuse
    such ids with a log line, so reaching this error means a new reader forgot to.
    """
    if not is_inst_id(inst):
        raise InvalidInstrumentId(
            f"refusing to use {str(inst)[:100]!r} as an instrument file name: not an OKX instrument id "
            f"(pattern {INST_ID_PATTERN}). It came from outside (the exchange or a raw shard); "
            "nothing was written for it."
        )
    return str(inst)


def split_inst_ids(values: Iterable[object], *, where: str) -> tuple[list[str], list[object]]:
    """``(valid, refused)``: keep the values shaped like instIds, log every refused one.

    ``where`` names the source in the log line (e.g. "instruments endpoint"), so an operator
    can tell which answer carried the bad string.
    """
    valid: list[str] = []
    refused: list[object] = []
    for value in values:
        if is_inst_id(value):
            valid.append(value)  # type: ignore[arg-type]
        else:
            refused.append(value)
    for value in refused:
        log.warning("%s: refused instId %r: not an OKX instrument id (pattern %s); ignored",
                    where, str(value)[:100], INST_ID_PATTERN)
    return valid, refused
