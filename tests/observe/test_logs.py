"""Structured logs: one JSON event pair per effect, bound to the run; no secrets."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tether import Agent, MaxStepsExceeded, Policy, tool
from tether.errors import ModelRateLimited
from tether.observe import configure_logging, enabled, logs
from tether.settings import Settings, get_settings
from tether.testing import ScriptedModel, call, calls, raise_error, reply

SECRET = "sk-test-THIS-MUST-NEVER-BE-LOGGED-1234567890"


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # configure_logging changes module state; put it back after each test.
    monkeypatch.setattr(logs, "_logger", logs._logger)
    monkeypatch.setattr(logs, "_level", logs._level)
    yield
    get_settings.cache_clear()


def capture(level: str) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, format="json", stream=stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


@tool
async def add(a: int, b: int) -> int:
    return a + b


async def test_a_run_emits_start_effect_pairs_and_end() -> None:
    stream = capture("INFO")
    model = ScriptedModel(
        [calls(call("add", a=1, b=2), call("add", a=3, b=4)), reply("done")],
        name="openai:gpt-4.1-mini",
    )
    result = await Agent(model=model, tools=[add], name="adder").run("go", user="u-1")
    events = lines(stream)

    assert [(e["event"], e.get("kind")) for e in events if e["event"] != "effect.end"] == [
        ("run.start", None),
        ("effect.start", "model"),
        ("effect.start", "tool"),
        ("effect.start", "tool"),
        ("effect.start", "model"),
        ("run.end", None),
    ]
    assert all(e["run_id"] == result.run_id for e in events)
    assert all(e["level"] == "info" for e in events)
    assert all("timestamp" in e for e in events)

    start, end = events[0], events[-1]
    assert start["event"] == "run.start"
    assert start["agent"] == "adder"
    assert start["model"] == "openai:gpt-4.1-mini"
    assert start["user"] == "u-1"
    assert end["event"] == "run.end"
    assert end["status"] == "completed"
    assert end["steps"] == 2
    assert end["input_tokens"] == result.usage.input_tokens
    assert end["cost_usd"] == pytest.approx(result.cost_usd, abs=1e-6)

    # Every effect.start has its effect.end: same kind, step and (for tools) call id.
    def key(e: dict[str, Any]) -> tuple[Any, ...]:
        return (e["kind"], e["step"], e.get("call_id"))

    starts = sorted(key(e) for e in events if e["event"] == "effect.start")
    ends = sorted(key(e) for e in events if e["event"] == "effect.end")
    assert starts == ends
    assert len(starts) == 4

    model_ends = [e for e in events if e["event"] == "effect.end" and e["kind"] == "model"]
    assert [e["tool_calls"] for e in model_ends] == [2, 0]
    assert model_ends[0]["model"] == "openai:gpt-4.1-mini"
    assert model_ends[0]["input_tokens"] == 10
    assert all(e["duration_ms"] >= 0 for e in events if e["event"] == "effect.end")
    tool_ends = [e for e in events if e["event"] == "effect.end" and e["kind"] == "tool"]
    assert {e["tool"] for e in tool_ends} == {"add"}
    assert {e["status"] for e in tool_ends} == {"ok"}


async def test_tool_arguments_and_outputs_are_not_logged() -> None:
    stream = capture("INFO")

    @tool
    async def private(ssn: str) -> str:
        return f"record for {ssn}"

    model = ScriptedModel([call("private", ssn="123-45-6789"), reply("ok")])
    await Agent(model=model, tools=[private]).run("go")
    assert "123-45-6789" not in stream.getvalue()
    assert "effect.end" in stream.getvalue()


async def test_a_failed_effect_logs_an_error_and_a_warning_run_end() -> None:
    stream = capture("INFO")
    model = ScriptedModel([raise_error(ModelRateLimited("slow down"))])
    with pytest.raises(ModelRateLimited):
        await Agent(model=model, policy=Policy(retry=None)).run("go")
    events = lines(stream)
    assert [e["event"] for e in events] == ["run.start", "effect.start", "effect.error", "run.end"]
    error = events[2]
    assert error["error"] == "ModelRateLimited"
    assert error["message"] == "slow down"
    assert error["level"] == "warning"
    assert events[3]["status"] == "failed"
    assert events[3]["level"] == "warning"


async def test_a_stopped_run_logs_its_status() -> None:
    stream = capture("INFO")
    model = ScriptedModel([call("add", a=1, b=1)] * 2)
    with pytest.raises(MaxStepsExceeded):
        await Agent(model=model, tools=[add], policy=Policy(max_steps=1)).run("go")
    end = lines(stream)[-1]
    assert end["event"] == "run.end"
    assert end["status"] == "max_steps"
    assert "1 steps" in end["error"]


async def test_warning_level_emits_nothing_for_a_good_run() -> None:
    stream = capture("WARNING")
    assert not enabled(20)
    model = ScriptedModel([call("add", a=1, b=2), reply("done")])
    await Agent(model=model, tools=[add]).run("go")
    assert stream.getvalue() == ""


async def test_console_format() -> None:
    stream = io.StringIO()
    configure_logging("INFO", format="console", stream=stream)
    await Agent(model=ScriptedModel([reply("hi")])).run("go", run_id="console-run")
    text = stream.getvalue()
    assert "run.start" in text
    assert "console-run" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


async def test_level_and_format_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_LOG_LEVEL", "INFO")
    monkeypatch.setenv("TETHER_LOG_FORMAT", "json")
    get_settings.cache_clear()
    stream = io.StringIO()
    configure_logging(stream=stream)
    await Agent(model=ScriptedModel([reply("hi")])).run("go")
    assert lines(stream)[0]["event"] == "run.start"


async def test_an_api_key_never_appears_in_logs_or_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("TETHER_ANTHROPIC_API_KEY", SECRET)
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == SECRET

    stream = capture("DEBUG")
    model = ScriptedModel(
        [call("add", a=1, b=2), raise_error(ModelRateLimited("429"))],
        name="openai:gpt-4.1-mini",
    )
    agent = Agent(model=model, tools=[add], policy=Policy(retry=None))
    with pytest.raises(ModelRateLimited) as info:
        await agent.run("go")

    shown = [
        stream.getvalue(),
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
        repr(agent),
        repr(info.value.result),  # type: ignore[attr-defined]
        repr(Settings()),
    ]
    assert stream.getvalue()
    for text in shown:
        assert SECRET not in text
    assert "**********" in repr(settings)
