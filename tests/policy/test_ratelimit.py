"""`RateLimits` driven with a fake `call_next` and a fake clock: token buckets per
deployment and per user, waits, refusals, settling, and the any-window bound."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import CircuitOpen, ConfigError, ModelConnectionError, RateLimited
from tether.messages import (
    AssistantMessage,
    ModelEffect,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    RunState,
    Usage,
    UserMessage,
)
from tether.policy.ratelimit import InMemoryRateLimitStore, RateLimits
from tether.policy.tokens import estimate_prompt_tokens
from tether.testing import FakeClock

MAX_TOKENS = 100
REQUEST = ModelRequest(
    messages=[UserMessage(content="hello")], settings=ModelSettings(max_tokens=MAX_TOKENS)
)
WORST = estimate_prompt_tokens(REQUEST) + MAX_TOKENS


class Next:
    """A fake rest-of-the-onion: records when it was reached, answers with `usage`."""

    def __init__(self, clock: FakeClock, usage: Usage | None = None) -> None:
        self.clock = clock
        self.usage = usage or Usage()
        self.error: BaseException | None = None
        self.times: list[float] = []

    async def __call__(self, effect: Any) -> Any:
        self.times.append(self.clock.now())
        if self.error is not None:
            raise self.error
        return ModelResponse(message=AssistantMessage(), usage=self.usage, model="test:m")


def effect(user: str | None = None, request: ModelRequest = REQUEST) -> ModelEffect:
    return ModelEffect(RunState(run_id="r", agent="a", user=user), request)


def limits(clock: FakeClock, **options: Any) -> RateLimits:
    return RateLimits(clock=clock, **options)


def level(config: RateLimits, key: str, now: float) -> float | None:
    store = config.store
    assert isinstance(store, InMemoryRateLimitStore)
    return store.level(key, now)


class TestConfig:
    def test_unset_limits_build_no_policy(self) -> None:
        assert RateLimits().for_model("m") is None
        assert RateLimits().per_user() is None
        assert RateLimits(user_requests_per_minute=5).for_model("m") is None
        assert RateLimits(requests_per_minute=5).per_user() is None

    @pytest.mark.parametrize(
        "options",
        [
            {"requests_per_minute": 0},
            {"tokens_per_minute": -1},
            {"user_requests_per_minute": 1.5},
            {"requests_per_minute": True},
            {"max_wait": -1},
            {"max_wait": math.inf},
            {"default_max_tokens": 0},
        ],
    )
    def test_bad_values_are_config_errors(self, options: dict[str, Any]) -> None:
        with pytest.raises(ConfigError, match="RateLimits"):
            RateLimits(**options)


class TestRequestsPerMinute:
    async def test_a_full_bucket_lets_its_capacity_through_at_once(self) -> None:
        clock = FakeClock()
        policy, nxt = limits(clock, requests_per_minute=3).for_model("m"), Next(clock)
        assert policy is not None
        for _ in range(3):
            await policy(effect(), nxt)
        assert nxt.times == [0.0, 0.0, 0.0]
        assert clock.sleeps == []

    async def test_waits_within_max_wait_then_proceeds(self) -> None:
        clock = FakeClock()
        policy, nxt = limits(clock, requests_per_minute=3, max_wait=20).for_model("m"), Next(clock)
        assert policy is not None
        for _ in range(4):
            await policy(effect(), nxt)
        assert clock.sleeps == [pytest.approx(20.0)]  # one request refills in 60/3 s
        assert nxt.times[-1] == pytest.approx(20.0)

    async def test_a_longer_wait_is_refused_at_once_with_retry_after(self) -> None:
        clock = FakeClock()
        policy, nxt = limits(clock, requests_per_minute=3, max_wait=10).for_model("m"), Next(clock)
        assert policy is not None
        for _ in range(3):
            await policy(effect(), nxt)
        clock.advance(5)
        with pytest.raises(RateLimited, match="3 requests per minute for model m") as caught:
            await policy(effect(), nxt)
        assert caught.value.retry_after == pytest.approx(15.0)
        assert clock.sleeps == []
        assert len(nxt.times) == 3
        clock.advance(15)  # the refusal took nothing: the slot is there on time
        await policy(effect(), nxt)
        assert nxt.times[-1] == pytest.approx(20.0)

    async def test_max_wait_bounds_the_total_wait_under_contention(self) -> None:
        clock = FakeClock()
        config = limits(clock, requests_per_minute=1, max_wait=90)
        policy, nxt = config.for_model("m"), Next(clock)
        assert policy is not None
        outcomes = await asyncio.gather(
            *(policy(effect(), nxt) for _ in range(4)), return_exceptions=True
        )
        # Granted at 0, 60; the third would wait 120 s > 90 s: refused, never waited.
        assert nxt.times == [0.0, pytest.approx(60.0)]
        assert sum(isinstance(o, RateLimited) for o in outcomes) == 2

    async def test_deployments_have_their_own_buckets(self) -> None:
        clock = FakeClock()
        config = limits(clock, requests_per_minute=1, max_wait=0)
        first, second, nxt = config.for_model("a"), config.for_model("b"), Next(clock)
        assert first is not None
        assert second is not None
        await first(effect(), nxt)
        await second(effect(), nxt)
        with pytest.raises(RateLimited):
            await first(effect(), nxt)

    async def test_a_failed_call_keeps_its_request_but_an_open_circuit_refunds_it(
        self,
    ) -> None:
        clock = FakeClock()
        config = limits(clock, requests_per_minute=1, max_wait=0)
        policy, nxt = config.for_model("m"), Next(clock)
        assert policy is not None
        nxt.error = CircuitOpen("open", target="model:m")
        with pytest.raises(CircuitOpen):
            await policy(effect(), nxt)
        nxt.error = ModelConnectionError("down")
        with pytest.raises(ModelConnectionError):
            await policy(effect(), nxt)  # the slot refunded above is taken for good
        nxt.error = None
        with pytest.raises(RateLimited):
            await policy(effect(), nxt)

    async def test_a_cancelled_wait_takes_nothing(self) -> None:
        clock = FakeClock()
        config = limits(clock, requests_per_minute=1, max_wait=60)
        policy, nxt = config.for_model("m"), Next(clock)
        assert policy is not None
        await policy(effect(), nxt)
        waiting = asyncio.ensure_future(policy(effect(), nxt))
        await asyncio.sleep(0)  # it asks for the slot and goes to sleep for it
        assert clock.sleeping == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert level(config, "model:m:rpm", clock.now()) == pytest.approx(0.0)


class TestTokensPerMinute:
    async def test_takes_the_worst_case_and_settles_to_the_usage(self) -> None:
        clock = FakeClock()
        config = limits(clock, tokens_per_minute=10 * WORST)
        policy = config.for_model("m")
        assert policy is not None
        await policy(effect(), Next(clock, Usage(input_tokens=30, output_tokens=20)))
        assert level(config, "model:m:tpm", 0.0) == pytest.approx(10 * WORST - 50)

    async def test_a_response_without_usage_keeps_the_worst_case(self) -> None:
        clock = FakeClock()
        config = limits(clock, tokens_per_minute=10 * WORST)
        policy = config.for_model("m")
        assert policy is not None
        await policy(effect(), Next(clock))
        assert level(config, "model:m:tpm", 0.0) == pytest.approx(9 * WORST)

    async def test_waits_for_tokens_and_refuses_past_max_wait(self) -> None:
        clock = FakeClock()
        config = limits(clock, tokens_per_minute=2 * WORST, max_wait=15)
        policy, nxt = config.for_model("m"), Next(clock)
        assert policy is not None
        await policy(effect(), nxt)
        await policy(effect(), nxt)
        with pytest.raises(RateLimited, match="tokens per minute") as caught:
            await policy(effect(), nxt)
        assert caught.value.retry_after == pytest.approx(30.0)  # half the bucket
        patient = dataclasses.replace(config, max_wait=30).for_model("m")  # same store
        assert patient is not None
        await patient(effect(), nxt)
        assert nxt.times[-1] == pytest.approx(30.0)

    async def test_using_more_than_the_worst_case_leaves_a_debt(self) -> None:
        clock = FakeClock()
        config = limits(clock, tokens_per_minute=2 * WORST, max_wait=1000)
        policy, nxt = config.for_model("m"), Next(clock, Usage(output_tokens=3 * WORST))
        assert policy is not None
        await policy(effect(), nxt)
        assert level(config, "model:m:tpm", 0.0) == pytest.approx(-WORST)
        nxt.usage = Usage(output_tokens=WORST)
        await policy(effect(), nxt)  # waits for the debt and its own worst case
        assert nxt.times[-1] == pytest.approx(60.0)

    async def test_a_call_bigger_than_the_bucket_waits_for_a_full_one(self) -> None:
        clock = FakeClock()
        config = limits(clock, tokens_per_minute=WORST // 2, max_wait=1000)
        policy, nxt = config.for_model("m"), Next(clock)
        assert policy is not None
        await policy(effect(), nxt)
        await policy(effect(), nxt)
        assert nxt.times == [0.0, pytest.approx(60.0)]

    async def test_a_failed_call_refunds_its_tokens_and_a_refused_one_its_request(
        self,
    ) -> None:
        clock = FakeClock()
        config = limits(clock, requests_per_minute=5, tokens_per_minute=WORST, max_wait=0)
        policy, nxt = config.for_model("m"), Next(clock)
        assert policy is not None
        nxt.error = ModelConnectionError("down")
        with pytest.raises(ModelConnectionError):
            await policy(effect(), nxt)
        assert level(config, "model:m:tpm", 0.0) == pytest.approx(WORST)
        assert level(config, "model:m:rpm", 0.0) == pytest.approx(4)
        nxt.error = None
        await policy(effect(), nxt)  # no usage reported: keeps its worst case
        with pytest.raises(RateLimited, match="tokens"):
            await policy(effect(), nxt)
        assert level(config, "model:m:rpm", 0.0) == pytest.approx(3)


class TestPerUser:
    async def test_users_have_their_own_buckets(self) -> None:
        clock = FakeClock()
        policy, nxt = limits(clock, user_requests_per_minute=1, max_wait=0).per_user(), Next(clock)
        assert policy is not None
        await policy(effect("u-1"), nxt)
        await policy(effect("u-2"), nxt)
        with pytest.raises(RateLimited, match="user 'u-1'"):
            await policy(effect("u-1"), nxt)

    async def test_runs_without_a_user_share_one_key(self) -> None:
        clock = FakeClock()
        policy, nxt = limits(clock, user_requests_per_minute=1, max_wait=0).per_user(), Next(clock)
        assert policy is not None
        await policy(effect(None), nxt)
        with pytest.raises(RateLimited, match="'anonymous'"):
            await policy(effect(None), nxt)


class TestStore:
    async def test_a_new_bucket_starts_full(self) -> None:
        store = InMemoryRateLimitStore()
        assert await store.acquire("k", 10, 1.0, 10, 0.0) == 0.0
        assert await store.acquire("k", 1, 1.0, 10, 0.0) == pytest.approx(1.0)

    async def test_a_refusal_takes_nothing(self) -> None:
        store = InMemoryRateLimitStore()
        assert await store.acquire("k", 8, 1.0, 10, 0.0) == 0.0
        assert await store.acquire("k", 5, 1.0, 10, 0.0) == pytest.approx(3.0)
        assert await store.acquire("k", 2, 1.0, 10, 0.0) == 0.0

    async def test_refunds_never_overfill(self) -> None:
        store = InMemoryRateLimitStore()
        await store.settle("k", 5, 0, 1.0, 10, 0.0)
        assert store.level("k", 0.0) == 10

    async def test_full_buckets_are_dropped_as_keys_pile_up(self) -> None:
        store = InMemoryRateLimitStore()
        for i in range(5000):
            await store.acquire(f"user:{i}", 1, 1.0, 1, float(i))
        assert len(store._buckets) <= 1024  # the ones refilled by then are gone


# --- the bound: over any T seconds, at most capacity + capacity * T / 60 ---------------


def window_bound_holds(grants: list[tuple[float, float]], per_minute: float) -> bool:
    """Every interval [start, start + T], with start at a grant (where the maximum is
    reached) and T any gap between grants, holds at most `per_minute * (1 + T / 60)`."""
    grants = sorted(grants)
    for i, (start, _) in enumerate(grants):
        total = 0.0
        for end, amount in grants[i:]:
            total += amount
            if total > per_minute * (1 + (end - start) / 60) + 1e-6 * per_minute:
                return False
    return True


def test_the_bound_is_tight() -> None:
    """A full bucket spent at once, then a minute of refill: twice the rate in 60 s."""

    async def scenario() -> list[float]:
        clock = FakeClock()
        policy, nxt = limits(clock, requests_per_minute=4, max_wait=600).for_model("m"), Next(clock)
        assert policy is not None
        await asyncio.gather(*(policy(effect(), nxt) for _ in range(12)))
        return nxt.times

    times = asyncio.run(scenario())
    assert sum(1 for t in times if t <= 60 + 1e-9) == 8  # = 4 + 4 * 60 / 60
    assert times == pytest.approx([0, 0, 0, 0, 15, 30, 45, 60, 75, 90, 105, 120])
    assert window_bound_holds([(t, 1.0) for t in times], 4)


@settings(max_examples=200, deadline=None)
@given(
    per_minute=st.integers(1, 20),
    max_wait=st.sampled_from([0.0, 1.0, 10.0, 45.0, 600.0]),
    arrivals=st.lists(st.floats(0, 300, allow_nan=False), min_size=1, max_size=60),
)
def test_requests_never_exceed_the_bound_in_any_window(
    per_minute: int, max_wait: float, arrivals: list[float]
) -> None:
    refusals: list[float | None] = []

    async def scenario() -> list[float]:
        clock = FakeClock()
        config = limits(clock, requests_per_minute=per_minute, max_wait=max_wait)
        policy, nxt = config.for_model("m"), Next(clock)
        assert policy is not None

        async def client(at: float) -> None:
            await clock.sleep(at)
            try:
                await policy(effect(), nxt)
            except RateLimited as exc:
                refusals.append(exc.retry_after)

        await asyncio.gather(*(client(at) for at in arrivals))
        return nxt.times

    times = asyncio.run(scenario())
    assert window_bound_holds([(t, 1.0) for t in times], per_minute)
    assert all(wait is not None and wait > 0 for wait in refusals)
    # All served in the end when even arriving at once the last waits less than
    # max_wait: a full bucket at once, then one every 60 / per_minute seconds.
    if max_wait == 600.0 and len(arrivals) < per_minute * (1 + max_wait / 60):
        assert len(times) == len(arrivals)


@settings(max_examples=150, deadline=None)
@given(
    per_minute=st.integers(WORST, 20 * WORST),
    calls=st.lists(
        st.tuples(st.floats(0, 300, allow_nan=False), st.integers(0, WORST)),
        min_size=1,
        max_size=40,
    ),
)
def test_settled_tokens_never_exceed_the_bound_in_any_window(
    per_minute: int, calls: list[tuple[float, int]]
) -> None:
    async def scenario() -> list[tuple[float, float]]:
        clock = FakeClock()
        config = limits(clock, tokens_per_minute=per_minute, max_wait=60)
        policy = config.for_model("m")
        assert policy is not None
        grants: list[tuple[float, float]] = []

        async def client(at: float, used: int) -> None:
            await clock.sleep(at)
            nxt = Next(clock, Usage(input_tokens=used))
            try:
                await policy(effect(), nxt)
            except RateLimited:
                return
            grants.append((nxt.times[0], float(used or WORST)))

        await asyncio.gather(*(client(at, used) for at, used in calls))
        return grants

    assert window_bound_holds(asyncio.run(scenario()), per_minute)
