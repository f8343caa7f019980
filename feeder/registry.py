"""One name for each concept: time units, fields, frequencies, market names.

Every stage, rule, the research code and the docs read these from here, so a concept is
spelled once. (Fields, frequencies and the market name are added here by the registry work of
issue 13; the time units below are what every stage already shares.)
"""

from __future__ import annotations

#: One minute and one UTC day in epoch milliseconds; OKX timestamps are epoch ms.
MINUTE_MS = 60_000
DAY_MS = 86_400_000
#: 1-minute bars in a UTC day (crypto trades 24/7: every day has all of them).
MINUTES_PER_DAY = 1440
