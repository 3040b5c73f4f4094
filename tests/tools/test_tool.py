"""`@tool` and `Tool`: what can be a tool, how it runs, its limits."""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

import pytest

from tether import Agent, ConfigError, RunContext, Tool, tool
from tether.errors import ToolExecutionError, ToolTimeout
from tether.messages import ToolCall, ToolResult
from tether.testing import ScriptedModel, call, calls, reply
from tether.tools import ToolSet, render_output


def results(model: ScriptedModel, request: int = 1) -> list[ToolResult]:
    return [m for m in model.requests[request].messages if isinstance(m, ToolResult)]


async def run_tools(tools: list[Any], *steps: Any) -> ScriptedModel:
    model = ScriptedModel([*steps, reply("done")])
    result = await Agent(model=model, tools=tools).run("go")
    assert result.status == "completed"
    return model


class TestFunctions:
    async def test_async_function_runs_on_the_event_loop_thread(self) -> None:
        threads: list[int] = []

        @tool
        async def where() -> str:
            threads.append(threading.get_ident())
            return "async"

        model = await run_tools([where], call("where"))
        assert threads == [threading.get_ident()]
        assert where.is_async
        assert results(model)[0].content == "async"

    async def test_sync_function_runs_in_a_thread(self) -> None:
        threads: list[int] = []

        @tool
        def where() -> str:
            threads.append(threading.get_ident())
            return "sync"

        model = await run_tools([where], call("where"))
        assert len(threads) == 1
        assert threads[0] != threading.get_ident()
        assert not where.is_async
        assert results(model)[0].content == "sync"

    async def test_sync_tools_do_not_block_each_other(self) -> None:
        both = threading.Barrier(2, timeout=5)

        @tool
        def blocking(n: int) -> int:
            both.wait()  # deadlocks unless both run at once, in two threads
            return n

        model = await run_tools([blocking], calls(call("blocking", n=1), call("blocking", n=2)))
        assert [r.content for r in results(model)] == ["1", "2"]

    async def test_plain_callables_are_wrapped(self) -> None:
        def shout(text: str) -> str:
            """Upper-case text."""
            return text.upper()

        model = await run_tools([shout], call("shout", text="hi"))
        assert results(model)[0].content == "HI"
        assert model.requests[0].tools[0].description == "Upper-case text."

    async def test_decorator_with_and_without_options(self) -> None:
        @tool(name="renamed", description="Custom.", timeout=5)
        async def original(x: int) -> int:
            """Ignored summary."""
            return x

        assert original.name == "renamed"
        assert original.definition.description == "Custom."
        assert original.timeout == 5
        assert await original(3) == 3  # direct call bypasses validation

        @tool
        async def bare(x: int) -> int:
            return x

        assert isinstance(bare, Tool)
        assert bare.name == "bare"


class Weather:
    """A callable object."""

    def __init__(self, unit: str) -> None:
        self.unit = unit

    async def __call__(self, city: str) -> str:
        """Current weather.

        Args:
            city: City name.
        """
        return f"{city}: 21 {self.unit}"


class Shop:
    def __init__(self, name: str) -> None:
        self.name = name

    @tool
    async def greet(self, customer: str) -> str:
        """Greet a customer.

        Args:
            customer: Their name.
        """
        return f"{self.name} welcomes {customer}"

    @tool(max_concurrency=1)
    def stock(self, item: str) -> int:
        return len(item)


def price(item: str, currency: str = "EUR", *, vat: float = 0.2) -> str:
    """Price of an item.

    Args:
        item: What to price.
        currency: ISO code.
        vat: VAT rate.
    """
    return f"{item} {currency} {vat}"


