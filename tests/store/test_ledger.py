"""`Ledger`: a side-effecting call is `started` before dispatch and `finished` after;
a second attempt learns what the first did; humans resolve interrupted calls."""

from __future__ import annotations

import time

import sqlalchemy as sa

from tether.store import LedgerEntry, Store
from tether.store.tables import ledger


def _begin(
    store: Store,
    run_id: str = "r1",
    step_id: int = 1,
    *,
    dedupe_key: str | None = None,
    arguments: str = '{"to": "a@b.c"}',
) -> tuple[LedgerEntry, bool]:
    return store.ledger.begin(
        run_id=run_id,
        step_id=step_id,
        tool="send_email",
        call_id=f"call-{run_id}-{step_id}",
        idempotency_key=f"{run_id}:{step_id}",
        arguments=arguments,
        dedupe_key=dedupe_key,
    )


def _set(engine: sa.Engine, run_id: str, step_id: int, **values: object) -> None:
    with engine.begin() as connection:
        connection.execute(
            ledger.update()
            .where(ledger.c.run_id == run_id, ledger.c.step_id == step_id)
            .values(**values)
        )


def test_begin_records_a_started_call(store: Store) -> None:
    before = time.time()
    entry, new = _begin(store, dedupe_key="k1")
    assert new
    assert entry.run_id == "r1"
    assert entry.step_id == 1
    assert entry.tool == "send_email"
    assert entry.call_id == "call-r1-1"
    assert entry.idempotency_key == "r1:1"
    assert entry.arguments == '{"to": "a@b.c"}'
    assert entry.status == "started"
    assert entry.result is None
    assert entry.dedupe_key == "k1"
    assert entry.attempts == 1
    assert entry.started_at >= before
    assert entry.finished_at is None
    assert entry.resolved_by is None
    assert store.ledger.get("r1", 1) == entry


def test_begin_again_counts_the_attempt(store: Store) -> None:
    first, _ = _begin(store)
    second, new = _begin(store, arguments='{"changed": true}')
    assert not new
    assert second.status == "started"  # the previous attempt's outcome is unknown
    assert second.attempts == 2
    assert second.arguments == first.arguments  # the first record stands
    assert second.started_at == first.started_at
    third, new = _begin(store)
    assert not new
    assert third.attempts == 3


def test_begin_after_finish_neither_counts_nor_reopens(store: Store) -> None:
    _begin(store)
    _begin(store)
    store.ledger.finish("r1", 1, '{"ok": true}')
    entry, new = _begin(store)
    assert not new
    assert entry.status == "finished"
    assert entry.result == '{"ok": true}'
    assert entry.attempts == 2


def test_entries_are_per_run_and_step(store: Store) -> None:
    _, new_a = _begin(store, "r1", 1)
    _, new_b = _begin(store, "r1", 2)
    _, new_c = _begin(store, "r2", 1)
    assert (new_a, new_b, new_c) == (True, True, True)
    entry, new = _begin(store, "r1", 2)
    assert not new
    assert entry.attempts == 2
    other = store.ledger.get("r1", 1)
    assert other is not None
    assert other.attempts == 1


def test_finish_records_the_result(store: Store) -> None:
    _begin(store)
    before = time.time()
    store.ledger.finish("r1", 1, '{"content": "sent"}')
    entry = store.ledger.get("r1", 1)
    assert entry is not None
    assert entry.status == "finished"
    assert entry.result == '{"content": "sent"}'
    assert entry.finished_at is not None
    assert entry.finished_at >= before
    assert entry.attempts == 1


def test_get_of_an_unknown_call_is_none(store: Store) -> None:
    _begin(store)
    assert store.ledger.get("r1", 2) is None
    assert store.ledger.get("r2", 1) is None


def test_find_finished_by_dedupe_key_returns_the_earliest(store: Store, engine: sa.Engine) -> None:
    for run_id, finished_at in (("late", 2000.0), ("early", 1000.0), ("middle", 1500.0)):
        _begin(store, run_id, 1, dedupe_key="charge-42")
        store.ledger.finish(run_id, 1, f'"{run_id}"')
        _set(engine, run_id, 1, finished_at=finished_at)
    _begin(store, "unfinished", 1, dedupe_key="charge-42")
    _set(engine, "unfinished", 1, finished_at=1.0)  # started only: never a match

    found = store.ledger.find_finished("charge-42")
    assert found is not None
    assert (found.run_id, found.result) == ("early", '"early"')
    assert store.ledger.find_finished("charge-43") is None


