"""Run records: one row per run, written when it is submitted, started and finished."""

from __future__ import annotations

import builtins
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, get_args

import sqlalchemy as sa

from tether.messages import RunStatus
from tether.store.tables import runs

__all__ = ["RunRecord", "Runs"]

FINISHED_STATUSES = frozenset(get_args(RunStatus)) - {"outcome_unknown"} | {"cancelled"}
"""Statuses of a run that has ended (`outcome_unknown` waits for a human)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as the store keeps it."""

    run_id: str
    agent: str
    target: str | None
    user_id: str | None
    tenant: str | None
    tier: str | None
    status: str
    model: str | None
    prompt_version: str | None
    prompt: str
    output: str | None
    """The final answer, as JSON."""
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    steps: int
    requests: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    executor_id: str | None

    @property
    def duration_s(self) -> float | None:
        """From start to finish (or to now, for a run still going); None before it starts."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else time.time()
        return max(0.0, end - self.started_at)


_COLUMNS = [runs.c[f.name] for f in fields(RunRecord)]


def _record(row: sa.Row[Any]) -> RunRecord:
    return RunRecord(*row)  # type: ignore[call-arg]  # the columns, in field order


# The writes every run makes, built once: building a statement costs SQLAlchemy about
# three times what running a built one does.
_CREATED = (
    "run_id",
    "agent",
    "prompt",
    "status",
    "user_id",
    "tenant",
    "tier",
    "model",
    "prompt_version",
    "target",
    "created_at",
)
_CREATE = runs.insert().values({name: sa.bindparam(name) for name in _CREATED})
_THIS_RUN = runs.c.run_id == sa.bindparam("this_run")
_START = (
    runs.update()
    .where(_THIS_RUN)
    .values(
        status="running",
        executor_id=sa.bindparam("executor"),
        started_at=sa.func.coalesce(runs.c.started_at, sa.bindparam("now")),
        finished_at=None,
    )
    .returning(runs.c.started_at)
)


@functools.cache
def _finish(names: tuple[str, ...]) -> sa.Update:
    """The update that records how a run ended, setting `names` too."""
    return (
        runs.update()
        .where(_THIS_RUN)
        .values({name: sa.bindparam(name) for name in ("status", "finished_at", *names)})
    )


class Runs:
    """Queries over `tether_runs`."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def create(
        self,
        *,
        run_id: str,
        agent: str,
        prompt: str,
        status: str,
        user_id: str | None = None,
        tenant: str | None = None,
        tier: str | None = None,
        model: str | None = None,
        prompt_version: str | None = None,
        target: str | None = None,
    ) -> bool:
        """Record a new run; False (and nothing changed) if `run_id` is already recorded."""
        values = {
            "run_id": run_id,
            "agent": agent,
            "prompt": prompt,
            "status": status,
            "user_id": user_id,
            "tenant": tenant,
            "tier": tier,
            "model": model,
            "prompt_version": prompt_version,
            "target": target,
            "created_at": time.time(),
        }
        try:
            with self._engine.begin() as connection:
                connection.execute(_CREATE, values)
        except sa.exc.IntegrityError:
            return False
        return True

    def started(self, run_id: str, executor_id: str) -> bool | None:
        """Mark the run running on `executor_id` (again, after a crash or a resume).

        Returns:
            True if this is its first start, False if it had started before (an attempt
            was interrupted), None if the run is not recorded (nothing changed).
        """
        with self._engine.begin() as connection:
            now = time.time()
            started_at = connection.execute(
                _START, {"this_run": run_id, "executor": executor_id, "now": now}
            ).scalar()
            if started_at is None:
                return None
            # First start: the time just written (a float, stored and read back exactly).
            return bool(started_at == now)

    def finished(self, run_id: str, status: str, **values: Any) -> None:
        """Record how the run ended: its status, output or error, usage and cost."""
        statement = _finish(tuple(sorted(values)))
        with self._engine.begin() as connection:
            connection.execute(
                statement,
                {"this_run": run_id, "status": status, "finished_at": time.time(), **values},
            )

    def set_status(self, run_id: str, status: str) -> None:
        """Change the status alone (e.g. `queued` again when a run is resumed)."""
        with self._engine.begin() as connection:
            connection.execute(runs.update().where(runs.c.run_id == run_id).values(status=status))

    def get(self, run_id: str, *, tenant: str | None = None) -> RunRecord | None:
        """The run, or None; with `tenant`, only if it is that tenant's."""
        query = sa.select(*_COLUMNS).where(runs.c.run_id == run_id)
        if tenant is not None:
            query = query.where(runs.c.tenant == tenant)
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else _record(row)

    def list(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        agent: str | None = None,
        user_id: str | None = None,
        tenant: str | None = None,
    ) -> builtins.list[RunRecord]:
        """The newest runs first, filtered by what is given."""
        query = sa.select(*_COLUMNS).order_by(runs.c.created_at.desc()).limit(limit)
        for column, value in (
            (runs.c.status, status),
            (runs.c.agent, agent),
            (runs.c.user_id, user_id),
            (runs.c.tenant, tenant),
        ):
            if value is not None:
                query = query.where(column == value)
        with self._engine.connect() as connection:
            return [_record(row) for row in connection.execute(query)]

    def ended_before(self, cutoff: float, *, limit: int = 1000) -> builtins.list[str]:
        """Ids of runs that ended before `cutoff` (epoch seconds), oldest first."""
        query = (
            sa.select(runs.c.run_id)
            .where(runs.c.finished_at < cutoff, runs.c.status.in_(FINISHED_STATUSES))
            .order_by(runs.c.finished_at)
            .limit(limit)
        )
        with self._engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def delete(self, run_ids: Sequence[str]) -> int:
        """Delete these runs' records; how many there were."""
        if not run_ids:
            return 0
        with self._engine.begin() as connection:
            return connection.execute(runs.delete().where(runs.c.run_id.in_(run_ids))).rowcount
