"""Time in the simulator: integer milliseconds since the epoch, UTC.

Activity follows the local (UTC+8) daily rhythm of a mobile app: busy in the day and
evening, quiet at night.

>>> fmt_ts(0)
'1970-01-01T00:00:00.000Z'
>>> fmt_ts(1793491200123)
'2026-11-01T00:00:00.123Z'
>>> parse_ts('2026-11-01T00:00:00.123Z')
1793491200123
"""

from __future__ import annotations

import math
import random
import time
from bisect import bisect
from datetime import datetime
from itertools import accumulate

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
LOCAL_OFFSET_H = 8  # China Standard Time

#: relative activity by local hour, for honest app users
HONEST_HOURS = (
    0.6, 0.3, 0.2, 0.15, 0.15, 0.25, 0.6, 1.2, 2.0, 2.6, 3.0, 3.2,
    3.4, 3.0, 2.8, 2.8, 2.9, 3.0, 3.2, 3.8, 4.2, 4.2, 3.4, 1.8,
)  # fmt: skip
#: fraud operations run around the clock, a little heavier late at night
FRAUD_HOURS = (
    2.2, 2.4, 2.4, 2.2, 1.8, 1.4, 1.2, 1.2, 1.4, 1.6, 1.8, 1.8,
    1.8, 1.8, 1.8, 1.8, 1.8, 1.8, 2.0, 2.0, 2.2, 2.2, 2.2, 2.2,
)  # fmt: skip

_CUM = {
    "honest": list(accumulate(HONEST_HOURS)),
    "fraud": list(accumulate(FRAUD_HOURS)),
}


_DATES: dict[int, str] = {}


def fmt_ts(ms: int) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``."""
    day, rest = divmod(ms, DAY)
    date = _DATES.get(day)
    if date is None:
        date = _DATES[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
    secs, milli = divmod(rest, 1000)
    minutes, sec = divmod(secs, 60)
    hour, minute = divmod(minutes, 60)
    return f"{date}T{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}Z"


def parse_ts(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 timestamp."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    return round(dt.timestamp() * 1000)


def local_hour(ms: int) -> int:
    """Hour of the day in China for a timestamp."""
    return ((ms // HOUR) + LOCAL_OFFSET_H) % 24


def time_in_day(rng: random.Random, day_start: int, rhythm: str = "honest") -> int:
    """A moment within the UTC day starting at ``day_start``, drawn by local-hour rhythm."""
    cum = _CUM[rhythm]
    hour = bisect(cum, rng.random() * cum[-1])
    return day_start + ((hour - LOCAL_OFFSET_H) % 24) * HOUR + rng.randrange(HOUR)


def awake_after(rng: random.Random, t: int, rhythm: str = "honest") -> int:
    """The first plausible moment at or after ``t`` for a person to act.

    During the local night (00-07) honest people mostly wait for the morning.
    """
    if rhythm == "honest" and local_hour(t) < 7 and rng.random() < 0.85:
        morning = t - (t + LOCAL_OFFSET_H * HOUR) % DAY + 7 * HOUR
        return morning + rng.randrange(3 * HOUR)
    return t


def lognormal_ms(rng: random.Random, median: float, sigma: float, lo: float, hi: float) -> int:
    """A delay drawn log-normally around ``median`` and clipped to ``[lo, hi]`` (ms)."""
    value = median * math.exp(rng.gauss(0.0, sigma))
    return int(min(hi, max(lo, value)))
