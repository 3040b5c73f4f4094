"""Worker heartbeats, and the claim a reaper takes on a dead worker's runs."""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa

from tether.store.tables import workers

__all__ = ["WorkerRecord", "Workers"]


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A process that runs durable runs (a `tether worker`, or a CLI running its own)."""

    executor_id: str
    host: str
    pid: int
    kind: str
    status: str
    started_at: float
    heartbeat_at: float
    reaped_by: str | None
    reaped_at: float | None


_COLUMNS = [workers.c[f.name] for f in fields(WorkerRecord)]


class Workers:
    """Queries over `tether_workers`."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def beat(self, executor_id: str, *, host: str, pid: int, kind: str) -> bool:
        """Write a heartbeat; False if a reaper declared this worker dead meanwhile."""
        now = time.time()
        with self._engine.begin() as connection:
            updated = connection.execute(
                workers.update()
                .where(workers.c.executor_id == executor_id, workers.c.status == "alive")
                .values(heartbeat_at=now)
            ).rowcount
            if updated:
                return True
            exists = connection.execute(
                sa.select(workers.c.status).where(workers.c.executor_id == executor_id)
            ).scalar()
            if exists is not None:
                return False
            values: dict[str, Any] = {
                "executor_id": executor_id,
                "host": host,
                "pid": pid,
                "kind": kind,
                "status": "alive",
                "started_at": now,
                "heartbeat_at": now,
            }
            connection.execute(workers.insert().values(**values))
        return True

    def stopped(self, executor_id: str) -> None:
        """A clean shutdown: the worker's runs were finished or handed back."""
        with self._engine.begin() as connection:
            connection.execute(
                workers.update()
                .where(workers.c.executor_id == executor_id, workers.c.status == "alive")
                .values(status="stopped", heartbeat_at=time.time())
            )

    def leave(self, executor_id: str) -> None:
        """A worker that stopped running: its heartbeat is made stale at once, so the
        next reaper hands whatever it left unfinished to the others."""
        with self._engine.begin() as connection:
            connection.execute(
                workers.update()
                .where(workers.c.executor_id == executor_id, workers.c.status == "alive")
                .values(heartbeat_at=0.0)
            )

    def claim_dead(self, stale_before: float, reaper: str) -> builtins.list[str]:
        """Declare dead every live worker (kind `worker`: its runs are on the workers'
        queue) whose last heartbeat is older than `stale_before`; returns those this
        reaper claimed (no other reaper gets them)."""
        with self._engine.connect() as connection:
            stale = list(
                connection.execute(
                    sa.select(workers.c.executor_id).where(
                        workers.c.kind == "worker",
                        workers.c.status == "alive",
                        workers.c.heartbeat_at < stale_before,
                        workers.c.executor_id != reaper,
                    )
                ).scalars()
            )
        claimed: builtins.list[str] = []
        for executor_id in stale:
            with self._engine.begin() as connection:
                won = connection.execute(
                    workers.update()
                    .where(
                        workers.c.executor_id == executor_id,
                        workers.c.status == "alive",
                        workers.c.heartbeat_at < stale_before,
                    )
                    .values(status="dead", reaped_by=reaper, reaped_at=time.time())
                ).rowcount
            if won:
                claimed.append(executor_id)
        return claimed

    def list(self) -> list[WorkerRecord]:
        """Every worker, the most recent heartbeat first."""
        query = sa.select(*_COLUMNS).order_by(workers.c.heartbeat_at.desc())
        with self._engine.connect() as connection:
            return [WorkerRecord(*row) for row in connection.execute(query)]