def test_find_finished_ignores_started_and_retry_entries(store: Store) -> None:
    _begin(store, "r1", 1, dedupe_key="k")
    _begin(store, "r2", 1, dedupe_key="k")
    store.ledger.resolve("r2", 1, result=None, by="ops@example.com")
    assert store.ledger.find_finished("k") is None
    store.ledger.finish("r2", 1, '"done"')
    found = store.ledger.find_finished("k")
    assert found is not None
    assert found.run_id == "r2"


def test_resolve_with_a_result_finishes_the_call(store: Store) -> None:
    _begin(store)
    resolved = store.ledger.resolve("r1", 1, result='{"content": "it did send"}', by="ana")
    assert resolved is not None
    assert resolved.status == "finished"
    assert resolved.result == '{"content": "it did send"}'
    assert resolved.resolved_by == "ana"
    assert resolved.finished_at is not None
    assert store.ledger.get("r1", 1) == resolved


def test_resolve_without_a_result_asks_for_a_retry(store: Store) -> None:
    _begin(store)
    resolved = store.ledger.resolve("r1", 1, result=None, by="ana")
    assert resolved is not None
    assert resolved.status == "retry"
    assert resolved.result is None
    assert resolved.finished_at is None
    assert resolved.resolved_by == "ana"
    entry, new = _begin(store)  # the resumed run gets this far again
    assert not new
    assert entry.status == "retry"
    assert entry.attempts == 2


def test_a_retry_can_still_be_resolved_with_a_result(store: Store) -> None:
    _begin(store)
    store.ledger.resolve("r1", 1, result=None, by="ana")
    resolved = store.ledger.resolve("r1", 1, result='"sent after all"', by="bob")
    assert resolved is not None
    assert (resolved.status, resolved.result, resolved.resolved_by) == (
        "finished",
        '"sent after all"',
        "bob",
    )


def test_a_finished_call_cannot_be_resolved_again(store: Store) -> None:
    _begin(store)
    first = store.ledger.resolve("r1", 1, result='"first verdict"', by="ana")
    assert first is not None
    second = store.ledger.resolve("r1", 1, result='"second verdict"', by="bob")
    assert second == first
    retry = store.ledger.resolve("r1", 1, result=None, by="carol")
    assert retry == first

    _begin(store, "r2", 1)
    store.ledger.finish("r2", 1, '"real result"')
    finished = store.ledger.get("r2", 1)
    after = store.ledger.resolve("r2", 1, result=None, by="ana")
    assert after == finished
    assert after is not None
    assert after.resolved_by is None


def test_resolve_of_an_unknown_call_is_none(store: Store) -> None:
    assert store.ledger.resolve("r1", 1, result=None, by="ana") is None
    assert store.ledger.get("r1", 1) is None


def test_of_run_lists_a_runs_entries_in_step_order(store: Store) -> None:
    for step_id in (7, 2, 11, 5):
        _begin(store, "r1", step_id)
    _begin(store, "r2", 3)
    entries = store.ledger.of_run("r1")
    assert [entry.step_id for entry in entries] == [2, 5, 7, 11]
    assert {entry.run_id for entry in entries} == {"r1"}
    assert store.ledger.of_run("r3") == []


def test_delete_runs_removes_only_their_entries(store: Store) -> None:
    _begin(store, "r1", 1)
    _begin(store, "r1", 2)
    _begin(store, "r2", 1)
    _begin(store, "r3", 1)
    assert store.ledger.delete_runs([]) == 0
    assert store.ledger.delete_runs(["r1", "r3", "r9"]) == 3
    assert store.ledger.of_run("r1") == []
    assert store.ledger.of_run("r3") == []
    assert [entry.step_id for entry in store.ledger.of_run("r2")] == [1]
    _, new = _begin(store, "r1", 1)
    assert new  # a deleted entry is forgotten
