"""`PolicyStates`: JSON states by key, changed atomically from many processes at once,
timed by the database's clock; listed and pruned for operators."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tests.processes import together
from tether.store import PolicyStates, Store
from tether.store.tables import policy_states


def _count(change_state: dict[str, Any] | None, now: float) -> tuple[dict[str, Any], int]:
    n = 0 if change_state is None else change_state["n"]
    return {"n": n + 1, "at": now}, n + 1


def test_an_unknown_key_reads_as_none_at_the_databases_time(store: Store) -> None:
    before = time.time()
    state, now = store.policy_states.read("breaker:model:x")
    assert state is None
    # The server's clock on PostgreSQL, this machine's on SQLite: the same machine here.
    assert before - 5 <= now <= time.time() + 5


def test_transact_writes_what_the_change_returns_and_answers(store: Store) -> None:
    states = store.policy_states
    assert states.transact("k", _count) == 1
    assert states.transact("k", _count) == 2
    state, now = states.read("k")
    assert state is not None
    assert state["n"] == 2
    assert state["at"] <= now
    assert states.keys() == ["k"]


def test_a_change_that_returns_none_writes_nothing(store: Store) -> None:
    states = store.policy_states
    seen: list[tuple[Any, float]] = []

    def look(state: dict[str, Any] | None, now: float) -> tuple[None, str]:
        seen.append((state, now))
        return None, "looked"

    assert states.transact("k", look) == "looked"
    assert seen[0][0] is None
    assert states.read("k")[0] is None
    assert states.keys() == []  # a key seen but never written has no state
    states.transact("k", _count)
    assert states.transact("k", look) == "looked"
    assert seen[1][0] == {"n": 1, "at": pytest.approx(seen[1][0]["at"])}
    assert states.read("k")[0] == seen[1][0]


def test_a_change_that_raises_writes_nothing(store: Store) -> None:
    states = store.policy_states
    states.transact("k", _count)

    def fail(state: dict[str, Any] | None, now: float) -> tuple[dict[str, Any], None]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        states.transact("k", fail)
    assert states.read("k")[0] is not None
    assert states.transact("k", _count) == 2


def test_keys_by_prefix_and_prune_by_idleness(store: Store, engine: sa.Engine) -> None:
    states = store.policy_states
    for key in ("breaker:model:a", "breaker:tool:b", "ratelimit:user:u_%:rpm"):
        states.transact(key, _count)
    assert states.keys("breaker:") == ["breaker:model:a", "breaker:tool:b"]
    assert states.keys("ratelimit:user:u_%") == ["ratelimit:user:u_%:rpm"]  # no wildcards
    assert states.keys("ratelimit:user:u_x") == []
    with engine.begin() as connection:
        connection.execute(
            policy_states.update()
            .where(policy_states.c.key == "breaker:model:a")
            .values(updated_at=time.time() - 3 * 86_400)
        )
    assert states.prune(2 * 86_400) == 1
    assert states.keys() == ["breaker:tool:b", "ratelimit:user:u_%:rpm"]
    assert states.prune(2 * 86_400) == 0


def test_an_injected_clock_replaces_the_databases(store: Store) -> None:
    states = PolicyStates(store.engine, clock=lambda: 1234.5)
    assert states.read("k") == (None, 1234.5)
    assert states.transact("k", _count) == 1
    assert states.read("k") == ({"n": 1, "at": 1234.5}, 1234.5)


# -- many processes at once ---------------------------------------------------------------

PROCESSES = 4
INCREMENTS = 40


def _increment(url: str, index: int, ready: Callable[[], None]) -> list[int]:
    """A process: add one to a shared counter `INCREMENTS` times."""
    store = Store(url)
    try:
        ready()
        return [store.policy_states.transact("counter", _count) for _ in range(INCREMENTS)]
    finally:
        store.close()


def test_concurrent_processes_never_lose_an_update(database_url: str, store: Store) -> None:
    answers = [n for seen in together(_increment, database_url, PROCESSES).values() for n in seen]
    total = PROCESSES * INCREMENTS
    # Every increment saw a distinct count: none read a state another was changing.
    assert sorted(answers) == list(range(1, total + 1))
    state, _ = store.policy_states.read("counter")
    assert state is not None
    assert state["n"] == total
