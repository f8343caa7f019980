"""Alpha158 with configurable rolling windows ("Alpha158-style"), for short datasets.

Qlib's Alpha158 uses rolling windows of 5, 10, 20, 30 and 60 bars, so its first complete
feature row needs 60 bars of history. The shipped workflow configs use the real Alpha158; this
handler exists for the test suite and the demo, whose datasets are a few months long, and for
anyone who wants to trade feature history for training days. With the default windows it is
exactly Alpha158 (same 158 features, same label).
"""

from __future__ import annotations

from collections.abc import Sequence

from qlib.contrib.data.handler import Alpha158
from qlib.contrib.data.loader import Alpha158DL

ALPHA158_WINDOWS: tuple[int, ...] = (5, 10, 20, 30, 60)


class Alpha158Windows(Alpha158):
    """Alpha158 whose rolling features use ``windows`` (bars of the handler's ``freq``)."""

    def __init__(self, *args, windows: Sequence[int] = ALPHA158_WINDOWS, **kwargs):
        self.windows = [int(w) for w in windows]
        if not self.windows or min(self.windows) < 2:
            raise ValueError(f"windows {windows!r}: rolling windows must be at least 2 bars")
        super().__init__(*args, **kwargs)

    def get_feature_config(self):
        conf = {
            "kbar": {},
            "price": {"windows": [0], "feature": ["OPEN", "HIGH", "LOW", "VWAP"]},
            "rolling": {"windows": self.windows},
        }
        return Alpha158DL.get_feature_config(conf)
