"""`Budgets`: reservations all-or-nothing across scopes, never past a limit (also from
several processes at once), settled into spend, released when a run is recovered."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tests.processes import together
from tether.store import ScopeUsage, Store
from tether.store.tables import budget_holds


def _holds(engine: sa.Engine, run_id: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(budget_holds)
    if run_id is not None:
        query = query.where(budget_holds.c.run_id == run_id)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def _usage(store: Store, scope: str) -> ScopeUsage:
    usage = store.budgets.usage(scope)
    assert usage is not None, scope
    return usage


def test_reserve_until_the_limit_then_none(store: Store, engine: sa.Engine) -> None:
    limits = {"user:u1:2025-01-01": 1.0}
    holds = [store.budgets.reserve("r1", limits, 0.3) for _ in range(3)]
    assert all(isinstance(hold, str) for hold in holds)
    assert len(set(holds)) == 3
    assert store.budgets.reserve("r1", limits, 0.3) is None  # 0.9 + 0.3 > 1.0
    limit, reserved, spent = _usage(store, "user:u1:2025-01-01")
    assert (limit, spent) == (1.0, 0.0)
    assert reserved == pytest.approx(0.9)
    assert _holds(engine, "r1") == 3
    assert store.budgets.reserve("r1", limits, 0.1) is not None  # exactly what is left
    assert store.budgets.reserve("r1", limits, 0.001) is None
    assert _usage(store, "user:u1:2025-01-01").left == pytest.approx(0.0)


def test_a_reservation_larger_than_the_limit_is_refused(store: Store, engine: sa.Engine) -> None:
    assert store.budgets.reserve("r1", {"run:r1": 0.5}, 0.75) is None
    assert _holds(engine) == 0
    usage = store.budgets.usage("run:r1")
    assert usage is None or usage[1] == 0.0


@pytest.mark.parametrize("short_first", [False, True], ids=["short-last", "short-first"])
def test_no_partial_reservation_across_scopes(
    store: Store, engine: sa.Engine, short_first: bool
) -> None:
    roomy, short = "tenant:acme:2025-01-01", "user:u1:2025-01-01"
    assert store.budgets.reserve("r0", {roomy: 10.0, short: 1.0}, 0.8) is not None
    before_roomy, before_short = _usage(store, roomy), _usage(store, short)

    limits = {short: 1.0, roomy: 10.0} if short_first else {roomy: 10.0, short: 1.0}
    assert store.budgets.reserve("r1", limits, 0.5) is None  # the user scope has 0.2 left
    assert _usage(store, roomy) == before_roomy  # untouched, not reserved then forgotten
    assert _usage(store, short) == before_short
    assert _holds(engine, "r1") == 0
    assert store.budgets.usage("run:r1") is None


def test_a_failed_reservation_leaves_a_new_scope_unused(store: Store) -> None:
    assert store.budgets.reserve("r0", {"user:u1": 1.0}, 1.0) is not None
    assert store.budgets.reserve("r1", {"run:r1": 5.0, "user:u1": 1.0}, 0.5) is None
    usage = store.budgets.usage("run:r1")
    assert usage is None or (usage[1], usage[2]) == (0.0, 0.0)
    assert store.budgets.left({"run:r1": 5.0}) == 5.0


def test_left_is_the_least_left_in_any_scope(store: Store) -> None:
    assert store.budgets.left({}) == math.inf
    limits = {"run:r1": 2.0, "user:u1:d": 1.0, "tenant:t:d": 5.0}
    assert store.budgets.left(limits) == 1.0  # nothing used yet: the smallest limit
    hold = store.budgets.reserve("r1", limits, 0.25)
    assert hold is not None
    assert store.budgets.left(limits) == pytest.approx(0.75)
    store.budgets.settle(hold, 0.1, list(limits))
    assert store.budgets.left(limits) == pytest.approx(0.9)
    assert store.budgets.left({"run:r1": 2.0}) == pytest.approx(1.9)
    assert store.budgets.left({"run:r1": 0.05}) == pytest.approx(-0.05)  # limit lowered
    assert store.budgets.left({"user:never-used:d": 3.0}) == 3.0


def test_the_limit_is_the_one_configured_now(store: Store) -> None:
    assert store.budgets.reserve("r1", {"tenant:t:d": 10.0}, 4.0) is not None
    assert store.budgets.reserve("r2", {"tenant:t:d": 5.0}, 2.0) is None  # lowered to 5
    assert _usage(store, "tenant:t:d")[0] == 10.0  # a refusal changes nothing
    assert store.budgets.reserve("r2", {"tenant:t:d": 5.0}, 1.0) is not None
    assert _usage(store, "tenant:t:d") == (5.0, 5.0, 0.0)


def test_settle_moves_the_reservation_into_spend(store: Store, engine: sa.Engine) -> None:
    limits = {"run:r1": 1.0, "user:u1:d": 2.0}
    hold = store.budgets.reserve("r1", limits, 0.5)
    assert hold is not None
    assert _usage(store, "run:r1") == (1.0, 0.5, 0.0)
    store.budgets.settle(hold, 0.125, list(limits))
    for scope, limit in limits.items():
        assert _usage(store, scope) == (limit, 0.0, 0.125)
    assert _holds(engine) == 0
    assert store.budgets.release_run("r1") == 0  # nothing left to release


def test_settle_can_spend_more_than_was_held(store: Store) -> None:
    hold = store.budgets.reserve("r1", {"run:r1": 1.0}, 0.25)
    assert hold is not None
    store.budgets.settle(hold, 0.5, ["run:r1"])
    assert _usage(store, "run:r1") == (1.0, 0.0, 0.5)
    assert store.budgets.reserve("r1", {"run:r1": 1.0}, 0.75) is None
    assert store.budgets.reserve("r1", {"run:r1": 1.0}, 0.5) is not None


def test_settle_of_a_released_hold_only_adds_the_spend(store: Store) -> None:
    limits = {"run:r1": 1.0, "tenant:t:d": 3.0}
    hold = store.budgets.reserve("r1", limits, 0.5)
    other = store.budgets.reserve("r2", {"tenant:t:d": 3.0}, 1.0)
    assert hold is not None
    assert other is not None
    assert store.budgets.release_run("r1") == 1  # the run was recovered mid-call
    assert _usage(store, "tenant:t:d") == (3.0, 1.0, 0.0)
    store.budgets.settle(hold, 0.25, list(limits))  # then the call's settle arrives
    assert _usage(store, "run:r1") == (1.0, 0.0, 0.25)
    assert _usage(store, "tenant:t:d") == (3.0, 1.0, 0.25)  # r2's hold still reserved


def test_release_run_releases_only_that_runs_holds(store: Store, engine: sa.Engine) -> None:
    shared = {"tenant:t:d": 10.0}
    for amount in (0.5, 1.0, 1.5):
        assert store.budgets.reserve("r1", {**shared, "run:r1": 5.0}, amount) is not None
    assert store.budgets.reserve("r2", {**shared, "run:r2": 5.0}, 2.0) is not None
    assert _usage(store, "tenant:t:d") == (10.0, 5.0, 0.0)

    assert store.budgets.release_run("r1") == 3
    assert _usage(store, "tenant:t:d") == (10.0, 2.0, 0.0)
    assert _usage(store, "run:r1") == (5.0, 0.0, 0.0)
    assert _usage(store, "run:r2") == (5.0, 2.0, 0.0)
    assert _holds(engine, "r1") == 0
    assert _holds(engine, "r2") == 1
    assert store.budgets.release_run("r1") == 0
    assert store.budgets.release_run("unknown") == 0


def test_usage_of_an_unused_scope_is_none(store: Store) -> None:
    assert store.budgets.usage("user:nobody:d") is None
    assert store.budgets.reserve("r1", {"user:u:d": 2.0}, 0.5) is not None
    usage = _usage(store, "user:u:d")
    assert isinstance(usage, ScopeUsage)
    assert usage.left == pytest.approx(1.5)


# -- many processes and threads at once -------------------------------------------------

PROCESSES = 4
SHARED_SCOPE = "tenant:acme:2025-01-01"
SHARED_LIMIT = 5.0
AMOUNT = 0.07  # 71 fit in 5.0 (not a whole multiple: float sums must not squeeze a 72nd)


def _reserve_until_refused(url: str, index: int, ready: Callable[[], None]) -> int:
    """A process: reserve `AMOUNT` against the shared scope until refused."""
    store = Store(url)
    try:
        ready()
        granted = 0
        limits = {SHARED_SCOPE: SHARED_LIMIT, f"run:p{index}": 100.0}
        while store.budgets.reserve(f"p{index}", limits, AMOUNT) is not None:
            granted += 1
        return granted
    finally:
        store.close()


def test_concurrent_processes_never_reserve_past_the_limit(
    database_url: str, store: Store, engine: sa.Engine
) -> None:
    outcomes: dict[int, int] = together(_reserve_until_refused, database_url, PROCESSES)

    fits = math.floor(SHARED_LIMIT / AMOUNT)
    assert fits == 71
    assert sum(outcomes.values()) == fits
    limit, reserved, spent = _usage(store, SHARED_SCOPE)
    assert reserved <= limit
    assert reserved == pytest.approx(fits * AMOUNT)
    assert spent == 0.0
    assert _holds(engine) == fits
    for index, granted in outcomes.items():
        assert _holds(engine, f"p{index}") == granted
        usage = store.budgets.usage(f"run:p{index}")  # None: this one got none in
        assert (0.0 if usage is None else usage[1]) == pytest.approx(granted * AMOUNT)


def test_concurrent_threads_never_reserve_past_the_limit(store: Store) -> None:
    limit, amount, threads = 2.0, 0.03, 8
    barrier = threading.Barrier(threads)
    granted = [0] * threads
    errors: list[BaseException] = []

    def reserve(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            while store.budgets.reserve(f"t{index}", {"user:u:d": limit}, amount) is not None:
                granted[index] += 1
                usage = _usage(store, "user:u:d")
                assert usage[1] <= limit + 1e-9
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=reserve, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert errors == []
    assert sum(granted) == math.floor(limit / amount) == 66
    assert _usage(store, "user:u:d")[1] == pytest.approx(66 * amount)


def test_concurrent_settles_and_releases_balance_out(store: Store) -> None:
    """Calls reserve and settle against shared scopes while recoveries release the same
    runs' holds: no deadlock, no error, and each hold is given back exactly once."""
    calls, recovered, rounds = 4, 2, 60
    shared = {"user:u:d": 1000.0, "tenant:t:d": 1000.0}
    errors: list[BaseException] = []
    spent_lock = threading.Lock()
    spent = [0.0]

    def call(index: int) -> None:
        try:
            for _ in range(rounds):
                limits = {f"run:c{index}": 1000.0, **shared}
                hold = store.budgets.reserve(f"c{index}", limits, 1.0)
                assert hold is not None
                store.budgets.settle(hold, 0.5, list(limits))
                with spent_lock:
                    spent[0] += 0.5
        except BaseException as exc:
            errors.append(exc)

    def call_while_recovered(index: int) -> None:
        try:
            for _ in range(rounds):
                run_id = f"x{index}"
                limits = {**shared, f"run:{run_id}": 1000.0}  # another scope order
                hold = store.budgets.reserve(run_id, limits, 1.0)
                assert hold is not None
                release = threading.Thread(target=store.budgets.release_run, args=(run_id,))
                release.start()
                store.budgets.settle(hold, 0.25, list(limits))
                release.join()
                with spent_lock:
                    spent[0] += 0.25
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=call, args=(i,)) for i in range(calls)]
    workers += [threading.Thread(target=call_while_recovered, args=(i,)) for i in range(recovered)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert errors == []
    assert spent[0] == (calls * 0.5 + recovered * 0.25) * rounds
    for scope in shared:
        _limit, reserved, total = _usage(store, scope)
        assert reserved == pytest.approx(0.0, abs=1e-9)  # never released twice
        assert total == pytest.approx(spent[0])
