"""Read a built Qlib directory back through real Qlib (qlib.init + D.features)."""

from __future__ import annotations

import sys
from pathlib import Path


def read_sample(qlib_dir: Path, market: str, *, freq: str, start: str, end: str, fields: list[str] | None = None,
                limit_instruments: int = 3):
    """Return a pandas frame of ``fields`` for a few instruments of ``market`` at ``freq``."""
    import qlib
    from qlib.data import D

    qlib.init(provider_uri=str(qlib_dir), region="us", kernels=1)
    instruments = D.list_instruments(D.instruments(market), start_time=start, end_time=end, as_list=True)
    chosen = sorted(instruments)[:limit_instruments]
    return D.features(chosen, fields or ["$open", "$high", "$low", "$close", "$volume", "$amount", "$vwap"],
                      start_time=start, end_time=end, freq=freq)


if __name__ == "__main__":
    qdir, market, freq, start, end = sys.argv[1:6]
    print(read_sample(Path(qdir), market, freq=freq, start=start, end=end).dropna().head(10).to_string())
