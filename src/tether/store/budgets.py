"""Shared budgets: money reserved before a model call and settled after, per scope.

A scope is `user:<id>:<day>`, `tenant:<id>:<day>` or `run:<id>`. A reservation is
one conditional UPDATE per scope (`spent + reserved + amount <= limit`) in one
transaction, so concurrent runs in any number of processes can never reserve past a
limit: the database, not the process, decides. Each reservation is a hold row, so a
run that crashed mid-call has its holds released when it resumes.

Every transaction here locks budget rows in one order (sorted by scope), so two never
deadlock on PostgreSQL; and a hold is given back by whoever deletes its row, so a
settle racing a `release_run` never returns the same reservation twice.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tether.store.tables import budget_holds, budgets

__all__ = ["Budgets", "ScopeUsage"]

_EPSILON = 1e-12
"""Float slack on the limit check, far below a billable amount."""


class ScopeUsage(tuple[float, float, float]):
    """`(limit_usd, reserved_usd, spent_usd)` of one scope."""

    @property
    def left(self) -> float:
        limit, reserved, spent = self
        return limit - reserved - spent


class Budgets:
    """Queries over `tether_budgets` and `tether_budget_holds`."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert = insert

    def _ensure(self, connection: sa.Connection, limits: Mapping[str, float]) -> None:
        if not limits:
            return
        now = time.time()
        statement = self._insert(budgets).on_conflict_do_nothing(index_elements=["scope"])
        connection.execute(
            statement,
            [
                {
                    "scope": scope,
                    "limit_usd": limits[scope],
                    "reserved_usd": 0.0,
                    "spent_usd": 0.0,
                    "updated_at": now,
                }
                for scope in sorted(limits)
            ],
        )

    @staticmethod
    def _move(
        connection: sa.Connection, released: Mapping[str, float], spent: float, now: float
    ) -> None:
        """Take `released[scope]` off each scope's reservation and add `spent` to what it
        has spent, in scope order."""
        for scope in sorted(released):
            connection.execute(
                budgets.update()
                .where(budgets.c.scope == scope)
                .values(
                    reserved_usd=budgets.c.reserved_usd - released[scope],
                    spent_usd=budgets.c.spent_usd + spent,
                    updated_at=now,
                )
            )

    def left(self, limits: Mapping[str, float]) -> float:
        """The least that is left in any of these scopes (limits as configured now)."""
        if not limits:
            return float("inf")
        query = sa.select(budgets.c.scope, budgets.c.reserved_usd, budgets.c.spent_usd).where(
            budgets.c.scope.in_(list(limits))
        )
        with self._engine.connect() as connection:
            used = {scope: reserved + spent for scope, reserved, spent in connection.execute(query)}
        return min(float(limit - used.get(scope, 0.0)) for scope, limit in limits.items())

    def reserve(self, run_id: str, limits: Mapping[str, float], amount: float) -> str | None:
        """Hold `amount` USD in every scope, or in none: the hold's id, or None when one
        scope has less than `amount` left."""
        hold_id = uuid.uuid4().hex
        now = time.time()
        with self._engine.begin() as connection:
            self._ensure(connection, limits)
            for scope in sorted(limits):  # the one lock order: see the module's doc
                limit = limits[scope]
                updated = connection.execute(
                    budgets.update()
                    .where(
                        budgets.c.scope == scope,
                        budgets.c.spent_usd + budgets.c.reserved_usd + amount <= limit + _EPSILON,
                    )
                    .values(
                        reserved_usd=budgets.c.reserved_usd + amount,
                        limit_usd=limit,
                        updated_at=now,
                    )
                ).rowcount
                if not updated:
                    connection.rollback()
                    return None
            connection.execute(
                budget_holds.insert().values(
                    hold_id=hold_id,
                    run_id=run_id,
                    scopes=json.dumps(list(limits)),
                    amount_usd=amount,
                    created_at=now,
                )
            )
        return hold_id

    def settle(self, hold_id: str, spent: float, scopes: Sequence[str]) -> None:
        """Replace a hold by what the call really cost (`spent`, in each of `scopes`).

        A hold already released (its run was recovered meanwhile) only adds the spend.
        """
        now = time.time()
        with self._engine.begin() as connection:
            held = connection.execute(
                sa.select(budget_holds.c.amount_usd).where(budget_holds.c.hold_id == hold_id)
            ).scalar()
            amount = 0.0
            if held is not None:
                deleted = connection.execute(
                    budget_holds.delete().where(budget_holds.c.hold_id == hold_id)
                ).rowcount
                if deleted == 1:  # else a `release_run` got there first and gave it back
                    amount = float(held)
            self._move(connection, dict.fromkeys(scopes, amount), spent, now)

    def release_run(self, run_id: str) -> int:
        """Release every hold of a run (its calls were interrupted); how many there were."""
        now = time.time()
        with self._engine.begin() as connection:
            holds = connection.execute(
                sa.select(budget_holds.c.hold_id, budget_holds.c.scopes, budget_holds.c.amount_usd)
                .where(budget_holds.c.run_id == run_id)
                .order_by(budget_holds.c.hold_id)
            ).all()
            released: dict[str, float] = {}
            count = 0
            for hold_id, scopes, amount in holds:
                # every hold row first, then the budget rows in scope order (see above)
                deleted = connection.execute(
                    budget_holds.delete().where(budget_holds.c.hold_id == hold_id)
                ).rowcount
                if deleted != 1:
                    continue  # settled meanwhile: that settle gave it back
                count += 1
                for scope in json.loads(scopes):
                    released[scope] = released.get(scope, 0.0) + float(amount)
            self._move(connection, released, 0.0, now)
        return count

    def usage(self, scope: str) -> ScopeUsage | None:
        """A scope's limit, what is reserved and what is spent; None if never used."""
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(budgets.c.limit_usd, budgets.c.reserved_usd, budgets.c.spent_usd).where(
                    budgets.c.scope == scope
                )
            ).first()
        return None if row is None else ScopeUsage(tuple(row))
