"""`Agent.stream`: events in the order they happen, errors after them, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import gc

import pytest

from tether import (
    Agent,
    Event,
    MaxStepsExceeded,
    ModelResponded,
    Policy,
    RunCompleted,
    RunStarted,
    TextDelta,
    ToolCalled,
    ToolReturned,
    tool,
)
from tether.errors import ModelRateLimited
from tether.testing import ScriptedModel, call, calls, raise_error, reply


async def collect(agent: Agent, events: list[Event]) -> None:
    """Drain `agent.stream("go")` into `events` (kept when the iterator raises)."""
    async for event in agent.stream("go"):
        events.append(event)


def shape(events: list[Event]) -> list[tuple[str, int | None]]:
    """Event names with their step numbers."""
    return [(type(e).__name__, getattr(e, "step", None)) for e in events]


async def test_events_in_order_with_step_numbers() -> None:
    both_called = asyncio.Barrier(2)

    @tool
    async def lookup(key: str) -> str:
        # Neither call returns before both were called.
        await asyncio.wait_for(both_called.wait(), timeout=5)
        return key.upper()

    model = ScriptedModel(
        [
            reply("Looking up.", call("lookup", key="a"), call("lookup", key="b")),
            reply("A and B."),
        ]
    )
    agent = Agent(model=model, tools=[lookup])
    events = [event async for event in agent.stream("go", run_id="r-1")]

    assert shape(events) == [
        ("RunStarted", None),
        ("StepStarted", 1),
        ("TextDelta", 1),
        ("ModelResponded", 1),
        ("ToolCalled", 1),
        ("ToolCalled", 1),
        ("ToolReturned", 1),
        ("ToolReturned", 1),
        ("StepStarted", 2),
        ("TextDelta", 2),
        ("ModelResponded", 2),
        ("RunCompleted", None),
    ]
    started = events[0]
    assert isinstance(started, RunStarted)
    assert started.run_id == "r-1"
    assert started.agent == "agent"
    first_text, second_text = (e for e in events if isinstance(e, TextDelta))
    assert first_text.text == "Looking up."
    assert second_text.text == "A and B."
    called = [e.call for e in events if isinstance(e, ToolCalled)]
    assert [c.arguments for c in called] == [{"key": "a"}, {"key": "b"}]
    returned = sorted(e.result.content for e in events if isinstance(e, ToolReturned))
    assert returned == ["A", "B"]
    assert all(e.duration_s >= 0 for e in events if isinstance(e, ToolReturned | ModelResponded))
    responded = [e for e in events if isinstance(e, ModelResponded)]
    assert responded[0].response.message.tool_calls == called
    completed = events[-1]
    assert isinstance(completed, RunCompleted)
    assert completed.result.output == "A and B."
    assert completed.result.run_id == "r-1"
    assert completed.result.steps == 2


async def test_no_text_delta_for_a_response_without_text() -> None:
    @tool
    async def ping() -> str:
        return "pong"

    model = ScriptedModel([call("ping"), reply("done")])
    events = [e async for e in Agent(model=model, tools=[ping]).stream("go")]
    assert shape(events)[:6] == [
        ("RunStarted", None),
        ("StepStarted", 1),
        ("ModelResponded", 1),
        ("ToolCalled", 1),
        ("ToolReturned", 1),
        ("StepStarted", 2),
    ]


async def test_tool_error_results_are_streamed() -> None:
    model = ScriptedModel([call("missing"), reply("sorry")])
    events = [e async for e in Agent(model=model).stream("go")]
    [returned] = [e for e in events if isinstance(e, ToolReturned)]
    assert returned.result.status == "error"
    assert isinstance(events[-1], RunCompleted)


async def test_a_stopped_run_raises_after_the_events_so_far() -> None:
    @tool
    async def again() -> str:
        return "again"

    model = ScriptedModel([call("again")] * 3)
    agent = Agent(model=model, tools=[again], policy=Policy(max_steps=2))
    events: list[Event] = []
    with pytest.raises(MaxStepsExceeded) as info:
        await collect(agent, events)
    assert shape(events) == [
        ("RunStarted", None),
        ("StepStarted", 1),
        ("ModelResponded", 1),
        ("ToolCalled", 1),
        ("ToolReturned", 1),
        ("StepStarted", 2),
        ("ModelResponded", 2),
        ("ToolCalled", 2),
        ("ToolReturned", 2),
    ]
    assert info.value.result is not None
    assert info.value.result.status == "max_steps"


async def test_a_model_error_raises_from_the_iterator() -> None:
    model = ScriptedModel([raise_error(ModelRateLimited("429"))])
    events: list[Event] = []
    with pytest.raises(ModelRateLimited):
        await collect(Agent(model=model, policy=Policy(retry=None)), events)
    assert shape(events) == [("RunStarted", None), ("StepStarted", 1)]


class Blocking:
    """A tool that blocks until cancelled, recording that it was."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def __call__(self) -> str:
        self.started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return "never"


def run_tasks() -> set[asyncio.Task[object]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


async def test_closing_the_stream_early_cancels_the_run() -> None:
    blocking = Blocking()
    model = ScriptedModel([calls(call("Blocking")), reply("never")])
    agent = Agent(model=model, tools=[blocking])
    before = run_tasks()

    async with contextlib.aclosing(agent.stream("go")) as events:
        async for event in events:
            if isinstance(event, ToolCalled):
                await blocking.started.wait()
                break

    assert blocking.cancelled.is_set()
    assert run_tasks() == before
    assert model.remaining == 1


async def test_breaking_out_of_the_stream_cancels_the_run() -> None:
    blocking = Blocking()
    model = ScriptedModel([call("Blocking"), reply("never")])
    agent = Agent(model=model, tools=[blocking])
    before = run_tasks()

    async for event in agent.stream("go"):
        if isinstance(event, ToolCalled):
            await blocking.started.wait()
            break
    # Without aclosing, the generator is closed when it is collected (asyncio's
    # async-generator finalizer schedules aclose).
    gc.collect()
    await asyncio.wait_for(blocking.cancelled.wait(), timeout=5)
    for _ in range(10):
        if run_tasks() == before:
            break
        await asyncio.sleep(0.01)
    assert run_tasks() == before
