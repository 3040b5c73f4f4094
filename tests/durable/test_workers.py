"""`tether worker` processes: runs submitted to the queue, a worker SIGKILLed mid-run.

Real parts throughout: `tether worker` subprocesses (the console script), a real
database, runs submitted through `Runtime.submit` from this process, and a real HTTP
server downstream that applies each order once per idempotency key and counts every
attempt. The agent (`agents/workerjob.py`) applies one order per run through a slow
idempotent side effect, so runs are in flight when a worker is killed.

With two workers on PostgreSQL, killing one mid-run loses nothing: the other declares it
dead once its heartbeat is stale, takes over its runs, and every run completes with its
effect applied once. A worker stopped with SIGTERM leaves cleanly.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.databases import fresh_postgres_database, postgres_unavailable_reason, sqlite_url
from tests.fakes.http_server import FakeHTTPServer, Reply, Request
from tether.durable import Runtime
from tether.store import Store, WorkerRecord

REPO = Path(__file__).resolve().parents[2]
AGENT_FILE = Path(__file__).with_name("agents") / "workerjob.py"
TARGET = f"{AGENT_FILE}:agent"
TETHER = Path(sys.executable).with_name("tether")
HEARTBEAT_S = 0.5
STALE_S = 3.0

T = TypeVar("T")


# -- the downstream service -------------------------------------------------------------


@dataclass
class Downstream:
    """Applies each order once per idempotency key; remembers every attempt."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    applied: collections.Counter[str] = field(default_factory=collections.Counter)
    orders: dict[str, str] = field(default_factory=dict)

    def handle(self, request: Request) -> Reply:
        body = request.json()
        key = body["key"]
        with self.lock:
            self.attempts.append(body)
            fresh = key not in self.orders
            if fresh:
                self.orders[key] = body["order"]
                self.applied[key] += 1
        return Reply(json={"applied": fresh, "order": body["order"]})

    def attempts_by_key(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(a["key"] for a in self.attempts)

    def pids(self) -> set[int]:
        with self.lock:
            return {a["pid"] for a in self.attempts}


@pytest.fixture
def downstream() -> Iterator[tuple[Downstream, str]]:
    service = Downstream()
    server = FakeHTTPServer(service.handle).start()
    try:
        yield service, f"{server.url}/apply"
    finally:
        server.stop()


# -- workers ----------------------------------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def _start_worker(url: str, downstream_url: str, log: Path) -> Worker:
    env = {
        **os.environ,
        "TETHER_DATABASE_URL": url,
        "TETHER_WORKER_HEARTBEAT_S": str(HEARTBEAT_S),
        "TETHER_WORKER_STALE_S": str(STALE_S),
        "WORKERJOB_DOWNSTREAM": downstream_url,
    }
    command = [str(TETHER), "worker", TARGET, "--concurrency", "4", "--poll", "0.05"]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    return Worker(process, log)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[str, str], Worker]]:
    """`start(url, downstream_url)`: a `tether worker` subprocess; killed at the end."""
    started: list[Worker] = []

    def start(url: str, downstream_url: str) -> Worker:
        worker = _start_worker(url, downstream_url, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def _wait_for(what: str, probe: Callable[[], T | None], timeout: float, *logs: Worker) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        for worker in logs:
            if worker.process.poll() is not None:
                pytest.fail(
                    f"worker {worker.pid} exited ({worker.process.returncode}) while waiting "
                    f"for {what}:\n{worker.output()}"
                )
        if time.monotonic() > deadline:
            details = "\n".join(f"--- worker {w.pid}:\n{w.output()}" for w in logs)
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{details}")
        time.sleep(0.05)


def _registered(store: Store, worker: Worker) -> WorkerRecord | None:
    """The worker's row in `tether_workers` (written at its first heartbeat)."""
    return next((w for w in store.workers.list() if w.pid == worker.pid), None)


def _submit(url: str, orders: list[str]) -> list[str]:
    runtime = Runtime(url)
    try:
        return [runtime.submit("workerjob", order, user="u-1", target=TARGET) for order in orders]
    finally:
        runtime.shutdown()


def _all_completed(store: Store, run_ids: list[str]) -> dict[str, Any] | None:
    records = {r: store.runs.get(r) for r in run_ids}
    if all(r is not None and r.status == "completed" for r in records.values()):
        return records
    return None


def _assert_each_effect_once(
    store: Store, service: Downstream, run_ids: list[str], orders: list[str]
) -> None:
    """One ledger entry per run, finished; downstream applied each run's order once,
    under that call's idempotency key."""
    expected: dict[str, str] = {}
    for run_id in run_ids:
        (entry,) = store.ledger.of_run(run_id)
        assert entry.tool == "apply_effect"
        assert entry.status == "finished"
        assert entry.idempotency_key == f"{run_id}:1:0"
        assert entry.result is not None
        expected[entry.idempotency_key] = json.loads(entry.arguments)["order"]
    assert sorted(expected.values()) == sorted(orders)
    assert service.orders == expected  # every effect applied, under its run's key only
    assert set(service.applied.values()) == {1}


def _stop(worker: Worker, store: Store) -> WorkerRecord:
    """SIGTERM the worker: it exits 0 and leaves its heartbeat stale at once."""
    worker.process.send_signal(signal.SIGTERM)
    try:
        code = worker.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker {worker.pid} did not stop on SIGTERM:\n{worker.output()}")
    assert code == 0, worker.output()
    record = _registered(store, worker)
    assert record is not None
    assert record.heartbeat_at == 0.0  # `leave`: any live reaper takes over at once
    return record


# -- tests -----------------------------------------------------------------------------


def test_two_postgres_workers_one_killed_mid_run_every_run_completes_each_effect_once(
    downstream: tuple[Downstream, str], workers: Callable[[str, str], Worker]
) -> None:
    reason = postgres_unavailable_reason()
    if reason is not None:
        if os.environ.get("TETHER_TEST_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    service, downstream_url = downstream
    with fresh_postgres_database() as url:
        store = Store(url)  # migrated here first: the workers start on a ready schema
        try:
            a = workers(url, downstream_url)
            b = workers(url, downstream_url)
            a_id = _wait_for(
                "worker A's heartbeat", lambda: _registered(store, a), 60, a
            ).executor_id
            b_id = _wait_for(
                "worker B's heartbeat", lambda: _registered(store, b), 60, b
            ).executor_id

            orders = [f"order-{i}" for i in range(20)]
            run_ids = _submit(url, orders)

            # Kill A once it is inside a side effect (it has applied one downstream),
            # so at least one of its runs dies between the effect and its record.
            _wait_for("worker A to apply an effect", lambda: a.pid in service.pids(), 60, a, b)
            a.process.send_signal(signal.SIGKILL)
            a.process.wait(timeout=10)
            on_a = [
                r.run_id
                for r in store.runs.list(limit=100)
                if r.status == "running" and r.executor_id == a_id
            ]
            assert on_a, "worker A had no run in flight when it was killed"

            records = _wait_for(
                "every run to complete", lambda: _all_completed(store, run_ids), 90, b
            )

            # Worker B declared A dead and took over A's runs, which finished on B.
            rows = {w.executor_id: w for w in store.workers.list()}
            assert rows[a_id].status == "dead"
            assert rows[a_id].reaped_by == b_id
            assert rows[a_id].reaped_at is not None
            for run_id in on_a:
                assert records[run_id].executor_id == b_id, run_id

            _assert_each_effect_once(store, service, run_ids, orders)
            # Only a run that was inside its side effect when A died ran it twice (and
            # downstream deduped that): every other effect ran exactly once.
            attempts = service.attempts_by_key()
            for key, count in attempts.items():
                run_id = key.split(":")[0]
                assert count == 1 or (run_id in on_a and count == 2), (key, count)
            assert a.pid in service.pids()
            assert b.pid in service.pids()

            _stop(b, store)
        finally:
            store.close()


def test_a_sqlite_worker_runs_submitted_runs_and_stops_cleanly_on_sigterm(
    tmp_path: Path, downstream: tuple[Downstream, str], workers: Callable[[str, str], Worker]
) -> None:
    service, downstream_url = downstream
    url = sqlite_url(tmp_path)
    store = Store(url)
    try:
        worker = workers(url, downstream_url)
        executor_id = _wait_for(
            "the worker's heartbeat", lambda: _registered(store, worker), 60, worker
        ).executor_id
        orders = ["order-a", "order-b", "order-c"]
        run_ids = _submit(url, orders)

        records = _wait_for(
            "every run to complete", lambda: _all_completed(store, run_ids), 60, worker
        )
        for run_id in run_ids:
            assert records[run_id].executor_id == executor_id
            assert records[run_id].target == TARGET
        _assert_each_effect_once(store, service, run_ids, orders)
        assert set(service.attempts_by_key().values()) == {1}

        record = _stop(worker, store)
        assert record.status == "alive"  # not dead: nobody reaped it, it left
    finally:
        store.close()
