"""`serve`: a worker pulls runs from the queue and reaps dead workers.

DBOS's open-source executor recovers only its own runs when it restarts; a worker
that dies and stays dead would strand its runs. So every worker writes a heartbeat
to the store, and every worker is also a reaper: a live worker whose heartbeat is
older than `TETHER_WORKER_STALE_S` is declared dead (by exactly one reaper, a
conditional UPDATE), and its pending runs go back on the queue for any worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from dbos import DBOS

from tether.durable.runtime import QUEUE_NAME, Runtime
from tether.observe import get_logger

__all__ = ["serve"]


async def serve(
    runtime: Runtime,
    *,
    concurrency: int = 8,
    global_concurrency: int | None = None,
    polling_interval_s: float = 0.2,
    stop: asyncio.Event | None = None,
) -> None:
    """Run queued runs until `stop` is set (or the task is cancelled); then halt DBOS.

    Args:
        concurrency: Runs at once in this worker.
        global_concurrency: Runs at once across all workers (None: no limit).
        polling_interval_s: How often the queue is polled for new runs.
    """
    runtime.launch(queues=[QUEUE_NAME], kind="worker")
    # The sync `register_queue` refuses to run inside an event loop (DBOS 3.4).
    await DBOS.register_queue_async(
        QUEUE_NAME,
        worker_concurrency=concurrency,
        global_concurrency=global_concurrency,
        polling_interval_sec=polling_interval_s,
        on_conflict="always_update",
    )
    stop = stop or asyncio.Event()
    settings = runtime.settings
    workers = runtime.store.workers
    me = runtime.executor_id
    log = get_logger()
    log.info("worker.start", executor_id=me, concurrency=concurrency)
    try:
        while not stop.is_set():
            # The runtime's heartbeat thread keeps this worker alive; this loop reaps.
            stale_before = time.time() - settings.worker_stale_s
            dead = await asyncio.to_thread(workers.claim_dead, stale_before, me)
            if dead:
                recovered = await asyncio.to_thread(runtime.recover, dead)
                log.warning("worker.reaped", dead=dead, runs=recovered)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.worker_heartbeat_s)
    finally:
        # Halting stops running first, then makes the heartbeat stale, so any live
        # reaper hands this worker's unfinished runs (if any) to the others at once.
        await asyncio.to_thread(runtime.halt)
        log.info("worker.stop", executor_id=me)
