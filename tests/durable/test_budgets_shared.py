"""Shared budgets across processes: one user's daily budget, spent by many at once.

The multi-process case runs `agents/budgeted.py` as a script in four processes, each
with a launched `Runtime` and 50 concurrent durable runs for the same user, against
one database (SQLite, then PostgreSQL). Every call reserves its worst case in the
store before it is made, so however the processes interleave, what is settled never
exceeds the budget, and nothing stays reserved when they are done.

The in-process cases pin the rules of one call: `max_tokens` is lowered to what the
budget still covers (if that is at least `min_output_tokens`), the run is refused only
when not even that fits, and a hold left by an interrupted attempt of a run is released
when the run is run again.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.databases import BACKENDS, open_database, sqlite_url
from tests.durable.agents import budgeted
from tether import Agent
from tether.durable import Runtime
from tether.durable.budget import SharedBudget, Tiers
from tether.errors import BudgetExceeded, ConfigError
from tether.messages import ModelRequest, ModelSettings, RunState, Usage
from tether.policy import Policy
from tether.settings import Settings, TierBudget
from tether.store import Store
from tether.store.tables import budgets
from tether.testing import FunctionModel, Step

AGENT_SCRIPT = Path(budgeted.__file__)
PROCESSES = 4
RUNS_PER_PROCESS = 50
PRICE = budgeted.OUTPUT_USD_PER_M / 1e6
"""USD per output token."""
RUN_COST = budgeted.MAX_TOKENS * PRICE
"""What a run costs when its call is not shrunk ($0.001)."""
DAILY_LIMIT = 0.1305
"""Enough for 130 of the 200 runs and one shrunk to 500 tokens: about a third are refused."""
MIN_OUTPUT: int = inspect.signature(SharedBudget).parameters["min_output_tokens"].default
"""The least `max_tokens` a call is shrunk to (the runtime uses `SharedBudget`'s default)."""
TOLERANCE = 1e-9


def _user_scopes(url: str, user: str) -> list[tuple[str, float, float, float]]:
    """`(scope, limit, reserved, spent)` of every daily scope of `user` (a run that
    straddles midnight UTC counts against two days)."""
    store = Store(url)
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    budgets.c.scope,
                    budgets.c.limit_usd,
                    budgets.c.reserved_usd,
                    budgets.c.spent_usd,
                ).where(budgets.c.scope.like(f"user:{user}:%"))
            ).all()
    finally:
        store.close()
    return [(s, float(lim), float(r), float(sp)) for s, lim, r, sp in rows]


def _spender_env(limit: float, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "TETHER_BUDGET_TIERS": json.dumps({"free": {"user_day_usd": limit}}),
        "TETHER_DEFAULT_TIER": "free",
        "TETHER_LOG_LEVEL": "ERROR",
        **more,
    }


