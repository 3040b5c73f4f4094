"""`Runs`: a run's record from submission to its end, the tenant filter, listing,
retention queries and `duration_s`."""

from __future__ import annotations

import dataclasses
import time

import pytest
import sqlalchemy as sa

from tether.store import FINISHED_STATUSES, RunRecord, Store
from tether.store.tables import runs


def _create(store: Store, run_id: str, **values: str) -> None:
    values.setdefault("agent", "agent")
    values.setdefault("prompt", f"prompt of {run_id}")
    values.setdefault("status", "queued")
    assert store.runs.create(run_id=run_id, **values)


def _set(engine: sa.Engine, run_id: str, **values: object) -> None:
    with engine.begin() as connection:
        connection.execute(runs.update().where(runs.c.run_id == run_id).values(**values))


def test_create_records_a_queued_run(store: Store) -> None:
    before = time.time()
    assert store.runs.create(
        run_id="r1",
        agent="weather",
        prompt="What's the weather?",
        status="queued",
        user_id="u1",
        tenant="acme",
        tier="free",
        model="openai:gpt-4o-mini",
        prompt_version="v3",
        target="examples/weather.py:agent",
    )
    after = time.time()
    record = store.runs.get("r1")
    assert record is not None
    assert (record.run_id, record.agent, record.prompt, record.status) == (
        "r1",
        "weather",
        "What's the weather?",
        "queued",
    )
    assert (record.user_id, record.tenant, record.tier) == ("u1", "acme", "free")
    assert (record.model, record.prompt_version) == ("openai:gpt-4o-mini", "v3")
    assert record.target == "examples/weather.py:agent"
    assert before <= record.created_at <= after
    assert record.started_at is None
    assert record.finished_at is None
    assert record.executor_id is None
    assert record.output is None
    assert record.error is None
    usage = (record.steps, record.requests, record.tool_calls)
    assert usage == (0, 0, 0)
    assert (record.input_tokens, record.output_tokens, record.cost_usd) == (0, 0, 0.0)


def test_create_twice_keeps_the_first(store: Store) -> None:
    assert store.runs.create(run_id="r1", agent="first", prompt="p1", status="queued")
    assert not store.runs.create(run_id="r1", agent="second", prompt="p2", status="running")
    record = store.runs.get("r1")
    assert record is not None
    assert (record.agent, record.prompt, record.status) == ("first", "p1", "queued")
    assert len(store.runs.list()) == 1


def test_get_of_an_unknown_run_is_none(store: Store) -> None:
    assert store.runs.get("nope") is None


def test_get_with_a_tenant_hides_other_tenants_runs(store: Store) -> None:
    _create(store, "mine", tenant="acme")
    _create(store, "theirs", tenant="globex")
    _create(store, "nobodys")
    assert store.runs.get("mine", tenant="acme") is not None
    assert store.runs.get("theirs", tenant="acme") is None
    assert store.runs.get("nobodys", tenant="acme") is None
    theirs = store.runs.get("theirs")  # without a tenant: no filter
    assert theirs is not None
    assert theirs.tenant == "globex"


def test_started_marks_running_and_keeps_the_first_start(store: Store) -> None:
    _create(store, "r1")
    before = time.time()
    store.runs.started("r1", "exec-1")
    record = store.runs.get("r1")
    assert record is not None
    assert record.status == "running"
    assert record.executor_id == "exec-1"
    assert record.started_at is not None
    assert record.started_at >= before
    first_start = record.started_at

    store.runs.finished("r1", "outcome_unknown")
    store.runs.started("r1", "exec-2")  # resumed elsewhere after a crash
    again = store.runs.get("r1")
    assert again is not None
    assert again.status == "running"
    assert again.executor_id == "exec-2"
    assert again.started_at == first_start
    assert again.finished_at is None


def test_started_says_whether_it_is_the_first_start(store: Store) -> None:
    _create(store, "r1")
    assert store.runs.started("r1", "exec-1") is True
    assert store.runs.started("r1", "exec-2") is False  # an attempt was interrupted
    assert store.runs.started("missing", "exec-1") is None
    assert store.runs.get("missing") is None


def test_finished_records_the_outcome(store: Store) -> None:
    _create(store, "r1")
    store.runs.started("r1", "exec-1")
    before = time.time()
    store.runs.finished(
        "r1",
        "completed",
        output='"sunny"',
        steps=3,
        requests=2,
        tool_calls=1,
        input_tokens=120,
        output_tokens=40,
        cost_usd=0.0123,
    )
    record = store.runs.get("r1")
    assert record is not None
    assert record.status == "completed"
    assert record.output == '"sunny"'
    assert record.error is None
    assert (record.steps, record.requests, record.tool_calls) == (3, 2, 1)
    assert (record.input_tokens, record.output_tokens) == (120, 40)
    assert record.cost_usd == pytest.approx(0.0123)
    assert record.finished_at is not None
    assert record.finished_at >= before


