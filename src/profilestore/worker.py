"""The worker: decides when batches are applied, and keeps going.

It takes a batch only when every batch its client sent before is finished (the store's
claim_next_batch), which keeps each client's batches in acceptance order, and has the batch
service apply it (BatchService.apply_batch: the chunks, their transactions, the rules and the
pacing inside ingestion windows, with the Pacer the worker makes). It also wakes when a batch
is accepted, stops when told, and purges expired profiles and old batches.

No error ends a worker's loop: a failed step is logged when its cause first appears, noted on
the batch it was for, and tried again after a pause that grows, with jitter, up to a cap. The
loop reports as it goes (a heartbeat); whoever runs it (WorkerThread, and serve's
WorkerProcess around a `profilestore worker`) tells health when it has died or stalled, and a
worker process in that state exits or is killed, to be started again.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict

import orjson

from .batches import BatchService, failure_reason
from .config import Settings
from .limits import Pacer, parse_windows
from .model import Batch, Failing
from .profiles import purge_expired
from .store.base import Store, StoreUnavailable
from .times import MINUTE_MS, backoff, now_ms
from .webhooks import SenderThread, WebhookSender

log = logging.getLogger("profilestore.worker")
PURGE_EVERY_MS = MINUTE_MS
PURGE_CHUNK = 1_000
FIRST_RETRY_SECONDS = 0.25
BEAT_SECONDS = 1.0  # how often a worker reports while it waits
QUICK_DEATH_SECONDS = 10  # a worker process that dies younger than this is restarted after a pause
EXIT_STALLED = 70  # `profilestore worker`'s exit status when its loop died or stalled


class Backoff:
    """Pauses between attempts after failures in a row: doubling from `first` up to `cap`, each
    drawn at random between half and all of that, so that workers that failed together do
    not all come back at the same moment."""

    def __init__(self, first: float, cap: float, draw: Callable[[], float] = random.random):
        self.first, self.cap, self._draw = first, cap, draw
        self.failures = 0
        self._next: float | None = None

    def next_delay(self) -> float:
        """The pause before the next attempt, should this one fail; the same until it is taken."""
        if self._next is None:
            self._next = backoff(self.first, self.cap, self.failures, self._draw)
        return self._next

    def failed(self) -> float:
        """Count a failure; the pause to take now."""
        delay = self.next_delay()
        self.failures += 1
        self._next = None
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self._next = None


class Worker:
    def __init__(
        self, store: Store, settings: Settings, clock: Callable[[], int] = now_ms,
        sleep: Callable[[float], object] | None = None,
    ) -> None:  # fmt: skip
        self.store, self.settings, self.clock = store, settings, clock
        self.batches = BatchService(store, settings, clock)
        self.backoff = Backoff(FIRST_RETRY_SECONDS, settings.retry_max_seconds)
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Tests pass a sleep that moves a fake clock; this one reports while it waits.
        sleep = sleep or (lambda seconds: self._wait(seconds, self._stop))
        self.pacer = Pacer(parse_windows(settings.ingest_windows), settings.chunk_rows, clock, sleep)
        self._last_purge: int | None = None
        self.failing: Failing | None = None
        self._failed_batch: Batch | None = None  # the batch of the attempt that just failed
        self._begun: int | None = None  # the batch this worker has counted its attempt at
        self.beat_at = time.monotonic()

    def wake(self) -> None:
        """Look for work now instead of at the next poll (a batch was just accepted)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def silent_for(self) -> float:
        """Seconds since the loop last reported."""
        return time.monotonic() - self.beat_at

    def run(self) -> None:
        """Apply batches and purge until stopped. An error anywhere is retried (see Backoff)."""
        while not self._stop.is_set():
            self.beat_at = time.monotonic()
            try:
                applied = self.apply_next()
                if not applied:
                    self.purge()
            except Exception as error:
                self._pause_after(error)
                continue
            self._recovered()
            if not applied:
                self._wait(self.settings.worker_poll_seconds, self._wake)
                self._wake.clear()

    def _pause_after(self, error: Exception) -> None:
        delay = self.backoff.failed()
        cause = failure_reason(error)
        if self.failing is None or cause != self.failing.last_error:  # once per cause, not at every attempt
            if isinstance(error, StoreUnavailable):
                log.warning("the store is unavailable (%s); trying again in %.1f s, then less often", cause, delay)
            else:
                log.error("the worker failed; trying again in %.1f s, then less often", delay, exc_info=error)
        now = self.clock()
        batch, self._failed_batch = self._failed_batch, None
        since = self.failing.failing_since_ms if self.failing else now
        self.failing = Failing(batch.id if batch else None, cause, since, now + int(delay * 1000))
        self._wait(delay, self._stop)

    def _recovered(self) -> None:
        if self.failing is not None:
            failures, last = self.backoff.failures, self.failing.last_error
            log.info("the worker goes on after %d failed attempts (the last: %s)", failures, last)
            self.failing = None
        self.backoff.succeeded()

    def _wait(self, seconds: float, event: threading.Event) -> None:
        """Wait until the event is set or the time is up, reporting at least every BEAT_SECONDS."""
        deadline = time.monotonic() + seconds
        while not event.is_set() and (left := deadline - time.monotonic()) > 0:
            event.wait(min(left, BEAT_SECONDS))
            self.beat_at = time.monotonic()

    def purge(self) -> None:
        """At most once a minute: delete expired profiles, and batches past their retention."""
        now = self.clock()
        if self._last_purge is not None and now - self._last_purge < PURGE_EVERY_MS:
            return
        self._last_purge = now
        lifetime_ms = self.settings.lifetime_ms
        if lifetime_ms:
            self._purge_all(
                lambda limit: purge_expired(self.store, self.clock(), lifetime_ms, limit), "expired profiles"
            )
        self._purge_all(self.batches.purge_finished, "batches past their retention")

    def _purge_all(self, purge_some: Callable[[int], int], what: str) -> None:
        """Call purge_some(PURGE_CHUNK), each in its own transaction, until it purges fewer."""
        purged = 0
        while True:
            deleted = purge_some(PURGE_CHUNK)
            self.beat_at = time.monotonic()
            purged += deleted
            if deleted < PURGE_CHUNK:
                break
        if purged:
            log.info("purged %d %s", purged, what)

    def apply_next(self) -> bool:
        """Apply the next batch until it is finished or the worker stops; False if none waits."""
        with self.store.claim_next_batch() as batch:
            if batch is None:
                return False
            try:
                self._attempt(batch)
            except Exception as error:
                self._note_failure(batch, error)
                raise
        return True

    def _note_failure(self, batch: Batch, error: Exception) -> None:
        """Record the failed attempt on the batch, if the store takes even that."""
        self._failed_batch = batch
        retry_in_ms = int(self.backoff.next_delay() * 1000)
        try:
            self.batches.record_failed_attempt(batch, error, retry_in_ms)
        except StoreUnavailable:
            pass  # logged as the loop's own failure
        except Exception:
            log.exception("recording a failed attempt of batch %s failed", batch.id)
        self.beat_at = time.monotonic()

    def _attempt(self, batch: Batch) -> None:
        if self._begun != batch.seq:  # once per process and batch: a crash ends the process
            batch = self.batches.start_attempt(batch)
            self._begun = batch.seq
            if batch.state.finished:
                return
        self.batches.apply_batch(batch, self.pacer, self._stop.is_set, self._chunk_written)

    def _chunk_written(self) -> None:
        self.beat_at = time.monotonic()
        self._recovered()  # the store works again: health, the record and the pauses say so