def _spend_in_processes(url: str, user: str, tmp_path: Path) -> dict[str, str]:
    """Run the four processes to the end; every run's status, as the processes saw it."""
    env = _spender_env(DAILY_LIMIT)
    processes: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        for i in range(PROCESSES):
            log = tmp_path / f"spender-{i}.log"
            process = subprocess.Popen(
                [sys.executable, str(AGENT_SCRIPT), url, user, str(RUNS_PER_PROCESS)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log.open("w"),
                text=True,
                env=env,
            )
            processes.append((process, log))
        # Every process launched before any spends: the runs of all four overlap.
        for process, log in processes:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            assert line == "ready", f"a spender did not start:\n{log.read_text()[-4000:]}"
        for process, _ in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        statuses: dict[str, str] = {}
        for process, log in processes:
            out, _ = process.communicate(timeout=150)
            assert process.returncode == 0, f"a spender failed:\n{log.read_text()[-4000:]}"
            report = json.loads(out.strip().splitlines()[-1])
            assert report["errors"] == [], report["errors"]
            statuses.update(report["statuses"])
        return statuses
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("backend", BACKENDS)
def test_four_processes_never_spend_past_one_users_daily_budget(
    backend: str, tmp_path: Path
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    with open_database(backend, tmp_path) as url:
        statuses = _spend_in_processes(url, user, tmp_path)

        assert len(statuses) == PROCESSES * RUNS_PER_PROCESS
        assert set(statuses.values()) <= {"completed", "budget"}
        completed = [r for r, s in statuses.items() if s == "completed"]
        refused = [r for r, s in statuses.items() if s == "budget"]
        assert completed, "no run completed"
        assert refused, "the budget never bound"

        scopes = _user_scopes(url, user)
        assert scopes, "no budget scope was written for the user"
        spent = 0.0
        for scope, limit, reserved, scope_spent in scopes:
            assert limit == pytest.approx(DAILY_LIMIT)
            assert scope_spent <= limit + TOLERANCE, f"{scope} spent {scope_spent} of {limit}"
            assert abs(reserved) < TOLERANCE, f"{scope} still holds {reserved}"
            spent += scope_spent
        # A run is refused only when the budget no longer covers a call of
        # `min_output_tokens`: holds are exactly what calls cost, so what is left at the
        # end is less than that (else the refused runs were refused too early).
        if len(scopes) == 1:
            assert DAILY_LIMIT - spent < MIN_OUTPUT * PRICE + TOLERANCE

        store = Store(url)
        try:
            records = {r.run_id: r for r in store.runs.list(user_id=user, limit=1000)}
        finally:
            store.close()
        assert set(records) == set(statuses)
        assert {r: records[r].status for r in records} == statuses
        for run_id in completed:
            record = records[run_id]
            # Each completed run's one call was paid in full or shrunk to fit what was
            # left, never below `min_output_tokens`.
            assert MIN_OUTPUT * PRICE - TOLERANCE <= record.cost_usd <= RUN_COST + TOLERANCE
            assert record.requests == 1
        for run_id in refused:
            assert records[run_id].cost_usd == 0.0
            assert records[run_id].requests == 0
        assert math.fsum(r.cost_usd for r in records.values()) == pytest.approx(
            spent, abs=TOLERANCE
        )


# -- one call's rules, in this process ----------------------------------------------------


def _settings(limit: float) -> Settings:
    return Settings(
        budget_tiers={"free": TierBudget(user_day_usd=limit)},
        default_tier="free",
    )


def _user_scope(user: str) -> str:
    return f"user:{user}:{time.strftime('%Y-%m-%d', time.gmtime())}"


class _Spender:
    """A priced model that records the `max_tokens` each request allowed and uses it all."""

    def __init__(self) -> None:
        self.asked: list[int | None] = []
        self.model = FunctionModel(self._answer, name=budgeted.MODEL)

    def _answer(self, request: ModelRequest) -> Step:
        self.asked.append(request.settings.max_tokens)
        used = request.settings.max_tokens or 4096
        return Step(text="ok", usage=Usage(input_tokens=12, output_tokens=used))


@pytest.fixture
def spender() -> _Spender:
    return _Spender()


@pytest.fixture
def runtime_for(tmp_path: Path, spender: _Spender) -> Iterator[Callable[[float], Runtime]]:
    """`runtime_for(limit)`: a launched runtime on a SQLite file whose user tier allows
    `limit` USD a day, running an agent on `spender`'s model (max_tokens 1000)."""
    opened: list[Runtime] = []

    def make(limit: float) -> Runtime:
        runtime = Runtime(f"sqlite:///{tmp_path / 'tether.db'}", settings=_settings(limit))
        agent = Agent(
            model=spender.model,
            model_settings=ModelSettings(max_tokens=budgeted.MAX_TOKENS),
            policy=Policy(retry=None, breaker=None),
            name="spender",
        )
        runtime.register(agent)
        runtime.launch()
        opened.append(runtime)
        return runtime

    yield make
    for runtime in opened:
        runtime.shutdown()


def _spend_beforehand(runtime: Runtime, user: str, limit: float, amount: float) -> None:
    """Settle `amount` against the user's scope, as earlier runs would have."""
    scope = _user_scope(user)
    hold = runtime.store.budgets.reserve("earlier-run", {scope: limit}, amount)
    assert hold is not None
    runtime.store.budgets.settle(hold, amount, [scope])


async def test_max_tokens_is_lowered_to_what_the_budget_still_covers(
    runtime_for: Callable[[float], Runtime], spender: _Spender
) -> None:
    limit = 0.01
    runtime = runtime_for(limit)
    _spend_beforehand(runtime, "ann", limit, limit - 600 * PRICE)  # 600 tokens' worth left
    left = runtime.store.budgets.usage(_user_scope("ann")).left  # type: ignore[union-attr]

    result = await runtime.run("spender", "hi", user="ann")

    assert result.status == "completed"
    (asked,) = spender.asked
    assert asked is not None
    assert MIN_OUTPUT <= asked < budgeted.MAX_TOKENS
    assert asked * PRICE <= left + TOLERANCE  # it fits what was left ...
    assert (asked + 1) * PRICE > left - TOLERANCE  # ... and is all that was left
    usage = runtime.store.budgets.usage(_user_scope("ann"))
    assert usage is not None
    assert usage[1] == pytest.approx(0.0, abs=TOLERANCE)
    assert usage[2] <= limit + TOLERANCE
    assert result.cost_usd == pytest.approx(asked * PRICE)


async def test_a_call_is_not_shrunk_while_the_budget_covers_all_of_it(
    runtime_for: Callable[[float], Runtime], spender: _Spender
) -> None:
    limit = 0.01
    runtime = runtime_for(limit)
    _spend_beforehand(runtime, "bea", limit, limit - 1500 * PRICE)

    result = await runtime.run("spender", "hi", user="bea")

    assert result.status == "completed"
    assert spender.asked == [budgeted.MAX_TOKENS]


async def test_a_call_asking_less_than_min_output_tokens_goes_while_it_fits(
    runtime_for: Callable[[float], Runtime], spender: _Spender
) -> None:
    limit = 0.01
    runtime = runtime_for(limit)
    brief = Agent(
        model=spender.model,
        model_settings=ModelSettings(max_tokens=MIN_OUTPUT // 2),
        policy=Policy(retry=None, breaker=None),
        name="brief",
    )
    runtime.register(brief)
    _spend_beforehand(runtime, "eve", limit, limit - MIN_OUTPUT * PRICE)  # room for 256

    result = await runtime.run("brief", "hi", user="eve")

    assert result.status == "completed"
    assert spender.asked == [MIN_OUTPUT // 2]  # not refused, and not shrunk


async def test_a_run_is_refused_only_when_not_even_min_output_tokens_fit(
    runtime_for: Callable[[float], Runtime], spender: _Spender
) -> None:
    limit = 0.01
    runtime = runtime_for(limit)
    # Just enough for `min_output_tokens` (and a little): the run goes on, shrunk.
    _spend_beforehand(runtime, "cy", limit, limit - (MIN_OUTPUT + 2) * PRICE)
    result = await runtime.run("spender", "hi", user="cy")
    assert result.status == "completed"
    (asked,) = spender.asked
    assert asked is not None
    assert MIN_OUTPUT <= asked <= MIN_OUTPUT + 2

    # Less than that left: refused before the call, nothing spent.
    _spend_beforehand(runtime, "dee", limit, limit - (MIN_OUTPUT - 10) * PRICE)
    before = runtime.store.budgets.usage(_user_scope("dee"))
    run_id = uuid.uuid4().hex
    with pytest.raises(BudgetExceeded):
        await runtime.run("spender", "hi", user="dee", run_id=run_id)
    assert len(spender.asked) == 1  # the refused run never reached the model
    assert runtime.store.budgets.usage(_user_scope("dee")) == before
    record = runtime.store.runs.get(run_id)
    assert record is not None
    assert record.status == "budget"
    assert record.cost_usd == 0.0


async def test_a_hold_left_by_an_interrupted_attempt_is_released_when_the_run_runs_again(
    runtime_for: Callable[[float], Runtime], spender: _Spender
) -> None:
    limit = 0.002
    runtime = runtime_for(limit)
    scope = _user_scope("eve")
    run_id = uuid.uuid4().hex
    # What a crashed attempt of this run leaves: its call's worst case, still held. It
    # holds nearly all the budget, so unless it is released the run is refused.
    hold = runtime.store.budgets.reserve(run_id, {scope: limit}, limit - 100 * PRICE)
    assert hold is not None
    assert runtime.store.budgets.usage(scope)[1] > 0  # type: ignore[index]

    result = await runtime.run("spender", "hi", user="eve", run_id=run_id)

    assert result.status == "completed"
    assert spender.asked == [budgeted.MAX_TOKENS]
    usage = runtime.store.budgets.usage(scope)
    assert usage is not None
    assert usage[1] == pytest.approx(0.0, abs=TOLERANCE)  # the stale hold is gone
    assert usage[2] == pytest.approx(RUN_COST)  # and only the real call was paid
    # Another run's hold is not this run's to release.
    other = runtime.store.budgets.reserve("someone-else", {scope: limit}, 300 * PRICE)
    assert other is not None
    again = await runtime.run("spender", "hi", user="eve")
    assert again.status == "completed"
    assert runtime.store.budgets.usage(scope)[1] == pytest.approx(  # type: ignore[index]
        300 * PRICE, abs=TOLERANCE
    )


def _crash_mid_call(url: str, user: str, run_id: str, limit: float, log: Path) -> None:
    """Run `run_id` in a process whose model call takes a minute; SIGKILL it once the
    call has reserved its worst case in the store."""
    process = subprocess.Popen(
        [sys.executable, str(AGENT_SCRIPT), url, user, "1", run_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        env=_spender_env(limit, BUDGETED_MODEL_PAUSE_S="60"),
    )
    store = Store(url)
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        assert process.stdout.readline().strip() == "ready", log.read_text()[-4000:]
        process.stdin.write("go\n")
        process.stdin.flush()
        deadline = time.monotonic() + 60
        while (usage := store.budgets.usage(_user_scope(user))) is None or usage[1] == 0:
            assert process.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "the call never reserved its worst case"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
        store.close()


async def test_a_crashed_calls_hold_is_released_when_its_run_is_recovered(tmp_path: Path) -> None:
    limit = 0.01
    url = sqlite_url(tmp_path)
    run_id = uuid.uuid4().hex
    scope = _user_scope("fay")
    _crash_mid_call(url, "fay", run_id, limit, tmp_path / "crashed.log")
    store = Store(url)
    held = store.budgets.usage(scope)
    store.close()
    # The dead call's worst case is still held, blocking that much of the budget.
    assert held is not None
    assert held[1] == pytest.approx(RUN_COST)
    assert held[2] == 0.0

    runtime = Runtime(url, settings=_settings(limit))
    runtime.register(budgeted.agent, target=f"{AGENT_SCRIPT}:agent")
    runtime.launch()
    try:
        result = await runtime.resume(run_id, force=True)  # its process was SIGKILLed
        usage = runtime.store.budgets.usage(scope)
    finally:
        await runtime.aclose_agents()
        runtime.shutdown()

    assert result.status == "completed"
    assert usage is not None
    assert usage[1] == pytest.approx(0.0, abs=TOLERANCE)  # the dead call's hold is gone
    assert usage[2] == pytest.approx(RUN_COST)  # and the call made again was paid once


def test_tiers_map_tenants_to_limits_and_name_a_missing_tier() -> None:
    settings = Settings(
        budget_tiers={"free": TierBudget(run_usd=0.1), "pro": TierBudget(user_day_usd=50)},
        tenant_tiers={"acme": "pro", "typo": "prro"},
        default_tier="free",
    )
    tiers = Tiers(settings)
    assert (tiers.name_of("acme"), tiers.name_of("other"), tiers.name_of(None)) == (
        "pro",
        "free",
        "free",
    )
    assert tiers.budget_of(RunState(run_id="r", agent="a", tenant="acme")) == TierBudget(
        user_day_usd=50
    )
    assert tiers.budget_of(RunState(run_id="r", agent="a")) == TierBudget(run_usd=0.1)
    with pytest.raises(ConfigError, match=r"tier 'prro' has no budget.*tiers: free, pro"):
        tiers.budget_of(RunState(run_id="r", agent="a", tenant="typo"))
    assert Tiers(Settings()).budget_of(RunState(run_id="r", agent="a")) is None
