"""Durable runs: overhead per step, recovery time, worker throughput.

    uv run python benchmarks/durable.py                  # everything (about 2 min)
    uv run python benchmarks/durable.py --quick          # smaller counts
    uv run python benchmarks/durable.py --only overhead  # or: recovery, throughput

- overhead: the same agent (a no-op model, N-1 no-op tool steps, then an answer) run
  in memory and durably (every model and tool call a journaled DBOS step), on SQLite
  (WAL, synchronous=NORMAL) and on local PostgreSQL; the difference per effect (one
  journaled step), next to a bare DBOS workflow of no-op steps on the same engine (the
  floor tether builds on), in interleaved rounds of one process: medians and ranges.
- recovery: 100 runs stranded mid-run by a SIGKILLed process, then resumed by a fresh
  one (`Runtime.recover`, what the reaper calls): time until all 100 complete.
- throughput: two `tether worker` processes on PostgreSQL, runs of 3 steps on a model
  with 50 ms latency: runs per second until a batch is drained.

PostgreSQL is `TETHER_BENCH_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/
test); each part uses its own fresh database. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
TARGET = str(ROOT / "benchmarks" / "durable_agents" / "bench.py") + ":agent"
PG = os.environ.get("TETHER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TETHER = str(Path(sys.executable).parent / "tether")


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A URL of an empty database on `backend`, dropped after."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    name = f"tether_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        sa.make_url(PG).set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield sa.make_url(PG).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def _child(mode: str, url: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a part in a child process (DBOS is one per process); its last stdout line."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--url", url, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


# --- overhead ------------------------------------------------------------------------------


async def _overhead(url: str, runs: int, steps: int, rounds: int) -> dict[str, list[float]]:
    """Per round: ms per loop step in memory and durably, and ms per bare DBOS step."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "durable_agents"))
    from bench import agent  # type: ignore[import-not-found]
    from dbos import DBOS, SetWorkflowID

    from tether.durable import Runtime

    async def noop(i: int) -> int:
        return i

    @DBOS.workflow(name="bench.bare")
    async def bare(n: int) -> int:
        for i in range(n):
            await DBOS.run_step_async({"name": "noop", "retries_allowed": False}, noop, i)
        return n

    effects = runs * (2 * steps - 1)
    bare_steps = 200
    bare_runs = -(-effects // bare_steps)  # about as many steps as tether journals

    async def bare_round(k: int) -> float:
        started = time.perf_counter()
        for j in range(bare_runs):
            with SetWorkflowID(f"bare-{k}-{j}"):
                handle = await DBOS.start_workflow_async(bare, bare_steps)
            await handle.get_result()
        return (time.perf_counter() - started) / (bare_runs * bare_steps) * 1000

    runtime = Runtime(url)
    runtime.register(agent)
    runtime.launch()
    figures: dict[str, list[float]] = {"memory": [], "durable": [], "bare": []}
    try:
        for _ in range(3):  # warm every path
            await agent.run("go")
            await runtime.run("bench", "go")
        await bare_round(-1)
        # Interleaved rounds: the machine's noise falls on tether and its floor alike.
        for k in range(rounds):
            started = time.perf_counter()
            for _ in range(runs):
                await agent.run("go")
            figures["memory"].append((time.perf_counter() - started) / (runs * steps) * 1000)
            started = time.perf_counter()
            for _ in range(runs):
                await runtime.run("bench", "go")
            figures["durable"].append((time.perf_counter() - started) / (runs * steps) * 1000)
            figures["bare"].append(await bare_round(k))
    finally:
        await agent.aclose()
        runtime.shutdown()
    return figures


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def overhead(quick: bool) -> None:
    runs, steps, rounds = (10, 10, 3) if quick else (30, 10, 7)
    print(
        f"\n== durable overhead: {runs} sequential runs of {steps} steps, no-op model and "
        f"tool, {rounds} rounds\n   per journaled step (effect): tether durable minus "
        "in-memory, next to a bare DBOS step on the same engine in the same rounds; "
        "median (min-max) in ms"
    )
    header = ("memory/step", 13), ("durable/step", 14), ("per effect", 24), ("bare DBOS step", 24)
    print(f"{'backend':<12}" + "".join(f"{name:>{width}}" for name, width in header))
    for backend in ("sqlite", "postgresql"):
        with fresh_database(backend) as url:
            figures = json.loads(
                _child("overhead", url, str(runs), str(rounds), env={"BENCH_STEPS": str(steps)})
            )
        effects_per_step = (2 * steps - 1) / steps
        per_effect = [
            (durable - memory) / effects_per_step
            for durable, memory in zip(figures["durable"], figures["memory"], strict=True)
        ]
        print(
            f"{backend:<12}{statistics.median(figures['memory']):>11.3f}ms"
            f"{statistics.median(figures['durable']):>12.3f}ms"
            f"{_spread(per_effect):>24}{_spread(figures['bare']):>24}"
        )


# --- recovery ------------------------------------------------------------------------------


async def _strand(url: str, count: int) -> None:
    """Start `count` runs whose tool blocks, report when all are mid-run, then hang."""
    sys.path.insert(0, str(ROOT / "benchmarks" / "durable_agents"))
    from bench import agent

    from tether.durable import Runtime

    runtime = Runtime(url, executor_id="bench-stranded")
    runtime.register(agent, target=TARGET)
    runtime.launch()
    tasks = [
        asyncio.ensure_future(runtime.run("bench", "go", run_id=f"r{i}")) for i in range(count)
    ]
    # Watching the store, which the runs write from other threads.
    while len(runtime.store.runs.list(status="running", limit=count + 1)) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the first tool steps have begun
    print("stranded", flush=True)
    await asyncio.gather(*tasks)


async def _recover(url: str, count: int) -> float:
    sys.path.insert(0, str(ROOT / "benchmarks" / "durable_agents"))
    from bench import agent

    from tether.durable import Runtime

    runtime = Runtime(url)
    runtime.register(agent, target=TARGET)
    runtime.launch()
    try:
        started = time.perf_counter()
        runtime.recover(["bench-stranded"])
        await asyncio.gather(*(runtime.result(f"r{i}") for i in range(count)))
        return time.perf_counter() - started
    finally:
        runtime.shutdown()


def recovery(quick: bool) -> None:
    count = 100
    print(f"\n== recovery: {count} runs stranded by a SIGKILLed process, resumed by another")
    for backend in ("sqlite", "postgresql"):
        with fresh_database(backend) as url, tempfile.NamedTemporaryFile() as block:
            env = {**os.environ, "BENCH_BLOCK_FILE": block.name, "BENCH_STEPS": "5"}
            child = subprocess.Popen(
                [sys.executable, __file__, "--child", "strand", "--url", url, str(count)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            assert child.stdout is not None
            line = child.stdout.readline()
            if line.strip() != "stranded":
                child.kill()
                raise RuntimeError(f"the stranding child said {line!r}")
            child.send_signal(signal.SIGKILL)
            child.wait()
            seconds = float(_child("recover", url, str(count), env={"BENCH_STEPS": "5"}))
        print(f"{backend:<12}{seconds:>8.2f}s for {count} runs ({count / seconds:.0f} runs/s)")


# --- throughput ------------------------------------------------------------------------------


def throughput(quick: bool) -> None:
    count = 100 if quick else 300
    print(f"\n== throughput: two workers on PostgreSQL, {count} runs of 3 steps, 50 ms model")
    from tether.durable import Runtime

    env = {
        **os.environ,
        "BENCH_STEPS": "3",
        "BENCH_MODEL_MS": "50",
        "TETHER_WORKER_HEARTBEAT_S": "1",
    }
    with fresh_database("postgresql") as url:
        env["TETHER_DATABASE_URL"] = url
        runtime = Runtime(url)
        workers = [
            subprocess.Popen(
                [TETHER, "worker", TARGET, "--concurrency", "100", "--poll", "0.05"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        try:
            time.sleep(3)  # both up and polling
            started = time.perf_counter()
            for i in range(count):
                runtime.submit("bench", "go", run_id=f"t{i}", target=TARGET)
            while len(runtime.store.runs.list(status="completed", limit=count + 1)) < count:
                time.sleep(0.05)
            seconds = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
            runtime.shutdown()
    ideal = 3 * 0.05
    print(
        f"{count} runs in {seconds:.2f}s: {count / seconds:.1f} runs/s "
        f"(each run is {ideal * 1000:.0f} ms of model time)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["overhead", "recovery", "throughput"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "overhead":
        steps = int(os.environ.get("BENCH_STEPS", "10"))
        runs, rounds = int(args.rest[0]), int(args.rest[1])
        print(json.dumps(asyncio.run(_overhead(args.url, runs, steps, rounds))))
        return
    if args.child == "strand":
        asyncio.run(_strand(args.url, int(args.rest[0])))
        return
    if args.child == "recover":
        print(asyncio.run(_recover(args.url, int(args.rest[0]))))
        return
    parts = {"overhead": overhead, "recovery": recovery, "throughput": throughput}
    for name, part in parts.items():
        if args.only in (None, name):
            part(args.quick)


if __name__ == "__main__":
    main()