class WorkerThread:
    """A worker on a thread of this process, and whether it is well; beside it, on a thread of
    its own, the sender of completion webhooks (webhooks.py), so that a slow receiver never
    holds up the batches."""

    def __init__(self, worker: Worker, stall_seconds: float):
        self.worker = worker
        self.stall_seconds = stall_seconds
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="worker", daemon=True)
        self.webhooks = SenderThread(WebhookSender(worker.store, worker.settings, worker.clock))

    def start(self) -> None:
        self._thread.start()
        self.webhooks.start()

    def wake(self) -> None:
        self.worker.wake()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as e:  # what the loop's own handling let through: never silent
            self.error = e
            log.critical("the worker thread died", exc_info=e)

    def failing(self) -> Failing | None:
        return self.worker.failing

    def problem(self) -> str | None:
        """What is wrong with the worker, or None."""
        if not self._thread.is_alive():
            return None if self.worker.stopped else f"the worker thread died ({self.error!r})"
        if sender_problem := self.webhooks.problem():
            return sender_problem
        silent = self.worker.silent_for()
        return f"the worker has not reported for {silent:.0f} s" if silent > self.stall_seconds else None

    def stop(self) -> None:
        self.worker.stop()
        self.webhooks.stop()
        self._thread.join()


def run_worker_process(runner: WorkerThread, signals: Iterable[int], heartbeat_fd: int | None) -> None:
    """The main thread of `profilestore worker`: take signals one at a time (see cli.worker),
    report to the parent through heartbeat_fd while the worker is well, and exit the process
    with EXIT_STALLED when it is not, so that its supervisor starts a new one."""
    runner.start()
    while True:
        problem = runner.problem()
        if problem:
            log.critical("%s: the process exits so that it is started again", problem)
            logging.shutdown()
            os._exit(EXIT_STALLED)  # the worker's thread may hold locks: no clean shutdown
        if heartbeat_fd is not None:
            _beat(heartbeat_fd, runner.failing())
        received = signal.sigtimedwait(signals, BEAT_SECONDS)
        if received is not None and received.si_signo != signal.SIGUSR1:
            return  # SIGINT or SIGTERM: stop
        if received is not None:
            runner.wake()


