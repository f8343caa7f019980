"""Read a built Qlib directory back through real Qlib (qlib.init + D.features)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def qlib_read(qlib_dir: Path, code: str) -> object:
    """Run ``code`` after ``qlib.init`` on ``qlib_dir`` in a fresh interpreter (Qlib caches instruments
    per process) and return the JSON its last printed line holds."""
    prog = ("import json, qlib\nfrom qlib.data import D\n"
            f"qlib.init(provider_uri={str(qlib_dir)!r}, region='us', kernels=1)\n" + code)
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


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
