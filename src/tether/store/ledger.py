"""The side-effect ledger: a row per side-effecting tool call, `started` before it is
dispatched and `finished` with its result after, so it is done exactly once."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import sqlalchemy as sa

from tether.store.tables import ledger

__all__ = ["Ledger", "LedgerEntry", "LedgerStatus"]

LedgerStatus = Literal["started", "finished", "retry"]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One side-effecting call."""

    run_id: str
    step_id: int
    tool: str
    call_id: str
    idempotency_key: str
    arguments: str
    """The validated arguments, as JSON."""
    status: LedgerStatus
    result: str | None
    """The `ToolResult`, as JSON, once finished."""
    dedupe_key: str | None
    attempts: int
    started_at: float
    finished_at: float | None
    resolved_by: str | None


_COLUMNS = [ledger.c[f.name] for f in fields(LedgerEntry)]
_KEY = (ledger.c.run_id, ledger.c.step_id)


class Ledger:
    """Queries over `tether_ledger`."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def begin(
        self,
        *,
        run_id: str,
        step_id: int,
        tool: str,
        call_id: str,
        idempotency_key: str,
        arguments: str,
        dedupe_key: str | None = None,
    ) -> tuple[LedgerEntry, bool]:
        """Record that the call is about to be dispatched.

        Returns the entry and whether it is new. An entry that exists already says a
        previous attempt got this far: `finished` (its result is recorded), `started`
        (it was interrupted: its outcome is unknown) or `retry` (a human asked for it to
        run again). Its `attempts` counts this one too, unless it is finished. A `retry`
        entry is returned as found, but marked `started` again, so that a crash during
        the retried call leaves its outcome unknown like the first one's.
        """
        entry = LedgerEntry(
            run_id=run_id,
            step_id=step_id,
            tool=tool,
            call_id=call_id,
            idempotency_key=idempotency_key,
            arguments=arguments,
            status="started",
            result=None,
            dedupe_key=dedupe_key,
            attempts=1,
            started_at=time.time(),
            finished_at=None,
            resolved_by=None,
        )
        try:
            with self._engine.begin() as connection:
                connection.execute(ledger.insert().values(**asdict(entry)))
        except sa.exc.IntegrityError:
            pass
        else:
            return entry, True  # as written: no need to read it back
        with self._engine.begin() as connection:
            retried = connection.execute(
                ledger.update()
                .where(*_where(run_id, step_id), ledger.c.status == "retry")
                .values(status="started", attempts=ledger.c.attempts + 1)
            ).rowcount
            if not retried:
                connection.execute(
                    ledger.update()
                    .where(*_where(run_id, step_id), ledger.c.status != "finished")
                    .values(attempts=ledger.c.attempts + 1)
                )
        found = self.get(run_id, step_id)
        assert found is not None
        return (replace(found, status="retry") if retried else found), False

    def finish(self, run_id: str, step_id: int, result: str) -> None:
        """Record the call's result."""
        with self._engine.begin() as connection:
            connection.execute(
                ledger.update()
                .where(*_where(run_id, step_id))
                .values(status="finished", result=result, finished_at=time.time())
            )

    def get(self, run_id: str, step_id: int) -> LedgerEntry | None:
        """The entry of one call, or None."""
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(*_COLUMNS).where(*_where(run_id, step_id))).first()
        return None if row is None else LedgerEntry(*row)

    def of_run(self, run_id: str) -> list[LedgerEntry]:
        """Every entry of a run, in step order."""
        query = sa.select(*_COLUMNS).where(ledger.c.run_id == run_id).order_by(ledger.c.step_id)
        with self._engine.connect() as connection:
            return [LedgerEntry(*row) for row in connection.execute(query)]

    def find_finished(self, dedupe_key: str) -> LedgerEntry | None:
        """A finished call, of any run, with this cross-run dedupe key (the earliest)."""
        query = (
            sa.select(*_COLUMNS)
            .where(ledger.c.dedupe_key == dedupe_key, ledger.c.status == "finished")
            .order_by(ledger.c.finished_at)
            .limit(1)
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else LedgerEntry(*row)

    def resolve(
        self, run_id: str, step_id: int, *, result: str | None, by: str
    ) -> LedgerEntry | None:
        """A human's verdict on an interrupted call: its `result` (JSON of a
        `ToolResult`), or `None` to run it again. Only a `started` (or `retry`) entry
        can be resolved; returns the entry as it is after, or None if there is none.
        """
        values: dict[str, Any] = {"resolved_by": by}
        if result is None:
            values["status"] = "retry"
        else:
            values.update(status="finished", result=result, finished_at=time.time())
        with self._engine.begin() as connection:
            connection.execute(
                ledger.update()
                .where(*_where(run_id, step_id), ledger.c.status != "finished")
                .values(**values)
            )
        return self.get(run_id, step_id)

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete the entries of these runs."""
        if not run_ids:
            return 0
        with self._engine.begin() as connection:
            return connection.execute(ledger.delete().where(ledger.c.run_id.in_(run_ids))).rowcount


def _where(run_id: str, step_id: int) -> tuple[sa.ColumnElement[bool], ...]:
    return (_KEY[0] == run_id, _KEY[1] == step_id)