def _beat(fd: int, failing: Failing | None) -> None:
    """One line to the parent: what the worker keeps failing at, as JSON, or {}."""
    try:
        os.write(fd, orjson.dumps(asdict(failing) if failing else {}) + b"\n")
    except (BlockingIOError, BrokenPipeError):
        pass  # a parent that reads no more, or is gone (die_with stops this process then)


class WorkerProcess:
    """`profilestore worker` on the store, as a child process of `serve`, kept running: a child
    that exits, or that has not reported through its heartbeat pipe for stall_seconds (frozen,
    or its worker stalled), is killed and replaced; one that dies young is replaced after a
    pause that grows. The caller must ignore SIGUSR1 (the wake-up signal) before the first
    start: the child inherits that, so a wake-up that comes before the worker has blocked the
    signal cannot kill it. The child has a session of its own, so that a Ctrl-C or a stop
    signal meant for serve's group reaches it through serve's stop() only."""

    def __init__(self, store_url: str, stall_seconds: float):
        self.command = [sys.executable, "-m", "profilestore", "worker", "--store", store_url,
                        "--parent-pid", str(os.getpid())]  # fmt: skip
        self.stall_seconds = stall_seconds
        self._lock = threading.Lock()  # guards what health and wake() read; held only briefly
        self._stopping = threading.Event()
        self._gap: str | None = "the worker process is starting"  # why no child works, until one reports
        self._quick_deaths = 0  # children in a row that died within QUICK_DEATH_SECONDS
        self.process: subprocess.Popen | None = None
        self._failing: Failing | None = None
        self._beats: int | None = None
        self._start()
        self._watcher = threading.Thread(target=self._watch, name="worker-watcher", daemon=True)
        self._watcher.start()

    def _start(self) -> None:
        beats, beat_end = os.pipe()
        try:
            os.set_blocking(beat_end, False)
            command = [*self.command, "--heartbeat-fd", str(beat_end)]
            process = subprocess.Popen(command, pass_fds=(beat_end,), start_new_session=True)
        except BaseException:
            os.close(beats)
            raise
        finally:
            os.close(beat_end)
        with self._lock:
            self.process, self._beats, self._started = process, beats, time.monotonic()
            self._last_beat, self._beaten, self._failing, self._unread = self._started, False, None, b""

    def wake(self) -> None:
        """Tell the worker a batch was accepted."""
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGUSR1)

    def problem(self) -> str | None:
        """Why no worker process is working right now, or None."""
        with self._lock:
            if self._gap:
                return self._gap
            silent = time.monotonic() - self._last_beat
            return f"the worker process has not reported for {silent:.0f} s" if silent > self.stall_seconds else None

    def failing(self) -> Failing | None:
        with self._lock:
            return self._failing

    def _watch(self) -> None:
        """Read the child's reports and replace it when it is gone or silent. Nothing ends this
        loop but stop(): without it, nothing would start a worker again."""
        poller = select.poll()  # not select(): the pipe's descriptor may be above 1,024
        while not self._stopping.is_set():
            try:
                self._watch_once(poller)
            except Exception:
                log.exception("watching the worker process failed; trying again")
                self._stopping.wait(BEAT_SECONDS)

    def _watch_once(self, poller: select.poll) -> None:
        if self._beats is None:  # the last start failed
            self._replace("no worker process could be started")
            return
        poller.register(self._beats, select.POLLIN)
        try:
            ready = poller.poll(BEAT_SECONDS * 1000)
        finally:
            poller.unregister(self._beats)
        received = os.read(self._beats, 65536) if ready else b""
        if ready and not received:  # the child closed its end: it is exiting
            self._reap()
        elif received:
            self._heard(received)
        gap = self._child_problem()
        if gap and not self._stopping.is_set():
            self._replace(gap)

    def _heard(self, received: bytes) -> None:
        self._unread += received
        *lines, self._unread = self._unread.split(b"\n")
        with self._lock:
            self._last_beat, self._beaten, self._gap = time.monotonic(), True, None
            for line in lines[-1:]:
                try:
                    self._failing = Failing(**orjson.loads(line)) if line != b"{}" else None
                except (ValueError, TypeError):
                    log.warning("the worker process sent an unreadable report: %r", line[:200])

    def _reap(self) -> None:
        assert self.process is not None  # started with the pipe just read
        try:
            self.process.wait(BEAT_SECONDS)
        except subprocess.TimeoutExpired:
            pass  # _child_problem kills it if it goes silent

    def _child_problem(self) -> str | None:
        assert self.process is not None  # started with the pipe just read
        code = self.process.poll()
        if code is not None:
            return f"the worker process exited with status {code}"
        silent = time.monotonic() - self._last_beat
        if silent > self.stall_seconds:
            return f"the worker process had not reported for {silent:.0f} s and was killed"
        return None

    def _replace(self, gap: str) -> None:
        """Kill the child if it still runs and start another, after a pause if it died young.
        Runs on the watcher thread, which lives as long as serve: the kernel signals a child
        whose parent *thread* ends (see die_with)."""
        log.error("%s; starting a new one", gap)
        with self._lock:
            self._gap = f"{gap}; a new one is starting"
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            lived = time.monotonic() - self._started
            self._quick_deaths = self._quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
        self._close_beats()
        if self._quick_deaths:  # a child that keeps failing as it starts: no restarts in a tight loop
            self._stopping.wait(min(30.0, 0.5 * 2**self._quick_deaths))
        if not self._stopping.is_set():
            try:
                self._start()  # the gap lasts until the new child first reports
            except OSError as e:
                log.error("the worker process could not be started: %s", e)
                self._quick_deaths += 1

    def stop(self) -> None:
        self._stopping.set()
        self._watcher.join()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_beats()

    def _close_beats(self) -> None:
        if self._beats is not None:
            os.close(self._beats)
            self._beats = None


def spare_the_collector() -> None:
    """Run Python's cycle collector less often, and never over what start-up made. A batch or
    an export makes millions of short-lived objects (rows, profiles, attributes), none of them in cycles;
    by default every 700 new objects start a collection, and the older collections walk every
    object of the process. Measured: the worker 5-10 % faster, its decoding of stored profiles 30 %."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def die_with(parent_pid: int) -> None:
    """Have the kernel stop this process when its parent dies, even by SIGKILL, so a restarted
    service never finds an old worker still going (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        raise SystemExit("profilestore worker: the serve process that started it is gone")