class TestCallables:
    async def test_callable_object(self) -> None:
        weather = Weather("C")
        model = await run_tools([weather], call("Weather", city="Oslo"))
        assert results(model)[0].content == "Oslo: 21 C"
        definition = model.requests[0].tools[0]
        assert definition.name == "Weather"
        assert definition.description == "Current weather."
        assert definition.parameters["properties"] == {
            "city": {"type": "string", "description": "City name."}
        }

    async def test_callable_object_with_a_name(self) -> None:
        model = await run_tools([tool(name="weather")(Weather("F"))], call("weather", city="NYC"))
        assert results(model)[0].content == "NYC: 21 F"

    async def test_partial(self) -> None:
        model = await run_tools(
            [functools.partial(price, currency="USD")], call("price", item="tea")
        )
        assert results(model)[0].content == "tea USD 0.2"
        definition = model.requests[0].tools[0]
        assert definition.description == "Price of an item."
        props = definition.parameters["properties"]
        assert props["item"] == {"type": "string", "description": "What to price."}
        assert definition.parameters["required"] == ["item"]

    async def test_partial_binding_a_positional_argument_hides_it(self) -> None:
        bound = tool(name="tea_price")(functools.partial(price, "tea"))
        assert "item" not in bound.definition.parameters["properties"]
        model = await run_tools([bound], call("tea_price", currency="GBP"))
        assert results(model)[0].content == "tea GBP 0.2"

    async def test_method_through_an_instance(self) -> None:
        shop = Shop("Acme")
        model = await run_tools([shop.greet], call("greet", customer="Ada"))
        assert results(model)[0].content == "Acme welcomes Ada"
        definition = model.requests[0].tools[0]
        assert "self" not in definition.parameters["properties"]
        assert definition.parameters["properties"]["customer"]["description"] == "Their name."

    async def test_sync_method_through_an_instance(self) -> None:
        model = await run_tools([Shop("x").stock], call("stock", item="four"))
        assert results(model)[0].content == "4"

    def test_method_through_the_class_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match=r"use it through an instance"):
            Agent(model=ScriptedModel([]), tools=[Shop.greet])

    def test_non_callable_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="must be callable"):
            Tool(42)  # type: ignore[arg-type]

    def test_lambda_needs_a_name(self) -> None:
        with pytest.raises(ConfigError, match="name"):
            Tool(lambda x: x)
        assert Tool(lambda x: x, name="identity").name == "identity"


class TestContext:
    async def test_context_is_injected_and_not_in_the_schema(self) -> None:
        seen: list[RunContext[Any]] = []

        @tool
        def sync_ctx(ctx: RunContext[dict[str, int]], n: int) -> int:
            seen.append(ctx)
            return ctx.deps["base"] + n

        assert list(sync_ctx.definition.parameters["properties"]) == ["n"]
        assert sync_ctx.definition.parameters["required"] == ["n"]
        model = ScriptedModel([call("sync_ctx", n=1), reply("ok")])
        await Agent(model=model, tools=[sync_ctx]).run("go", deps={"base": 41}, run_id="rid")
        assert results(model)[0].content == "42"
        assert seen[0].idempotency_key == "rid:1:0"

    async def test_context_cannot_be_sent_by_the_model(self) -> None:
        @tool
        async def with_ctx(ctx: RunContext[None]) -> str:
            return "ran"

        model = await run_tools([with_ctx], call("with_ctx", ctx="forged"))
        [result] = results(model)
        assert result.status == "error"
        assert "ctx" in result.content

    def test_two_contexts_are_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="two RunContext"):

            @tool
            async def twice(a: RunContext[None], b: RunContext[None]) -> None: ...


class TestDeclarationErrors:
    def test_star_args(self) -> None:
        with pytest.raises(ConfigError, match=r"\*args"):

            @tool
            async def many(*args: int) -> int:
                return sum(args)

    def test_star_kwargs(self) -> None:
        with pytest.raises(ConfigError, match=r"\*kwargs"):

            @tool
            async def many(**kwargs: int) -> int:
                return sum(kwargs.values())

    def test_duplicate_names(self) -> None:
        @tool(name="same")
        async def one() -> None: ...

        @tool(name="same")
        async def two() -> None: ...

        with pytest.raises(ConfigError, match="two tools are named 'same'"):
            Agent(model=ScriptedModel([]), tools=[one, two])

    def test_reserved_output_name(self) -> None:
        @tool(name="final_result")
        async def sneaky() -> None: ...

        with pytest.raises(ConfigError, match="reserved"):
            Agent(model=ScriptedModel([]), tools=[sneaky])

    @pytest.mark.parametrize("name", ["has space", "semi;colon", "dot.ted"])
    def test_bad_names(self, name: str) -> None:
        with pytest.raises(ConfigError, match="letters, digits"):

            @tool(name=name)
            async def f() -> None: ...

    def test_hyphenated_name_is_fine(self) -> None:
        @tool(name="get-weather")
        async def f() -> None: ...

        assert f.name == "get-weather"

    @pytest.mark.parametrize("timeout", [0, -1, -0.5, float("nan"), float("inf"), "5", True])
    def test_bad_timeouts(self, timeout: Any) -> None:
        with pytest.raises(ConfigError, match="timeout"):

            @tool(timeout=timeout)
            async def f() -> None: ...

    @pytest.mark.parametrize("limit", [0, -1, 1.5, "2", True])
    def test_bad_max_concurrency(self, limit: Any) -> None:
        with pytest.raises(ConfigError, match="max_concurrency"):

            @tool(max_concurrency=limit)
            async def f() -> None: ...

    def test_unresolvable_hint(self) -> None:
        def f(x: NotDefinedAnywhere) -> None: ...  # type: ignore[name-defined]  # noqa: F821

        with pytest.raises(ConfigError, match="NotDefinedAnywhere"):
            Tool(f)


