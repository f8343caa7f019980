"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one.

Every stage writes its outputs through here (temp file in the same directory, then ``os.replace``),
so a job killed halfway leaves nothing half-written for the next job or a reader to trip over.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` for a temp file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(payload: bytes, path: Path) -> None:
    write_atomically(path, lambda tmp: Path(tmp).write_bytes(payload))


def write_text(text: str, path: Path) -> None:
    write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    write_atomically(path, lambda tmp: frame.write_parquet(tmp, statistics=True))


def write_json(payload: Any, path: Path) -> None:
    def dump(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")

    write_atomically(path, dump)


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """``dst`` = ``src`` as a hard link (no bytes written), or a copy where links are impossible.

    Published files are never modified in place (a change writes a new file and renames it),
    so a link shares them safely between dataset versions. A missing ``src`` raises
    FileNotFoundError; any other link failure (another file system, a link limit) copies.
    """
    try:
        os.link(src, dst)
    except FileNotFoundError:
        raise
    except OSError:
        shutil.copy2(src, dst)
