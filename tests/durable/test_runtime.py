"""`Runtime` in this process: durable runs recorded and journaled in a real store (a
SQLite file, and a throwaway PostgreSQL database), side effects through the ledger, a
human's verdict on an interrupted side effect, retention and replay.

DBOS is a process-wide singleton: the `runtime` fixture launches one `Runtime` per
test and shuts it down after, so tests never share one.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from dbos import DBOS

from tether import Agent, Policy, RunContext, tool
from tether.durable import Runtime
from tether.durable.replay import Replay, recorded_steps
from tether.errors import (
    BudgetExceeded,
    CircuitOpen,
    ConfigError,
    MaxStepsExceeded,
    ModelHTTPError,
    OutcomeUnknown,
    RateLimited,
)
from tether.loop import run_loop
from tether.messages import ModelRequest, RunResult, ToolResult
from tether.models import ModelPrice, register_price
from tether.policy import Breaker, RateLimits
from tether.policy.breaker import InMemoryBreakerStore, SharedBreakerStore
from tether.settings import Settings, TierBudget
from tether.store import Store, tables
from tether.testing import FunctionModel, Step, call, calls, reply

# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def runtime(database_url: str) -> Iterator[Runtime]:
    settings = Settings(
        budget_tiers={"free": TierBudget(run_usd=0.5, user_day_usd=5.0)},
        tenant_tiers={"acme": "free"},
    )
    runtime = Runtime(database_url, settings=settings)
    runtime.launch()
    try:
        yield runtime
    finally:
        runtime.shutdown()


def scripted(
    *steps: Step | Callable[[ModelRequest], Step], name: str = "function"
) -> FunctionModel:
    """A model answering step N of every run with `steps[N - 1]` (the same for each run,
    unlike a `ScriptedModel`, which goes on through its script). A step may be computed
    from the request."""

    def answer(request: ModelRequest) -> Step:
        done = sum(1 for m in request.messages if m.role == "assistant")
        step = steps[done]
        return step(request) if callable(step) else step

    return FunctionModel(answer, name=name)


def prompt_of(request: ModelRequest) -> str:
    return next(str(m.content) for m in request.messages if m.role == "user")


def tool_results(result: RunResult) -> list[ToolResult]:
    return [m for m in result.messages if isinstance(m, ToolResult)]


def journal(runtime: Runtime, run_id: str) -> list[tuple[int, str]]:
    return [(s.step_id, s.name) for s in recorded_steps(runtime.client, run_id)]


# --- a run is recorded and journaled --------------------------------------------------------


async def test_a_run_is_recorded_with_its_usage_cost_and_output(runtime: Runtime) -> None:
    register_price("durable-test-priced", ModelPrice(input=1.0, output=2.0))

    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"Sunny in {city}"

    model = scripted(call("weather", city="Paris"), reply("It is sunny in Paris."))
    model.name = "durable-test-priced"
    agent = Agent(model=model, tools=[weather], name="recorder")
    runtime.register(agent, target="tests/agents.py:recorder")

    result = await runtime.run("recorder", "Weather?", user="u-17", tenant="acme", run_id="rec-1")

    assert result.status == "completed"
    assert result.output == "It is sunny in Paris."
    record = runtime.store.runs.get("rec-1")
    assert record is not None
    assert (record.agent, record.user_id, record.tenant, record.tier) == (
        "recorder",
        "u-17",
        "acme",
        "free",
    )
    assert record.target == "tests/agents.py:recorder"
    assert record.status == "completed"
    assert record.prompt == "Weather?"
    assert json.loads(record.output or "null") == "It is sunny in Paris."
    assert (record.steps, record.requests, record.tool_calls) == (2, 2, 1)
    assert (record.input_tokens, record.output_tokens) == (20, 10)
    assert record.cost_usd == pytest.approx((20 * 1.0 + 10 * 2.0) / 1e6)
    assert record.cost_usd == pytest.approx(result.cost_usd)
    assert record.started_at is not None
    assert record.finished_at is not None
    assert record.error is None
    assert runtime.status("rec-1") == "SUCCESS"
    # Each effect is one journaled step, in the order the loop asked for them.
    assert [name for _, name in journal(runtime, "rec-1")] == ["model", "tool:weather", "model"]
    ids = [step for step, _ in journal(runtime, "rec-1")]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    steps = recorded_steps(runtime.client, "rec-1")
    assert steps[1].output.content == "Sunny in Paris"
    assert steps[2].output.message.text == "It is sunny in Paris."


async def test_parallel_tool_calls_get_the_same_step_ids_however_they_finish(
    runtime: Runtime,
) -> None:
    finished: list[str] = []
    second_done = asyncio.Event()

    @tool
    async def fetch(name: str) -> str:
        """Fetch a thing."""
        if name == "first":
            await second_done.wait()  # the first call finishes last, every time
        finished.append(name)
        if name == "second":
            second_done.set()
        return f"got {name}"

    model = scripted(
        calls(call("fetch", name="first"), call("fetch", name="second")), reply("both fetched")
    )
    runtime.register(Agent(model=model, tools=[fetch], name="fetcher"))

    for run_id in ("par-1", "par-2"):
        second_done.clear()
        result = await runtime.run("fetcher", "go", run_id=run_id)
        assert result.output == "both fetched"
    assert finished == ["second", "first", "second", "first"]

    def steps(run_id: str) -> list[tuple[int, str, str | None]]:
        return [
            (s.step_id, s.name, getattr(s.output, "content", None))
            for s in recorded_steps(runtime.client, run_id)
        ]

    assert steps("par-1") == steps("par-2")
    # The ids follow the order of the calls in the response, not the order they ended.
    first, second = steps("par-1")[1:3]
    assert first[2] == "got first"
    assert second[2] == "got second"
    assert first[0] < second[0]


async def test_a_resumed_run_answers_its_first_attempts_effects_from_the_journal(
    runtime: Runtime,
) -> None:
    ran: list[int] = []
    in_step: list[int | None] = []

    @tool
    async def slow(n: int) -> int:
        """Take a while."""
        ran.append(n)
        in_step.append(DBOS.step_id)
        await asyncio.sleep(0.05)
        return n

    down = True

    def answer(request: ModelRequest) -> Step:
        if not any(m.role == "assistant" for m in request.messages):
            return call("slow", n=1)
        if down:
            raise ModelHTTPError("upstream down", status_code=503, retryable=True)
        return reply("done")

    model = FunctionModel(answer, name="durable-test-resumed")
    policy = Policy(retry=None, breaker=None)
    runtime.register(Agent(model=model, tools=[slow], policy=policy, name="resumed"))
    with pytest.raises(ModelHTTPError):
        await runtime.run("resumed", "go", run_id="res-1")

    # A first attempt runs each effect before its step: journaled all the same, with
    # the time the effect took.
    first = recorded_steps(runtime.client, "res-1")
    assert [s.name for s in first] == ["model", "tool:slow", "model"]
    assert first[1].output.content == "1"
    assert first[1].duration_s is not None
    assert first[1].duration_s >= 0.05
    assert in_step == [first[1].step_id]  # it ran in its step's DBOS context
    assert isinstance(first[2].error, ModelHTTPError)

    down = False
    result = await runtime.resume("res-1")

    assert result.output == "done"
    assert ran == [1]  # the tool's step answered from the journal
    assert len(model.requests) == 3  # so did the first model call; the failed one ran again
    assert tool_results(result)[0].content == "1"


async def test_running_a_completed_run_id_again_returns_its_recorded_result(
    runtime: Runtime,
) -> None:
    model = scripted(reply("the one answer"))
    runtime.register(Agent(model=model, name="once"))

    first = await runtime.run("once", "hello", run_id="done-1")
    assert len(model.requests) == 1
    again = await runtime.run("once", "hello", run_id="done-1")

    assert len(model.requests) == 1  # the model was not asked again
    assert again.output == first.output == "the one answer"
    assert again.run_id == "done-1"
    assert again.usage == first.usage


async def test_an_agent_not_registered_is_named_with_the_registered_ones(
    runtime: Runtime,
) -> None:
    runtime.register(Agent(model=scripted(reply("a")), name="alpha"))
    runtime.register(Agent(model=scripted(reply("b")), name="beta"))

    with pytest.raises(ConfigError, match=r"'gamma'.*registered: alpha, beta"):
        await runtime.run("gamma", "hi")
    assert runtime.store.runs.list() == []


def test_running_before_launch_is_a_config_error(database_url: str) -> None:
    runtime = Runtime(database_url)
    try:
        runtime.register(Agent(model=scripted(reply("a")), name="alpha"))
        with pytest.raises(ConfigError, match=r"launch\(\)"):
            asyncio.run(runtime.run("alpha", "hi"))
    finally:
        runtime.shutdown()


# --- side effects -----------------------------------------------------------------------------


async def test_a_side_effect_is_written_to_the_ledger_with_its_key(runtime: Runtime) -> None:
    keys: list[str] = []

    @tool(side_effect=True)
    async def charge(ctx: RunContext, amount: int) -> str:
        """Charge the customer."""
        keys.append(ctx.idempotency_key)
        return f"charged {amount}"

    model = scripted(call("charge", amount=42), reply("charged"))
    runtime.register(Agent(model=model, tools=[charge], name="charger"))

    result = await runtime.run("charger", "charge 42", run_id="led-1")

    assert result.output == "charged"
    assert keys == ["led-1:1:0"]
    (entry,) = runtime.store.ledger.of_run("led-1")
    assert entry.status == "finished"
    assert entry.tool == "charge"
    assert entry.idempotency_key == "led-1:1:0"
    assert json.loads(entry.arguments) == {"amount": 42}
    assert entry.attempts == 1
    assert entry.result is not None
    recorded = ToolResult.model_validate_json(entry.result)
    assert (recorded.content, recorded.status) == ("charged 42", "ok")
    # The ledger row belongs to the journal step that ran the call.
    assert (entry.step_id, "tool:charge") in journal(runtime, "led-1")


async def test_dedupe_answers_the_same_call_of_another_run_from_the_ledger(
    runtime: Runtime,
) -> None:
    sent: list[dict[str, str]] = []

    @tool(side_effect=True, dedupe=True, volatile=("nonce",))
    async def send_email(to: str, body: str, nonce: str) -> str:
        """Send an email."""
        sent.append({"to": to, "nonce": nonce})
        return f"sent to {to} (nonce {nonce})"

    def send(request: ModelRequest) -> Step:
        to, nonce = prompt_of(request).split()
        return call("send_email", to=to, body="hello", nonce=nonce)

    model = scripted(send, reply("done"))
    runtime.register(Agent(model=model, tools=[send_email], name="mailer"))

    first = await runtime.run("mailer", "bob nonce-1", run_id="mail-1")
    second = await runtime.run("mailer", "bob nonce-2", run_id="mail-2")

    assert sent == [{"to": "bob", "nonce": "nonce-1"}]  # the second run sent nothing
    (answer,) = tool_results(second)
    assert answer.content == "sent to bob (nonce nonce-1)"  # the first run's result
    assert answer.content == tool_results(first)[0].content
    assert answer.call_id == second.messages[1].tool_calls[0].id  # for this run's call
    assert [e.status for e in runtime.store.ledger.of_run("mail-1")] == ["finished"]
    assert runtime.store.ledger.of_run("mail-2") == []

    # Other arguments (beyond the volatile ones) are another call: it is sent.
    third = await runtime.run("mailer", "carol nonce-1", run_id="mail-3")
    assert tool_results(third)[0].content == "sent to carol (nonce nonce-1)"
    assert sent == [{"to": "bob", "nonce": "nonce-1"}, {"to": "carol", "nonce": "nonce-1"}]


def test_side_effect_options_are_checked_when_the_tool_is_declared() -> None:
    with pytest.raises(ConfigError, match="side_effect=True"):

        @tool(idempotent=True)
        def refund(order: int) -> str:
            return "refunded"

    with pytest.raises(ConfigError, match="side_effect=True"):

        @tool(dedupe=True)
        def notify(order: int) -> str:
            return "notified"

    with pytest.raises(ConfigError, match="dedupe=True"):

        @tool(side_effect=True, volatile=("nonce",))
        def send(to: str, nonce: str) -> str:
            return "sent"


# --- an interrupted side effect: OutcomeUnknown, then a human's verdict ------------------------


class _Charges:
    """A charging tool that counts its calls, and an agent around it."""

    def __init__(self, name: str) -> None:
        self.calls: list[int] = []

        @tool(side_effect=True)
        async def charge(amount: int) -> str:
            """Charge the customer."""
            self.calls.append(amount)
            return f"charged {amount} for real"

        self.agent = Agent(
            model=scripted(
                call("charge", amount=7),
                lambda request: reply(f"result: {tool_message(request)}"),
            ),
            tools=[charge],
            name=name,
        )


def tool_message(request: ModelRequest) -> str:
    return next(str(m.content) for m in request.messages if m.role == "tool")


async def _interrupted(runtime: Runtime, charges: _Charges, run_id: str) -> int:
    """Leave `run_id` as a crash inside its side effect would: the ledger row `started`,
    never finished. Returns the side effect's step (drawn the same way in every run of
    the agent: learned from a first, identical run)."""
    await runtime.run(charges.agent.name, "charge 7", run_id=f"{run_id}-probe")
    (probe,) = runtime.store.ledger.of_run(f"{run_id}-probe")
    charges.calls.clear()
    runtime.store.ledger.begin(
        run_id=run_id,
        step_id=probe.step_id,
        tool="charge",
        call_id=probe.call_id,
        idempotency_key=f"{run_id}:1:0",
        arguments=probe.arguments,
    )
    return probe.step_id


async def test_an_interrupted_side_effect_stops_the_run_with_outcome_unknown(
    runtime: Runtime,
) -> None:
    charges = _Charges("billing")
    runtime.register(charges.agent)
    step = await _interrupted(runtime, charges, "ou-1")

    with pytest.raises(OutcomeUnknown) as caught:
        await runtime.run("billing", "charge 7", run_id="ou-1")

    error = caught.value
    assert (error.run_id, error.step_id, error.tool) == ("ou-1", step, "charge")
    assert error.arguments == {"amount": 7}
    assert f"tether resolve ou-1 --step {step}" in str(error)
    assert charges.calls == []  # it may have happened: it is not run again
    record = runtime.store.runs.get("ou-1")
    assert record is not None
    assert record.status == "outcome_unknown"
    assert runtime.status("ou-1") == "ERROR"
    (entry,) = runtime.store.ledger.of_run("ou-1")
    assert entry.status == "started"
    assert entry.attempts == 2
    # It cannot be resumed until a human says what happened.
    with pytest.raises(ConfigError, match="tether resolve ou-1"):
        runtime.reopen("ou-1")
    # ... nor is it deleted by retention while it waits.
    assert "ou-1" not in runtime.forget(0)

    # A human found out it happened: its result goes in, and the run finishes.
    resolved = runtime.resolve("ou-1", step, result="charged 7 (confirmed by hand)")
    assert resolved.status == "finished"
    assert resolved.resolved_by == "cli"
    result = await runtime.resume("ou-1")

    assert result.status == "completed"
    assert result.output == "result: charged 7 (confirmed by hand)"
    assert tool_results(result)[0].content == "charged 7 (confirmed by hand)"
    assert charges.calls == []
    record = runtime.store.runs.get("ou-1")
    assert record is not None
    assert record.status == "completed"
    assert runtime.status("ou-1") == "SUCCESS"


async def test_a_side_effect_resolved_as_not_happened_runs_once_more(runtime: Runtime) -> None:
    charges = _Charges("billing-retry")
    runtime.register(charges.agent)
    step = await _interrupted(runtime, charges, "ou-2")
    with pytest.raises(OutcomeUnknown):
        await runtime.run("billing-retry", "charge 7", run_id="ou-2")

    resolved = runtime.resolve("ou-2", step, result=None)
    assert resolved.status == "retry"
    result = await runtime.resume("ou-2")

    assert charges.calls == [7]
    assert result.output == "result: charged 7 for real"
    (entry,) = runtime.store.ledger.of_run("ou-2")
    assert entry.status == "finished"
    # Resolving it again is refused: it finished.
    with pytest.raises(ConfigError, match="finished already"):
        runtime.resolve("ou-2", step, result="x")


async def test_resolve_refuses_a_step_without_a_side_effect(runtime: Runtime) -> None:
    runtime.register(Agent(model=scripted(reply("hi")), name="plain"))
    await runtime.run("plain", "hi", run_id="plain-1")
    with pytest.raises(ConfigError, match="has no side effect at step 1"):
        runtime.resolve("plain-1", 1, result="x")


async def test_reopen_refuses_runs_that_resuming_cannot_change(runtime: Runtime) -> None:
    runtime.register(Agent(model=scripted(reply("fine")), name="fine"))
    await runtime.run("fine", "hi", run_id="fine-1")
    looping = Agent(
        model=scripted(*[call("noop")] * 3),
        tools=[tool(lambda: "ok", name="noop")],
        policy=Policy(max_steps=2),
        name="looping",
    )
    runtime.register(looping)
    with pytest.raises(MaxStepsExceeded):
        await runtime.run("looping", "loop", run_id="loop-1")

    assert runtime.reopen("fine-1") == "completed already"
    record = runtime.store.runs.get("loop-1")
    assert record is not None
    assert record.status == "max_steps"
    with pytest.raises(ConfigError, match="stopped with status 'max_steps'"):
        runtime.reopen("loop-1")
    with pytest.raises(ConfigError, match="no run 'nowhere'"):
        runtime.reopen("nowhere")


# --- breakers and rate limits shared through the database ---------------------------------


def down_model(name: str) -> FunctionModel:
    def answer(request: ModelRequest) -> Step:
        raise ModelHTTPError("upstream down", status_code=503, retryable=True)

    return FunctionModel(answer, name=name)


async def test_durable_runs_share_their_circuits_through_the_database(
    runtime: Runtime, database_url: str
) -> None:
    model = down_model("durable-test-down")
    policy = Policy(retry=None, breaker=Breaker(failures=2, cooldown=60))
    runtime.register(Agent(model=model, policy=policy, name="flaky"))
    for n in range(2):
        with pytest.raises(ModelHTTPError):
            await runtime.run("flaky", "hi", run_id=f"flaky-{n}")
    assert len(model.requests) == 2
    # Open for every process on this database, not just this one.
    elsewhere = Store(database_url)
    try:
        shared = Breaker(store=SharedBreakerStore(elsewhere.policy_states))
        assert await shared.state("model:durable-test-down") == "open"
    finally:
        elsewhere.close()
    with pytest.raises(CircuitOpen):
        await runtime.run("flaky", "hi", run_id="flaky-2")
    assert len(model.requests) == 2  # failed fast: the model was not called
    assert agent_policy_is_untouched(runtime, "flaky", policy)


def agent_policy_is_untouched(runtime: Runtime, name: str, policy: Policy) -> bool:
    """The agent keeps its own policy (in-memory state) for runs outside the runtime."""
    agent = runtime._entry(name).agent
    return agent.policy is policy and isinstance(policy.breaker.store, InMemoryBreakerStore)


async def test_durable_runs_share_rate_limits_through_the_database(
    runtime: Runtime,
) -> None:
    limits = RateLimits(requests_per_minute=2, max_wait=0)
    model = scripted(reply("ok"), name="durable-test-limited")
    runtime.register(Agent(model=model, policy=Policy(rate_limits=limits), name="limited"))
    for n in range(2):
        await runtime.run("limited", "hi", run_id=f"limited-{n}")
    with pytest.raises(RateLimited):
        await runtime.run("limited", "hi", run_id="limited-2")
    assert runtime.store.policy_states.keys("ratelimit:") == [
        "ratelimit:model:durable-test-limited:rpm"
    ]


async def test_shared_policy_state_can_be_turned_off(database_url: str) -> None:
    runtime = Runtime(database_url, shared_policy_state=False)
    runtime.launch()
    try:
        model = down_model("durable-test-down-local")
        policy = Policy(retry=None, breaker=Breaker(failures=1, cooldown=60))
        runtime.register(Agent(model=model, policy=policy, name="local-state"))
        with pytest.raises(ModelHTTPError):
            await runtime.run("local-state", "hi", run_id="local-0")
        with pytest.raises(CircuitOpen):
            await runtime.run("local-state", "hi", run_id="local-1")
        assert runtime.store.policy_states.keys() == []
        assert await policy.breaker.state("model:durable-test-down-local") == "open"
    finally:
        runtime.shutdown()


# --- errors survive the journal (pickled) ------------------------------------------------------


async def test_run_errors_keep_their_attributes_through_pickle() -> None:
    partial = await Agent(model=scripted(reply("partial")), name="p").run("hi", run_id="p-1")
    errors: list[Any] = [
        OutcomeUnknown(
            "unknown", run_id="r", step_id=3, tool="charge", arguments={"a": 1}, result=partial
        ),
        CircuitOpen("open", target="openai:gpt", retry_after=2.5),
        RateLimited("slow down", retry_after=1.5, result=partial),
        BudgetExceeded("spent", result=partial),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert copy.args == error.args
        assert str(copy) == str(error)
        kept = {k: v for k, v in vars(copy).items() if k != "result"}
        assert kept == {k: v for k, v in vars(error).items() if k != "result"}
        if getattr(error, "result", None) is not None:
            assert copy.result == partial
    unknown = pickle.loads(pickle.dumps(errors[0]))
    assert (unknown.run_id, unknown.step_id, unknown.tool, unknown.arguments) == (
        "r",
        3,
        "charge",
        {"a": 1},
    )
    assert pickle.loads(pickle.dumps(errors[1])).target == "openai:gpt"
    assert pickle.loads(pickle.dumps(errors[2])).retry_after == 1.5


# --- retention -----------------------------------------------------------------------------------


async def test_forget_deletes_old_ended_runs_and_keeps_recent_ones(runtime: Runtime) -> None:
    @tool(side_effect=True)
    def note(text: str) -> str:
        """Write a note."""
        return "noted"

    model = scripted(call("note", text="x"), reply("ok"))
    runtime.register(Agent(model=model, tools=[note], name="notes"))
    await runtime.run("notes", "old", run_id="old-1")
    await runtime.run("notes", "new", run_id="new-1")
    with runtime.store.engine.begin() as connection:  # old-1 ended two days ago
        connection.execute(
            sa.update(tables.runs)
            .where(tables.runs.c.run_id == "old-1")
            .values(finished_at=time.time() - 2 * 86400)
        )

    assert runtime.forget(86400, dry_run=True) == ["old-1"]
    assert runtime.store.runs.get("old-1") is not None  # a dry run deletes nothing

    assert runtime.forget(86400) == ["old-1"]

    assert runtime.store.runs.get("old-1") is None
    assert runtime.store.ledger.of_run("old-1") == []
    assert recorded_steps(runtime.client, "old-1") == []
    assert runtime.status("old-1") is None
    assert runtime.store.runs.get("new-1") is not None
    assert len(runtime.store.ledger.of_run("new-1")) == 1
    assert len(recorded_steps(runtime.client, "new-1")) == 3
    assert runtime.forget(86400) == []


async def test_forget_prunes_policy_state_idle_as_long_and_a_day_at_least(
    runtime: Runtime,
) -> None:
    states = runtime.store.policy_states
    for key in ("breaker:model:idle", "breaker:model:busy", "ratelimit:user:gone:rpm"):
        states.transact(key, lambda state, now: ({"n": 1}, None))
    with runtime.store.engine.begin() as connection:
        for key, idle_days in (("breaker:model:idle", 3), ("ratelimit:user:gone:rpm", 1.5)):
            connection.execute(
                sa.update(tables.policy_states)
                .where(tables.policy_states.c.key == key)
                .values(updated_at=time.time() - idle_days * 86400)
            )
    runtime.forget(3600, dry_run=True)
    assert len(states.keys()) == 3  # a dry run deletes nothing
    runtime.forget(2 * 86400)
    assert states.keys() == ["breaker:model:busy", "ratelimit:user:gone:rpm"]
    runtime.forget(3600)  # an hour asked, a day kept
    assert states.keys() == ["breaker:model:busy"]


# --- replay ------------------------------------------------------------------------------------


async def test_replay_answers_every_effect_from_the_journal(runtime: Runtime) -> None:
    looked_up: list[str] = []

    @tool
    def lookup(city: str) -> str:
        """Look a city up."""
        looked_up.append(city)
        return f"{city}: 21 C"

    model = scripted(call("lookup", city="Paris"), reply("21 C in Paris"))
    agent = Agent(model=model, tools=[lookup], name="lookups")
    runtime.register(agent)
    original = await runtime.run("lookups", "Paris?", run_id="rp-1")
    steps = recorded_steps(runtime.client, "rp-1")
    asked, ran = len(model.requests), len(looked_up)

    journal = Replay(steps, agent.tools)
    replayed = await run_loop(agent.spec(outer=(journal,)), "Paris?", run_id="rp-1-replay")

    assert replayed.output == original.output == "21 C in Paris"
    assert [m.model_dump() for m in replayed.messages] == [
        m.model_dump() for m in original.messages
    ]
    assert journal.live == 0
    assert (len(model.requests), len(looked_up)) == (asked, ran)  # nothing was called

    # From step 3 (the last model call) it goes live, on another model.
    other = scripted(reply("forked answer"), reply("forked answer"), name="other")
    fork = Replay(steps, agent.tools, from_step=3)
    forked = await run_loop(agent.spec(other, outer=(fork,)), "Paris?", run_id="rp-1-fork")

    assert forked.output == "forked answer"
    assert fork.live == 1
    assert len(other.requests) == 1
    assert (len(model.requests), len(looked_up)) == (asked, ran)


async def test_a_replay_never_performs_a_side_effect(runtime: Runtime) -> None:
    charges = _Charges("billing-replay")
    runtime.register(charges.agent)
    await runtime.run("billing-replay", "charge 7", run_id="rp-2")
    steps = recorded_steps(runtime.client, "rp-2")
    assert [s.name for s in steps] == ["model", "tool:charge", "model"]
    assert charges.calls == [7]

    fork = Replay(steps, charges.agent.tools, from_step=2)
    replayed = await run_loop(charges.agent.spec(outer=(fork,)), "charge 7", run_id="rp-2-fork")

    assert charges.calls == [7]  # not charged again
    (denied,) = tool_results(replayed)
    assert denied.status == "denied"
    assert "side effect" in denied.content
    assert fork.live == 2  # the tool call (denied) and the model call after it
    assert replayed.output.startswith("result: Not run")


async def test_a_replay_that_leaves_the_journal_is_refused(runtime: Runtime) -> None:
    model = scripted(call("noop"), reply("done"))
    runtime.register(Agent(model=model, tools=[tool(lambda: "ok", name="noop")], name="noops"))
    await runtime.run("noops", "hi", run_id="rp-3")
    steps = recorded_steps(runtime.client, "rp-3")

    # The agent changed: without its tool, the loop asks for a model call where the
    # journal has the tool call.
    changed = Agent(model=scripted(reply("x"), reply("x")), name="noops")
    with pytest.raises(ConfigError, match="diverged from the journal at step 2"):
        await run_loop(changed.spec(outer=(Replay(steps, changed.tools),)), "hi")
