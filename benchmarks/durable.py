"""Durable runs: overhead per step, recovery time, worker throughput.

    uv run python benchmarks/durable.py                  # everything (about 2 min)
    uv run python benchmarks/durable.py --quick          # smaller counts
    uv run python benchmarks/durable.py --only overhead  # or: recovery, throughput

- overhead: the same agent (a no-op model, N-1 no-op tool steps, then an answer) run
  in memory and durably (every model and tool call a journaled DBOS step), on SQLite
  (WAL, synchronous=NORMAL) and on local PostgreSQL; the difference per loop step
  (one model call and one tool call) and per effect (one journaled step), next to a bare
  DBOS workflow of no-op steps on the same engine (the floor tether builds on).
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


async def _overhead(url: str, runs: int, steps: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "benchmarks" / "durable_agents"))
    from bench import agent  # type: ignore[import-not-found]

    from tether.durable import Runtime

    runtime = Runtime(url)
    runtime.register(agent)
    runtime.launch()
    try:
        for _ in range(3):  # warm both paths
            await agent.run("go")
            await runtime.run("bench", "go")
        memory, durable = [], []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(runs):
                await agent.run("go")
            memory.append(time.perf_counter() - started)
            started = time.perf_counter()
            for _ in range(runs):
                await runtime.run("bench", "go")
            durable.append(time.perf_counter() - started)
    finally:
        await agent.aclose()
        runtime.shutdown()
    loop_steps = runs * steps
    effects = runs * (2 * steps - 1)
    extra = statistics.median(durable) - statistics.median(memory)
    return {
        "memory_ms_per_step": statistics.median(memory) / loop_steps * 1000,
        "durable_ms_per_step": statistics.median(durable) / loop_steps * 1000,
        "overhead_ms_per_step": extra / loop_steps * 1000,
        "overhead_ms_per_effect": extra / effects * 1000,
    }


async def _bare_dbos(url: str, steps: int) -> float:
    """ms per step of a bare DBOS workflow of no-op steps on tether's engine: the floor."""
    from dbos import DBOS, SetWorkflowID

    from tether.store import create_engine

    async def noop(i: int) -> int:
        return i

    @DBOS.workflow(name="bench.bare")
    async def bare(n: int) -> int:
        for i in range(n):
            await DBOS.run_step_async({"name": "noop"}, noop, i)
        return n

    DBOS(
        config={
            "name": "tether-bench",
            "system_database_url": url,
            "system_database_engine": create_engine(url),
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    try:
        timings = []
        for k in range(5):
            started = time.perf_counter()
            with SetWorkflowID(f"bare-{k}"):
                handle = await DBOS.start_workflow_async(bare, steps)
            await handle.get_result()
            timings.append((time.perf_counter() - started) / steps * 1000)
        return statistics.median(timings)
    finally:
        DBOS.destroy()


def overhead(quick: bool) -> None:
    runs, steps = (10, 10) if quick else (30, 10)
    print(f"\n== durable overhead: {runs} sequential runs of {steps} steps, no-op model and tool")
    print(
        f"{'backend':<12}{'memory/step':>14}{'durable/step':>15}{'overhead/step':>16}"
        f"{'per effect':>13}"
    )
    for backend in ("sqlite", "postgresql"):
        with fresh_database(backend) as url:
            figures = json.loads(
                _child("overhead", url, str(runs), env={"BENCH_STEPS": str(steps)})
            )
        with fresh_database(backend) as url:
            floor = float(_child("bare", url, "200"))
        print(
            f"{backend:<12}{figures['memory_ms_per_step']:>12.3f}ms"
            f"{figures['durable_ms_per_step']:>13.3f}ms"
            f"{figures['overhead_ms_per_step']:>14.3f}ms"
            f"{figures['overhead_ms_per_effect']:>11.3f}ms"
            f"{floor:>15.3f}ms"
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
        print(json.dumps(asyncio.run(_overhead(args.url, int(args.rest[0]), steps))))
        return
    if args.child == "bare":
        print(asyncio.run(_bare_dbos(args.url, int(args.rest[0]))))
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
