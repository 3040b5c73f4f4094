"""`Heartbeat`: a launched runtime says, every few seconds, that it is alive.

Workers and CLI processes alike, so `tether resume` never takes a run from a process
that is still running it; only workers' runs are reaped (see `worker`), because only
they are on the workers' queue.
"""

from __future__ import annotations

import os
import socket
import threading

from tether.observe import get_logger
from tether.store import Workers

__all__ = ["Heartbeat"]


class Heartbeat:
    """A daemon thread writing this process's heartbeat until `stop`."""

    def __init__(self, workers: Workers, executor_id: str, kind: str, interval_s: float) -> None:
        self._workers = workers
        self._executor_id = executor_id
        self._kind = kind
        self._interval = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"tether-heartbeat-{executor_id}", daemon=True
        )
        self._reaped = False

    def start(self) -> None:
        """Write the first heartbeat now, then keep beating in the background."""
        self._once()
        self._thread.start()

    def _once(self) -> None:
        alive = self._workers.beat(
            self._executor_id, host=socket.gethostname(), pid=os.getpid(), kind=self._kind
        )
        if not alive and not self._reaped:
            # A pause longer than the stale limit: a reaper handed this worker's runs to
            # others (each side effect stays once, through the ledger). Say so, once.
            self._reaped = True
            get_logger().warning("heartbeat.reaped_while_alive", executor_id=self._executor_id)

    def _beat(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._once()
            except Exception:  # a database hiccup: the next beat tries again
                continue

    def stop(self) -> None:
        """Stop beating, and make the heartbeat stale at once (the process is leaving:
        whatever it did not finish may be taken over without waiting)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._workers.leave(self._executor_id)
