"""`Workers`: heartbeats, clean shutdowns, and reapers claiming dead workers, each dead
worker by exactly one reaper."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from tether.store import Store, WorkerRecord
from tether.store.tables import workers


def _beat(store: Store, executor_id: str, *, kind: str = "worker", pid: int = 100) -> bool:
    return store.workers.beat(executor_id, host="host-a", pid=pid, kind=kind)


def _set_heartbeat(engine: sa.Engine, executor_id: str, heartbeat_at: float) -> None:
    with engine.begin() as connection:
        connection.execute(
            workers.update()
            .where(workers.c.executor_id == executor_id)
            .values(heartbeat_at=heartbeat_at)
        )


def _get(store: Store, executor_id: str) -> WorkerRecord:
    (record,) = [w for w in store.workers.list() if w.executor_id == executor_id]
    return record


def test_first_beat_registers_the_worker(store: Store) -> None:
    before = time.time()
    assert store.workers.beat("w1", host="host-a", pid=4242, kind="cli")
    record = _get(store, "w1")
    assert (record.host, record.pid, record.kind, record.status) == ("host-a", 4242, "cli", "alive")
    assert before <= record.started_at == record.heartbeat_at
    assert record.reaped_by is None
    assert record.reaped_at is None


def test_later_beats_update_the_heartbeat_only(store: Store, engine: sa.Engine) -> None:
    assert _beat(store, "w1", pid=1)
    first = _get(store, "w1")
    _set_heartbeat(engine, "w1", 1000.0)
    assert _beat(store, "w1", pid=2, kind="cli")  # the registration stays as it was
    record = _get(store, "w1")
    assert record.heartbeat_at > 1000.0
    assert record.started_at == first.started_at
    assert (record.pid, record.kind, record.status) == (1, "worker", "alive")
    assert len(store.workers.list()) == 1


def test_list_is_most_recent_heartbeat_first(store: Store, engine: sa.Engine) -> None:
    for executor_id, heartbeat_at in (("w1", 200.0), ("w2", 300.0), ("w3", 100.0)):
        _beat(store, executor_id)
        _set_heartbeat(engine, executor_id, heartbeat_at)
    assert [w.executor_id for w in store.workers.list()] == ["w2", "w1", "w3"]


def test_claim_dead_claims_only_stale_live_workers(store: Store, engine: sa.Engine) -> None:
    now = time.time()
    heartbeats = {
        "stale": now - 600,
        "older": now - 3600,
        "fresh": now - 5,
        "stopped-stale": now - 600,
        "reaper": now - 600,  # the reaper's own row is never its own claim
    }
    for executor_id in heartbeats:
        _beat(store, executor_id)
    store.workers.stopped("stopped-stale")
    for executor_id, heartbeat_at in heartbeats.items():
        _set_heartbeat(engine, executor_id, heartbeat_at)

    before = time.time()
    claimed = store.workers.claim_dead(now - 60, "reaper")
    assert sorted(claimed) == ["older", "stale"]
    for executor_id in claimed:
        record = _get(store, executor_id)
        assert record.status == "dead"
        assert record.reaped_by == "reaper"
        assert record.reaped_at is not None
        assert record.reaped_at >= before
    assert _get(store, "fresh").status == "alive"
    assert _get(store, "stopped-stale").status == "stopped"
    assert _get(store, "stopped-stale").reaped_by is None
    assert _get(store, "reaper").status == "alive"

    assert store.workers.claim_dead(now - 60, "reaper") == []  # already claimed
    assert store.workers.claim_dead(now - 60, "another-reaper") == ["reaper"]


def test_claim_dead_with_nothing_stale_claims_nothing(store: Store) -> None:
    assert store.workers.claim_dead(time.time() - 60, "reaper") == []
    _beat(store, "w1")
    assert store.workers.claim_dead(time.time() - 60, "reaper") == []
    assert _get(store, "w1").status == "alive"


def test_a_beat_after_being_declared_dead_is_refused(store: Store, engine: sa.Engine) -> None:
    assert _beat(store, "w1")
    _set_heartbeat(engine, "w1", time.time() - 600)
    assert store.workers.claim_dead(time.time() - 60, "reaper") == ["w1"]
    assert not _beat(store, "w1")  # it was only slow; its runs are another's now
    record = _get(store, "w1")
    assert record.status == "dead"
    assert record.reaped_by == "reaper"
    assert len(store.workers.list()) == 1


def test_stopped_is_a_clean_goodbye(store: Store, engine: sa.Engine) -> None:
    _beat(store, "w1")
    _set_heartbeat(engine, "w1", 1000.0)
    store.workers.stopped("w1")
    record = _get(store, "w1")
    assert record.status == "stopped"
    assert record.heartbeat_at > 1000.0
    assert store.workers.claim_dead(time.time() + 60, "reaper") == []  # not for reaping


def test_stopped_does_not_revive_a_dead_worker(store: Store, engine: sa.Engine) -> None:
    _beat(store, "w1")
    _set_heartbeat(engine, "w1", 1000.0)
    assert store.workers.claim_dead(2000.0, "reaper") == ["w1"]
    store.workers.stopped("w1")
    record = _get(store, "w1")
    assert record.status == "dead"
    assert record.heartbeat_at == 1000.0
    store.workers.stopped("never-registered")  # nothing to do, no error
    assert [w.executor_id for w in store.workers.list()] == ["w1"]


def test_concurrent_reapers_never_claim_the_same_worker(
    database_url: str, store: Store, engine: sa.Engine
) -> None:
    stale = [f"w{i:02d}" for i in range(30)]
    for executor_id in stale:
        _beat(store, executor_id)
        _set_heartbeat(engine, executor_id, 1000.0)
    reapers = [f"reaper-{i}" for i in range(4)]
    barrier = threading.Barrier(len(reapers))
    claims: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def reap(reaper: str) -> None:
        own = Store(database_url)  # as if in a process of its own: its own connections
        try:
            barrier.wait(timeout=60)
            claims[reaper] = own.workers.claim_dead(2000.0, reaper)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=reap, args=(reaper,)) for reaper in reapers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    every_claim = [executor_id for claimed in claims.values() for executor_id in claimed]
    assert sorted(every_claim) == stale  # each claimed once: none twice, none missed
    for reaper, claimed in claims.items():
        for executor_id in claimed:
            assert _get(store, executor_id).reaped_by == reaper