class TestExecution:
    async def test_validate_returns_typed_arguments(self) -> None:
        @tool
        async def f(n: int, ratio: float = 0.5) -> None: ...

        assert f.validate(ToolCall(id="1", name="f", arguments='{"n": "3"}')) == {
            "n": 3,
            "ratio": 0.5,
        }

    async def test_exception_chain_is_kept(self) -> None:
        @tool
        async def broken() -> None:
            raise KeyError("missing")

        with pytest.raises(ToolExecutionError) as info:
            await broken.execute({}, None)
        assert isinstance(info.value.__cause__, KeyError)
        assert info.value.tool == "broken"
        assert "KeyError" in str(info.value)

    async def test_timeout_of_a_sync_tool(self) -> None:
        release = threading.Event()

        @tool(timeout=0.05)
        def stuck() -> str:
            release.wait(5)
            return "late"

        try:
            with pytest.raises(ToolTimeout, match=r"0\.05s"):
                await stuck.execute({}, None)
        finally:
            release.set()

    @pytest.mark.parametrize("limit", [None, 5])
    async def test_a_timeout_raised_inside_the_tool_is_not_its_own_timeout(
        self, limit: float | None
    ) -> None:
        @tool(timeout=limit)
        async def upstream() -> str:
            raise TimeoutError("the payments API timed out")

        with pytest.raises(ToolExecutionError) as info:
            await upstream.execute({}, None)
        assert "the payments API timed out" in str(info.value)
        assert "did not finish within" not in str(info.value)

    async def test_max_concurrency_serializes_calls_across_runs(self) -> None:
        running = 0
        peak = 0

        @tool(max_concurrency=1)
        async def exclusive(n: int) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.005)
            running -= 1
            return n

        async def one_run(i: int) -> None:
            model = ScriptedModel(
                [calls(call("exclusive", n=i), call("exclusive", n=i + 100)), reply("ok")]
            )
            await Agent(model=model, tools=[exclusive]).run("go")
            assert [r.content for r in results(model)] == [str(i), str(i + 100)]

        await asyncio.gather(*(one_run(i) for i in range(4)))
        assert peak == 1

    async def test_max_concurrency_allows_that_many(self) -> None:
        running = 0
        peak = 0
        three = asyncio.Barrier(3)

        @tool(max_concurrency=3)
        async def limited(n: int) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if n < 3:
                await asyncio.wait_for(three.wait(), timeout=5)
            await asyncio.sleep(0.005)
            running -= 1
            return n

        await run_tools([limited], calls(*(call("limited", n=i) for i in range(6))))
        assert peak == 3

    async def test_without_limit_calls_overlap(self) -> None:
        running = 0
        peak = 0

        @tool
        async def free(n: int) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.005)
            running -= 1
            return n

        await run_tools([free], calls(*(call("free", n=i) for i in range(4))))
        assert peak == 4

    async def test_method_limit_is_shared_across_instances(self) -> None:
        a, b = Shop("a"), Shop("b")
        assert a.stock._semaphore is b.stock._semaphore


class TestRenderOutput:
    def test_values(self) -> None:
        from pydantic import BaseModel

        class Point(BaseModel):
            x: int
            y: int

        assert render_output("plain") == "plain"
        assert render_output(None) == "null"
        assert render_output(3) == "3"
        assert render_output({"a": [1, 2]}) == '{"a":[1,2]}'
        assert render_output(Point(x=1, y=2)) == '{"x":1,"y":2}'
        assert render_output({"p": Point(x=1, y=2)}) == '{"p":{"x":1,"y":2}}'
        # Anything else falls back to its str(), as a JSON string.
        assert render_output(object.__new__(Weather)).startswith('"<')

    def test_toolset(self) -> None:
        async def a() -> None: ...

        async def b() -> None: ...

        tools = ToolSet([a, tool(b)])
        assert len(tools) == 2
        assert "a" in tools
        assert [t.name for t in tools] == ["a", "b"]
        assert [d.name for d in tools.definitions] == ["a", "b"]


@pytest.mark.parametrize("name", ["météo", "x" * 65, "has space", "dot.name"])
def test_tool_names_providers_refuse_are_config_errors(name: str) -> None:
    async def f() -> None: ...

    with pytest.raises(ConfigError, match="1 to 64 ASCII"):
        Tool(f, name=name)
