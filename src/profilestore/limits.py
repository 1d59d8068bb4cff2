"""Quotas and throttling: rows per client per day, calls per client per minute, and ingestion
windows in which the worker applies batches slowly so that reads stay fast at peak hours."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cachetools import TTLCache

from .errors import RateLimited
from .times import DAY_MS, MINUTE_MS, iso_ms, utc_day_start

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def check_daily_rows(client: str, used: int, size: int, limit: int, now: int) -> None:
    """RateLimited if a batch of `size` rows would take the client past `limit` rows today (UTC)."""
    if limit and used + size > limit:
        reset = utc_day_start(now) + DAY_MS
        raise RateLimited(
            f"Client {client} has {used:,} rows accepted today (UTC); this batch of {size:,} rows would pass "
            f"the daily limit of {limit:,}. Try again after {iso_ms(reset)}",
            retry_after=math.ceil((reset - now) / 1000),
        )


class CallLimiter:
    """At most N calls per client in any 60 seconds, counted in this process. Client codes come
    from callers, so the clients counted are bounded: one quiet for a minute is forgotten."""

    def __init__(self, clock, max_clients: int = 10_000):
        self.clock = clock
        self._calls: TTLCache[str, deque[int]] = TTLCache(max_clients, MINUTE_MS, timer=clock)
        self._lock = threading.Lock()

    def check(self, client: str, per_minute: int) -> None:
        if not per_minute:
            return
        now = self.clock()
        with self._lock:
            calls = self._calls.get(client) or deque()
            self._calls[client] = calls  # kept for another minute from now
            while calls and calls[0] <= now - MINUTE_MS:
                calls.popleft()
            if len(calls) >= per_minute:
                retry_after = math.ceil((calls[0] + MINUTE_MS - now) / 1000)
                raise RateLimited(
                    f"Client {client} made {len(calls)} bulk and status calls in the last minute, "
                    f"the limit is {per_minute}; try again in {retry_after} s",
                    retry_after=retry_after,
                )
            calls.append(now)


@dataclass(frozen=True)
class IngestWindow:
    """Days and hours, in a time zone, in which the worker applies at most rows_per_second."""

    text: str  # days, hours and zone as configured
    days: frozenset[int]
    start: time
    end: time
    zone: ZoneInfo
    rows_per_second: int

    def contains(self, now_ms: int) -> bool:
        local = datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(self.zone)
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def reason(self) -> str:
        return f"ingestion window {self.text}: at most {self.rows_per_second:,} rows/s"


def parse_windows(text: str) -> list[IngestWindow]:
    """Windows written as `DAYS HH:MM-HH:MM ZONE ROWS_PER_SECOND`, separated by `;`, e.g.
    `mon-fri 09:00-18:00 Europe/Berlin 2000; sat 10:00-14:00 UTC 5000`."""
    return [_parse_window(part.strip()) for part in text.split(";") if part.strip()]


def _parse_window(text: str) -> IngestWindow:
    try:
        days, hours, zone, rate = text.split()
        start, end = (time.fromisoformat(t) for t in hours.split("-"))
        window = IngestWindow(f"{days} {hours} {zone}", _days(days), start, end, ZoneInfo(zone), int(rate))
    except (ValueError, KeyError, ZoneInfoNotFoundError) as e:
        raise ValueError(
            f"Bad ingestion window {text!r} ({e}): write DAYS HH:MM-HH:MM ZONE ROWS_PER_SECOND, "
            "e.g. mon-fri 09:00-18:00 Europe/Berlin 2000"
        ) from None
    if window.rows_per_second < 1 or window.start >= window.end:
        raise ValueError(f"Bad ingestion window {text!r}: it needs a rate of at least 1 and a start before its end")
    return window


def _days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def active_window(windows: list[IngestWindow], now_ms: int) -> IngestWindow | None:
    return next((w for w in windows if w.contains(now_ms)), None)


def pause_after(rows: int, window: IngestWindow, took_seconds: float) -> float:
    """How long to wait after applying `rows` so the window's rate holds."""
    return max(0.0, rows / window.rows_per_second - took_seconds)


class Pacer:
    """Ingestion windows as a batch is applied: how many rows the next chunk may hold, and the
    pause after a chunk that holds the window's rate. The worker makes it (it owns the windows
    and the way to sleep); the batch service calls it between chunks."""

    def __init__(
        self, windows: list[IngestWindow], chunk_rows: int, clock: Callable[[], int], sleep: Callable[[float], object]
    ):
        self.windows, self.rows, self.clock, self.sleep = windows, chunk_rows, clock, sleep

    def window(self) -> IngestWindow | None:
        """The window in force now, if any."""
        return active_window(self.windows, self.clock())

    def chunk_rows(self, window: IngestWindow | None) -> int:
        """The rows of the next chunk: fewer inside a window (the one in force), to hold its rate."""
        return self.rows if window is None else min(self.rows, window.rows_per_second)

    def pause(self, rows: int, window: IngestWindow, took_seconds: float) -> None:
        """Sleep after applying `rows` in took_seconds, so that the window's rate holds."""
        self.sleep(pause_after(rows, window, took_seconds))
