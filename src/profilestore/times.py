"""Time in milliseconds since the epoch, as every record keeps it, and as Target writes it; and
the pause between attempts that failed."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def utc_day_start(epoch_ms: int) -> int:
    return epoch_ms - epoch_ms % DAY_MS


# Cached: an export writes the times of every attribute of every profile, and the attributes
# one batch chunk wrote share their time; a miss takes 3.6 µs here, a hit 0.1.
@lru_cache(maxsize=4096)
def iso_ms(epoch_ms: int | None) -> str | None:
    """ISO-8601 with milliseconds and an offset, as Target writes modifiedAt."""
    if epoch_ms is None:
        return None
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds")


def backoff(first: float, cap: float, failures: int, draw: Callable[[], float] = random.random) -> float:
    """The pause after `failures` failed attempts in a row: doubling from `first` up to `cap`,
    drawn at random between half and all of that, so that what failed together does not all
    come back at the same moment."""
    ceiling = min(cap, first * 2 ** min(failures, 30))  # 2**1024 is no float
    return ceiling * (0.5 + draw() / 2)
