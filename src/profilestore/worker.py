"""The worker: applies accepted batches one at a time, chunk by chunk.

A worker takes a batch only when every batch its client sent before is finished (the store's
claim_next_batch), which keeps each client's batches in acceptance order. Each chunk is one
transaction that checks and advances the batch's cursor, so a worker killed at any moment
resumes exactly where the last commit left off, and two workers on one store never apply the
same chunk twice (the second finds the cursor moved and skips ahead).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Callable

from .batches import BatchService, Chunk, id_of
from .batchfile import Header, parse_header
from .errors import Rejected
from .limits import active_window, parse_windows, pause_after
from .store.base import COMPLETE, STUCK

log = logging.getLogger("profilestore.worker")
PURGE_EVERY_MS = 60_000
PURGE_CHUNK = 1_000


class Worker:
    def __init__(self, batches: BatchService, poll_seconds: float, sleep: Callable[[float], object] | None = None):
        self.batches = batches
        self.poll_seconds = poll_seconds
        self.windows = parse_windows(batches.settings.ingest_windows)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait  # tests pass a sleep that moves a fake clock
        self._last_purge: int | None = None

    def wake(self) -> None:
        """Look for work now instead of at the next poll (a batch was just accepted)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set():
            if not self.apply_next():
                self.purge_expired()
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def purge_expired(self) -> int:
        """Delete profiles past their lifetime, at most once a minute; how many."""
        lifetime, now = self.batches.settings.lifetime_ms, self.batches.clock()
        if not lifetime or (self._last_purge is not None and now - self._last_purge < PURGE_EVERY_MS):
            return 0
        self._last_purge = now
        purged = 0
        while True:
            deleted = self.batches.store.write(None, lambda tx: tx.purge_inactive(now - lifetime, PURGE_CHUNK))
            purged += deleted
            if deleted < PURGE_CHUNK:
                break
        if purged:
            log.info("purged %d expired profiles", purged)
        return purged

    def apply_next(self) -> bool:
        """Apply the next batch until it is finished or the worker stops; False if none waits."""
        with self.batches.store.claim_next_batch() as batch:
            if batch is None:
                return False
            self._apply(batch)
        return True

    def _apply(self, batch) -> None:
        log.info("applying batch %s from row %d of %d", id_of(batch), batch.consumed + 1, batch.size)
        payload = self.batches.store.batch_payload(batch.seq)
        if payload is None:
            self.batches.record_failed_attempt(batch, "the batch's bytes are missing from the store", give_up=True)
            return
        try:
            header = parse_header(payload)
        except Rejected as e:
            self.batches.record_failed_attempt(batch, f"the stored batch is unreadable: {e.message}", give_up=True)
            return
        chunk = self._read_chunk(header, payload, batch.cursor, batch.cursor_line)
        while batch.state not in (COMPLETE, STUCK) and not self._stop.is_set():
            following: list[Chunk] = []  # read while the store writes this chunk

            def read_following(chunk: Chunk = chunk) -> None:
                following.append(self._read_chunk(header, payload, chunk.end, chunk.end_line))

            try:
                batch = self._apply_chunk(batch, header, chunk, read_following)
            except Exception as e:  # a store or programming error: retry, then call it stuck
                log.exception("applying a chunk of batch %s failed", id_of(batch))
                batch = self.batches.record_failed_attempt(batch, f"{type(e).__name__}: {e}")
                self._stop.wait(1.0)
            if following and following[0].start == batch.cursor:
                chunk = following[0]
            else:  # a failed attempt, or another worker moved the cursor
                chunk = self._read_chunk(header, payload, batch.cursor, batch.cursor_line)
        if batch.state == COMPLETE:
            log.info("batch %s complete: %d rows, %d failed", id_of(batch), batch.size, batch.failed)

    def _read_chunk(self, header: Header, payload: bytes, cursor: int, cursor_line: int) -> Chunk:
        """The chunk from the cursor on: fewer rows inside an ingestion window, to hold its rate."""
        window = active_window(self.windows, self.batches.clock())
        rows = self.batches.settings.chunk_rows
        rows = rows if window is None else min(rows, window.rows_per_second)
        return self.batches.read_chunk(header, payload, cursor, cursor_line, rows)

    def _apply_chunk(self, batch, header, chunk, meanwhile):
        """Apply one chunk; inside an ingestion window, then pause to hold its rate."""
        clock = self.batches.clock
        window = active_window(self.windows, clock())
        if window is None:
            return self.batches.apply_chunk(batch, header, chunk, meanwhile=meanwhile)
        started = clock()
        applied = self.batches.apply_chunk(batch, header, chunk, window.reason(), meanwhile)
        self._sleep(pause_after(applied.consumed - batch.consumed, window, (clock() - started) / 1000))
        return applied


def spare_the_collector() -> None:
    """Run Python's cycle collector less often, and never over what start-up made. A batch
    makes millions of short-lived objects (rows, profiles, attributes), none of them in cycles;
    by default every 700 new objects start a collection, and the older collections walk every
    object of the process. Measured: the worker 5-10 % faster, its decoding of stored profiles 30 %."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class WorkerProcess:
    """`profilestore worker` on the store, as a child process of `serve`. The caller must ignore
    SIGUSR1 (the wake-up signal) before the first start: the child inherits that, so a wake-up
    that comes before the worker has set its handler cannot kill it."""

    def __init__(self, store_url: str):
        self.command = [sys.executable, "-m", "profilestore", "worker", "--store", store_url,
                        "--parent-pid", str(os.getpid())]  # fmt: skip
        self.process = subprocess.Popen(self.command)

    def wake(self) -> None:
        """Tell the worker a batch was accepted; start a new one if it has died."""
        if self.process.poll() is not None:
            log.error("the worker process exited with %s; starting a new one", self.process.returncode)
            self.process = subprocess.Popen(self.command)
        self.process.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def die_with(parent_pid: int) -> None:
    """Have the kernel stop this process when its parent dies, even by SIGKILL, so a restarted
    service never finds an old worker still going (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        raise SystemExit("profilestore worker: the serve process that started it is gone")
