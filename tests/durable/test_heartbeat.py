"""Every launched runtime heartbeats in the store; only workers are reaped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.databases import sqlite_url
from tether.durable import Runtime
from tether.settings import Settings
from tether.store import Store


@pytest.fixture
def url(tmp_path: Path) -> str:
    return sqlite_url(tmp_path)


def test_a_launched_runtime_beats_and_leaves_on_halt(url: str) -> None:
    runtime = Runtime(url, settings=Settings(worker_heartbeat_s=0.05))
    runtime.launch()
    try:
        (row,) = runtime.store.workers.list()
        assert (row.executor_id, row.kind, row.status) == (runtime.executor_id, "cli", "alive")
        first = row.heartbeat_at
        deadline = time.monotonic() + 10
        while runtime.store.workers.list()[0].heartbeat_at == first:
            assert time.monotonic() < deadline, "the heartbeat never moved"
            time.sleep(0.05)
    finally:
        runtime.shutdown()
    store = Store(url)
    try:
        (row,) = store.workers.list()
        assert row.heartbeat_at == 0.0  # left: stale at once
        assert row.status == "alive"  # not reaped: nobody claimed it
    finally:
        store.close()


def test_reapers_claim_stale_workers_but_never_cli_processes(url: str) -> None:
    store = Store(url)
    try:
        store.workers.beat("w-1", host="h", pid=1, kind="worker")
        store.workers.beat("cli-1", host="h", pid=2, kind="cli")
        claimed = store.workers.claim_dead(time.time() + 1, "reaper")
        assert claimed == ["w-1"]
        statuses = {w.executor_id: w.status for w in store.workers.list()}
        assert statuses == {"w-1": "dead", "cli-1": "alive"}
    finally:
        store.close()
