"""The store: run records, the side-effect ledger, shared budgets, worker heartbeats,
shared circuit-breaker and rate-limit state.

One database URL (`TETHER_DATABASE_URL`): a SQLite file by default, PostgreSQL to
scale out. The durable engine keeps its journal in the same database.

Example:
    ```python
    store = Store("sqlite:///.tether/tether.db")
    for run in store.runs.list(limit=10):
        print(run.run_id, run.status, run.cost_usd)
    ```
"""

from __future__ import annotations

import sqlalchemy as sa

from tether.store.budgets import Budgets, ScopeUsage
from tether.store.engine import create_engine, is_sqlite, normalize_url
from tether.store.ledger import Ledger, LedgerEntry, LedgerStatus
from tether.store.migrate import upgrade
from tether.store.policy_states import PolicyStates, State
from tether.store.runs import FINISHED_STATUSES, RunRecord, Runs
from tether.store.workers import WorkerRecord, Workers

__all__ = [
    "FINISHED_STATUSES",
    "Budgets",
    "Ledger",
    "LedgerEntry",
    "LedgerStatus",
    "PolicyStates",
    "RunRecord",
    "Runs",
    "ScopeUsage",
    "State",
    "Store",
    "WorkerRecord",
    "Workers",
    "create_engine",
    "is_sqlite",
    "normalize_url",
    "upgrade",
]


class Store:
    """tether's tables on one database, migrated to the newest revision on open.

    Args:
        url: A database URL (`sqlite:///path.db`, `postgresql://...`).
        engine: An engine to use instead (its owner disposes of it).
    """

    def __init__(self, url: str | None = None, *, engine: sa.Engine | None = None) -> None:
        if engine is None:
            if url is None:
                raise TypeError("Store needs a url or an engine")
            engine = create_engine(url, pool_size=3, max_overflow=2)
            self._owned = True
        else:
            self._owned = False
        self.engine = engine
        upgrade(engine)
        self.runs = Runs(engine)
        self.ledger = Ledger(engine)
        self.budgets = Budgets(engine)
        self.workers = Workers(engine)
        self.policy_states = PolicyStates(engine)

    def close(self) -> None:
        """Close the store's connections (if it opened them)."""
        if self._owned:
            self.engine.dispose()
