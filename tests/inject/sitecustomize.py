"""Loaded by Python at start-up when this folder is on PYTHONPATH (the worker-death tests put
it there for the processes they start): with PROFILESTORE_TEST_WORKER_DIES naming a file
that does not exist yet, the first worker loop to start creates it and dies at once, with an
error that its own handling cannot catch, as a bug in it would."""

import os

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
