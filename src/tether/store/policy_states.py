"""Shared policy state: the circuit breakers' and rate limiters' state, one row per key,
so every process and machine on the database sees the same circuits and buckets.

The store knows nothing of breakers or buckets: a row holds a JSON state, and
`transact` hands it to a function that returns the new state (and an answer) while the
row is locked, so read-modify-write is atomic across processes. PostgreSQL locks the
row (`SELECT ... FOR UPDATE`); SQLite takes the database's write lock (a writing
statement opens every transaction, as the engine is `IMMEDIATE`).

Time is the database's: the server's clock on PostgreSQL (`clock_timestamp()`), so
workers on machines whose clocks disagree still agree on when a circuit opened; the
machine's on SQLite (every process that opens a SQLite file is on one machine).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tether.store.tables import policy_states

__all__ = ["PolicyStates", "State"]

State = dict[str, Any]
"""A key's state, as the policy that owns the key wrote it (JSON-compatible)."""

T = TypeVar("T")

_PG_NOW = sa.func.extract("epoch", sa.func.clock_timestamp())


class PolicyStates:
    """Queries over `tether_policy_states`.

    Args:
        engine: The store's engine.
        clock: Where "now" is read instead of the database (tests); seconds.
    """

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], float] | None = None) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._clock = clock
        insert = postgresql.insert if self._postgres else sqlite.insert
        self._ensure = insert(policy_states).on_conflict_do_nothing(index_elements=["key"])

    def _select(self, key: str) -> sa.Select[Any]:
        columns: list[Any] = [policy_states.c.state]
        if self._postgres and self._clock is None:
            columns.append(_PG_NOW)
        return sa.select(*columns).where(policy_states.c.key == key)

    def _now(self, row: sa.Row[Any] | None) -> float:
        if self._clock is not None:
            return self._clock()
        if self._postgres and row is not None:
            return float(tuple(row)[1])
        return time.time()

    def read(self, key: str) -> tuple[State | None, float]:
        """`key`'s state (None if never written) and the time now, without locking."""
        state = sa.select(policy_states.c.state).where(policy_states.c.key == key)
        with self._engine.connect() as connection:
            if self._postgres and self._clock is None:
                # One round trip, a row even for a key never seen: its state, the time.
                text, now = connection.execute(sa.select(state.scalar_subquery(), _PG_NOW)).one()
                return _decode(text), float(now)
            row = connection.execute(state).first()
        return (_decode(row[0]) if row is not None else None), self._now(row)

    def transact(
        self, key: str, change: Callable[[State | None, float], tuple[State | None, T]]
    ) -> T:
        """Apply `change(state, now)` to `key` atomically; return its answer.

        `change` gets the current state (None if never written) and the time now, with
        the row locked against every other process; it returns the state to write (None
        to write nothing) and the answer.
        """
        with self._engine.begin() as connection:
            now_wall = time.time()
            fresh = {"key": key, "state": None, "updated_at": now_wall}
            if self._postgres:
                query = self._select(key).with_for_update()
                row = connection.execute(query).first()
                if row is None:  # a new key: make a row to lock (once per key, ever)
                    connection.execute(self._ensure, fresh)
                    row = connection.execute(query).one()
            else:
                # A write first: it opens the IMMEDIATE transaction, the database's lock.
                connection.execute(self._ensure, fresh)
                row = connection.execute(self._select(key)).one()
            state = _decode(row[0])
            now = self._now(row)
            new, answer = change(state, now)
            if new is not None:
                connection.execute(
                    policy_states.update()
                    .where(policy_states.c.key == key)
                    .values(state=json.dumps(new, separators=(",", ":")), updated_at=now_wall)
                )
        return answer

    def keys(self, prefix: str = "") -> list[str]:
        """The keys that have state, those starting with `prefix` (for operators)."""
        query = sa.select(policy_states.c.key).where(policy_states.c.state.is_not(None))
        if prefix:
            query = query.where(policy_states.c.key.startswith(prefix, autoescape=True))
        with self._engine.connect() as connection:
            return list(connection.execute(query.order_by(policy_states.c.key)).scalars())

    def prune(self, idle_s: float) -> int:
        """Retention: delete the state of keys untouched for `idle_s` seconds (a bucket
        idle that long is full again, a circuit closed); how many."""
        cutoff = time.time() - idle_s
        with self._engine.begin() as connection:
            deleted = connection.execute(
                policy_states.delete().where(policy_states.c.updated_at < cutoff)
            ).rowcount
        return int(deleted)


def _decode(text: str | None) -> State | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None