def test_finished_with_an_error(store: Store) -> None:
    _create(store, "r1")
    store.runs.finished("r1", "failed", error="ToolExecutionError: boom")
    record = store.runs.get("r1")
    assert record is not None
    assert (record.status, record.error, record.output) == (
        "failed",
        "ToolExecutionError: boom",
        None,
    )


def test_set_status_changes_the_status_alone(store: Store) -> None:
    _create(store, "r1")
    store.runs.started("r1", "exec-1")
    started = store.runs.get("r1")
    store.runs.set_status("r1", "queued")
    record = store.runs.get("r1")
    assert record is not None
    assert started is not None
    assert record.status == "queued"
    assert record == dataclasses.replace(started, status="queued")


def test_list_is_newest_first_and_filtered(store: Store, engine: sa.Engine) -> None:
    rows = [
        ("r1", "weather", "u1", "acme", "completed"),
        ("r2", "weather", "u2", "acme", "failed"),
        ("r3", "support", "u1", "globex", "completed"),
        ("r4", "support", "u1", "acme", "running"),
        ("r5", "weather", "u1", "acme", "completed"),
    ]
    for index, (run_id, agent, user, tenant, status) in enumerate(rows):
        _create(store, run_id, agent=agent, user_id=user, tenant=tenant, status=status)
        _set(engine, run_id, created_at=1000.0 + index)  # distinct, known order

    def ids(**filters: object) -> list[str]:
        return [record.run_id for record in store.runs.list(**filters)]  # type: ignore[arg-type]

    assert ids() == ["r5", "r4", "r3", "r2", "r1"]
    assert ids(limit=2) == ["r5", "r4"]
    assert ids(status="completed") == ["r5", "r3", "r1"]
    assert ids(agent="support") == ["r4", "r3"]
    assert ids(user_id="u1") == ["r5", "r4", "r3", "r1"]
    assert ids(tenant="acme") == ["r5", "r4", "r2", "r1"]
    assert ids(tenant="acme", agent="weather", status="completed", user_id="u1") == ["r5", "r1"]
    assert ids(tenant="initech") == []
    assert all(isinstance(record, RunRecord) for record in store.runs.list())


def test_ended_before_finds_ended_runs_oldest_first(store: Store, engine: sa.Engine) -> None:
    for run_id, status, finished_at in [
        ("late", "completed", 300.0),
        ("old", "failed", 100.0),
        ("middle", "cancelled", 200.0),
        ("recent", "completed", 900.0),
        ("waiting", "outcome_unknown", 50.0),  # waits for a human: never cleaned up
        ("going", "running", None),
    ]:
        _create(store, run_id)
        _set(engine, run_id, status=status, finished_at=finished_at)
    assert store.runs.ended_before(500.0) == ["old", "middle", "late"]
    assert store.runs.ended_before(500.0, limit=2) == ["old", "middle"]
    assert store.runs.ended_before(200.0) == ["old"]  # strictly before
    assert store.runs.ended_before(10.0) == []
    assert "outcome_unknown" not in FINISHED_STATUSES
    assert "running" not in FINISHED_STATUSES


def test_every_finished_status_counts_as_ended(store: Store) -> None:
    for status in sorted(FINISHED_STATUSES):
        _create(store, status)
        store.runs.finished(status, status)
    ended = store.runs.ended_before(time.time() + 60)
    assert sorted(ended) == sorted(FINISHED_STATUSES)


def test_delete_removes_only_those_runs(store: Store) -> None:
    for run_id in ("r1", "r2", "r3"):
        _create(store, run_id)
    assert store.runs.delete([]) == 0
    assert store.runs.delete(["r1", "r3", "unknown"]) == 2
    assert [record.run_id for record in store.runs.list()] == ["r2"]
    assert store.runs.get("r1") is None
    assert store.runs.delete(["r1"]) == 0


def test_duration_of_a_recorded_run(store: Store, engine: sa.Engine) -> None:
    _create(store, "r1")
    record = store.runs.get("r1")
    assert record is not None
    assert record.duration_s is None  # not started
    _set(engine, "r1", started_at=1000.0, finished_at=1012.5, status="completed")
    record = store.runs.get("r1")
    assert record is not None
    assert record.duration_s == pytest.approx(12.5)


def test_duration_of_a_run_still_going_counts_to_now(store: Store) -> None:
    _create(store, "r1")
    store.runs.started("r1", "exec-1")
    record = store.runs.get("r1")
    assert record is not None
    assert record.started_at is not None
    first = record.duration_s
    assert first is not None
    assert first >= 0.0
    later = dataclasses.replace(record, started_at=time.time() - 3600)
    assert later.duration_s is not None
    assert later.duration_s >= 3600


def test_duration_is_never_negative(store: Store) -> None:
    _create(store, "r1")
    record = store.runs.get("r1")
    assert record is not None
    skewed = dataclasses.replace(record, started_at=2000.0, finished_at=1999.0)
    assert skewed.duration_s == 0.0
