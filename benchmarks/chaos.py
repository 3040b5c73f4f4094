"""The chaos workload of `tests/test_chaos.py`, run once, and where its time goes.

    uv run python benchmarks/chaos.py                 # 1,000 runs, 100 at a time
    uv run python benchmarks/chaos.py --runs 5000 --batch 500 --seed 7

1,000 seeded runs of 2 to 5 steps on a fallback chain of three models that fail 30 %
of calls (429, 500, 400, timeouts, resets, malformed tool arguments, slow answers, and
outage windows), with tools that fail 30 % of calls, and every policy on. Every wait
goes through one `FakeClock`, so waiting costs no wall time: the wall time is work.

Printed: the runs' outcomes; wall and CPU time (with µs per effect); virtual time, and
the clock's sleeps as counts and virtual seconds, split by who slept (retry backoff, slow
faults, the rate limiters); the calls the faulty models and tools received.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_chaos import BATCH, RUNS, SEED, SLOW, World, attempts, run_workload


def report(world: World, wall: float, cpu: float) -> None:
    statuses = world.statuses()
    runs = len(world.outcomes)
    print(f"runs: {runs}  " + ", ".join(f"{k} {v}" for k, v in statuses.most_common()))
    degraded = sum(r.degraded for r in world.results)
    print(f"degraded (a fallback served some call): {degraded}")

    model_calls = sum(len(m.calls) for m in world.tiers.values())
    tool_calls = sum(len(t.calls) for t in world.tools.values())
    logical = sum(len(attempts(m.calls)) for m in world.tiers.values())
    effects = model_calls + tool_calls
    print(
        f"model calls: {model_calls} ({logical} logical, per tier) "
        f"tool executions: {tool_calls} retries announced: {len(world.retries)} "
        f"breakers opened: {len(world.breakers.opened)}"
    )
    print()
    print(f"wall time   {wall * 1000:9.1f} ms   ({wall / runs * 1e6:.0f} µs per run)")
    print(f"CPU time    {cpu * 1000:9.1f} ms   ({cpu / effects * 1e6:.1f} µs per effect reached)")
    print(f"virtual     {world.clock.now():9.1f} s of clock time went by")

    sleeps = world.clock.sleeps
    retry_waits = [r.wait for r in world.retries]
    slow = Counter[float]()
    for name, model in world.tiers.items():
        for record in model.calls:
            if record.fault == "slow":
                # a slow call past the model timeout sleeps the timeout instead
                slow[min(SLOW[name], record.request.settings.timeout or SLOW[name])] += 1
    for faulty in world.tools.values():
        for record in faulty.calls:
            if record.fault == "slow":
                timeout = faulty.timeout
                seconds = faulty.slow_seconds
                slow[seconds if timeout is None else min(seconds, timeout)] += 1
    slow_n, slow_s = sum(slow.values()), sum(s * n for s, n in slow.items())
    total_n, total_s = len(sleeps), sum(s for s in sleeps if s > 0)
    retry_n, retry_s = len(retry_waits), sum(retry_waits)
    rest_n, rest_s = total_n - retry_n - slow_n, total_s - retry_s - slow_s
    print()
    print("waits (all virtual: they cost no wall time)")
    print(f"  {'who slept':<28} {'sleeps':>8} {'virtual s':>11}")
    print(f"  {'retry backoff':<28} {retry_n:>8} {retry_s:>11.1f}")
    print(f"  {'slow faults':<28} {slow_n:>8} {slow_s:>11.1f}")
    print(f"  {'rate limiters':<28} {rest_n:>8} {rest_s:>11.1f}")
    print(f"  {'all':<28} {total_n:>8} {total_s:>11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--batch", type=int, default=BATCH, help="runs at once")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    gc.collect()
    cpu, started = time.process_time(), time.perf_counter()
    world = asyncio.run(run_workload(args.seed, runs=args.runs, batch=args.batch))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"chaos: {args.runs} runs, {args.batch} at a time, seed {args.seed} "
        f"(Python {sys.version.split()[0]})"
    )
    report(world, wall, cpu)


if __name__ == "__main__":
    main()
