"""Loaded by Python at start-up when this folder is on PYTHONPATH (the worker fault tests put
it there for the processes they start), to make a worker fail as a bug or a crash would:

- PROFILESTORE_TEST_WORKER_DIES names a file that does not exist yet: the first worker loop to
  start creates it and dies at once, with an error its own handling cannot catch;
- PROFILESTORE_TEST_WORKER_CRASHES set: the worker process kills itself (SIGKILL) as it begins
  applying a chunk, as running out of memory would.
"""

import os
import signal

marker = os.environ.get("PROFILESTORE_TEST_WORKER_DIES")
if marker:
    import profilestore.worker

    class InjectedDeath(BaseException):
        pass

    run = profilestore.worker.Worker.run

    def run_or_die(self):
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise InjectedDeath("the worker loop died (injected by the test)")
        return run(self)

    profilestore.worker.Worker.run = run_or_die

if os.environ.get("PROFILESTORE_TEST_WORKER_CRASHES"):
    import profilestore.batches

    def crash(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    profilestore.batches.BatchService.write_chunk = crash
