"""Shared breaker and rate-limit state: what one call costs when circuits and buckets
live in the database (`SharedBreakerStore`, `SharedRateLimitStore`) instead of memory.

    uv run python benchmarks/shared_state.py            # SQLite and PostgreSQL, ~20 s
    uv run python benchmarks/shared_state.py --calls 200

Per backend, each row is the wall time of one call through the policy (a breaker or a
rate limiter around a no-op `call_next`), sequential, median of 5 rounds, next to the
in-memory store in the same process:

- breaker, closed, cached: the happy path (a closed circuit is re-read once a second);
- breaker, closed, read every call: `refresh=0`, one indexed read per call;
- breaker, failure recorded: one locked read-modify-write (a failing target);
- rate limit, 1 request: one locked read-modify-write per call (rpm only).

PostgreSQL is `TETHER_BENCH_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/
test); each backend uses a fresh database (`durable.fresh_database`). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from durable import fresh_database
from tether.errors import ModelHTTPError
from tether.messages import ModelEffect, ModelRequest, RunState, UserMessage
from tether.policy import Breaker, RateLimits
from tether.policy.breaker import SharedBreakerStore
from tether.policy.ratelimit import SharedRateLimitStore
from tether.store import Store

EFFECT = ModelEffect(
    RunState(run_id="r", agent="a"), ModelRequest(messages=[UserMessage(content="hi")])
)
FAILURE = ModelHTTPError("down", status_code=503, retryable=True)


async def answer(effect: Any) -> str:
    return "ok"


async def fail(effect: Any) -> str:
    raise FAILURE


async def per_call(call: Callable[[], Awaitable[Any]], calls: int, rounds: int = 5) -> float:
    """Median µs per call over `rounds` rounds of `calls` sequential calls."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            await call()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


async def figures(url: str, calls: int) -> dict[str, tuple[float, float]]:
    store = Store(url)
    try:
        states = store.policy_states
        rows: dict[str, tuple[float, float]] = {}

        memory = Breaker().for_model("m")
        shared = Breaker(store=SharedBreakerStore(states)).for_model("m")
        rows["breaker, closed, cached"] = (
            await per_call(lambda: shared(EFFECT, answer), calls),
            await per_call(lambda: memory(EFFECT, answer), calls),
        )
        uncached = Breaker(store=SharedBreakerStore(states, refresh=0)).for_model("m")
        rows["breaker, closed, read every call"] = (
            await per_call(lambda: uncached(EFFECT, answer), calls),
            await per_call(lambda: memory(EFFECT, answer), calls),
        )

        # Failures never 5 within the window never open the circuit: each is one write.
        huge = {"failures": 5, "window": 1e-9}
        shared_failing = Breaker(store=SharedBreakerStore(states), **huge).for_model("f")
        memory_failing = Breaker(**huge).for_model("f")

        async def failing(policy: Any) -> None:
            with contextlib.suppress(ModelHTTPError):
                await policy(EFFECT, fail)

        rows["breaker, failure recorded"] = (
            await per_call(lambda: failing(shared_failing), calls),
            await per_call(lambda: failing(memory_failing), calls),
        )

        plenty = 10**9
        shared_limit = RateLimits(
            requests_per_minute=plenty, store=SharedRateLimitStore(states)
        ).for_model("m")
        memory_limit = RateLimits(requests_per_minute=plenty).for_model("m")
        assert shared_limit is not None
        assert memory_limit is not None
        rows["rate limit, 1 request"] = (
            await per_call(lambda: shared_limit(EFFECT, answer), calls),
            await per_call(lambda: memory_limit(EFFECT, answer), calls),
        )
        return rows
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per round")
    args = parser.parse_args()
    print(f"{'backend':<11} {'per call (µs)':<34} {'shared':>9} {'in memory':>10}")
    for backend in ("sqlite", "postgresql"):
        with fresh_database(backend) as url:
            for name, (shared, memory) in asyncio.run(figures(url, args.calls)).items():
                print(f"{backend:<11} {name:<34} {shared:>9.1f} {memory:>10.1f}")


if __name__ == "__main__":
    main()
