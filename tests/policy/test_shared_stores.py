"""`SharedBreakerStore` and `SharedRateLimitStore` on a real database (a SQLite file and
a PostgreSQL database): they answer exactly as the in-memory stores do, and they share
circuits and buckets between stores that share nothing but the database, also from
several processes at once."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.policy.test_breaker import Next, model_effect
from tests.processes import together
from tether.errors import CircuitOpen, ConfigError, ModelHTTPError, RateLimited
from tether.policy import Breaker, RateLimits
from tether.policy.breaker import InMemoryBreakerStore, SharedBreakerStore
from tether.policy.ratelimit import InMemoryRateLimitStore, SharedRateLimitStore
from tether.store import PolicyStates, Store


class Time:
    """A settable time, read by both stores of a differential test."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


# -- the same answers as in memory -------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_shared_breaker_answers_as_the_in_memory_one(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    clock = Time()
    cfg = Breaker(failures=3, window=10.0, cooldown=5.0, probes=2)
    memory = InMemoryBreakerStore()
    shared = SharedBreakerStore(PolicyStates(store.engine, clock=clock), refresh=0.0)
    keys = ["model:a", "tool:b"]
    states: set[str] = set()
    for _ in range(150):
        clock.now += rng.choice([0.0, 0.5, 1.0, 3.0, 6.0])
        key = rng.choice(keys)
        if rng.random() < 0.5:
            expected = await memory.before_call(key, clock.now, cfg)
            assert await shared.before_call(key, -1.0, cfg) == expected
        else:
            ok = rng.choice([False, False, True, None])
            await memory.record(key, ok, clock.now, cfg)
            await shared.record(key, ok, -1.0, cfg)
        for k in keys:
            state = await memory.state(k, clock.now, cfg)
            assert await shared.state(k, -1.0, cfg) == state
            states.add(state)
    assert states == {"closed", "open", "half_open"}  # the walk went through every state


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_shared_buckets_answer_as_the_in_memory_ones(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    clock = Time()
    memory = InMemoryRateLimitStore()
    shared = SharedRateLimitStore(PolicyStates(store.engine, clock=clock))
    refused = 0
    for _ in range(150):
        clock.now += rng.choice([0.0, 0.1, 0.5, 2.0])
        key = rng.choice(["model:m:rpm", "model:m:tpm"])
        rate, burst = (1.0, 10.0) if key.endswith("rpm") else (100.0, 2_000.0)
        amount = 1.0 if key.endswith("rpm") else float(rng.randint(50, 900))
        if rng.random() < 0.7:
            expected = await memory.acquire(key, amount, rate, burst, clock.now)
            assert await shared.acquire(key, amount, rate, burst, -1.0) == expected
            refused += expected > 0
        else:
            used = rng.choice([0.0, amount / 2, amount * 2])
            await memory.settle(key, amount, used, rate, burst, clock.now)
            await shared.settle(key, amount, used, rate, burst, -1.0)
    assert refused > 10  # the walk hit empty buckets


# -- shared between stores that share only the database -----------------------------------


async def test_a_circuit_opened_by_one_process_fails_fast_in_another(database_url: str) -> None:
    here, there = Store(database_url), Store(database_url)  # two engines, two pools
    try:
        opener = Breaker(failures=2, cooldown=60, store=SharedBreakerStore(here.policy_states))
        other = Breaker(
            failures=2, cooldown=60, store=SharedBreakerStore(there.policy_states, refresh=0)
        )
        failing = Next(ModelHTTPError("down", status_code=503, retryable=True))
        model = opener.for_model("openai:gpt-x")
        for _ in range(2):
            with pytest.raises(ModelHTTPError):
                await model(model_effect(), failing)
        assert await other.state("model:openai:gpt-x") == "open"
        answering = Next()
        with pytest.raises(CircuitOpen) as caught:
            await other.for_model("openai:gpt-x")(model_effect(), answering)
        assert answering.calls == 0
        assert 55 < (caught.value.retry_after or 0) <= 60
        assert await other.state("model:openai:gpt-y") == "closed"
    finally:
        here.close()
        there.close()


async def test_a_closed_circuit_is_read_once_per_refresh(store: Store) -> None:
    reads: list[str] = []
    states = store.policy_states

    class Counting:
        def read(self, key: str) -> tuple[dict[str, Any] | None, float]:
            reads.append(key)
            return states.read(key)

        def transact(self, key: str, change: Any) -> Any:
            return states.transact(key, change)

    breaker = Breaker(store=SharedBreakerStore(Counting(), refresh=0.2))
    policy, answering = breaker.for_model("m"), Next()
    for _ in range(20):
        await policy(model_effect(), answering)
    assert (answering.calls, len(reads)) == (20, 1)
    await asyncio.sleep(0.25)
    await policy(model_effect(), answering)
    assert len(reads) == 2
    # A failure here is news at once: the next call reads the circuit again.
    with pytest.raises(ModelHTTPError):
        await policy(model_effect(), Next(ModelHTTPError("down", status_code=500, retryable=True)))
    await policy(model_effect(), answering)
    assert len(reads) == 3


@pytest.mark.parametrize("refresh", [-1.0, float("nan"), float("inf")])
def test_a_refresh_must_be_finite_and_not_negative(refresh: float) -> None:
    with pytest.raises(ConfigError, match="refresh must be finite seconds >= 0"):
        SharedBreakerStore(PolicyStates.__new__(PolicyStates), refresh=refresh)


PROCESSES = 4
RPM = 30


def _call_until_limited(url: str, index: int, ready: Callable[[], None]) -> int:
    """A process: call through a shared 30 rpm limit until the first refusal."""

    async def main() -> int:
        store = Store(url)
        try:
            limits = RateLimits(
                requests_per_minute=RPM,
                max_wait=0.0,
                store=SharedRateLimitStore(store.policy_states),
            )
            policy, answering = limits.for_model("openai:gpt-x"), Next()
            assert policy is not None
            ready()
            while True:
                try:
                    await policy(model_effect(), answering)
                except RateLimited:
                    return answering.calls
        finally:
            store.close()

    return asyncio.run(main())


def test_processes_share_one_rate_limit(database_url: str, store: Store) -> None:
    started = time.monotonic()
    granted = together(_call_until_limited, database_url, PROCESSES).values()
    elapsed = time.monotonic() - started
    # All of them together: one full bucket, plus what refilled meanwhile (30 a minute).
    assert RPM <= sum(granted) <= RPM + elapsed * RPM / 60 + 1
    assert store.policy_states.keys("ratelimit:") == ["ratelimit:model:openai:gpt-x:rpm"]
