"""Properties of tool argument validation, with hypothesis.

- Arguments built from a tool's own parameter types always validate, and the function
  receives exactly them (defaults for the ones left out); the generated JSON schema
  accepts them too.
- Whatever the model sends (JSON garbage, wrong types, invented keys, broken or deeply
  nested JSON text) `Tool.validate` either returns arguments or raises
  `ToolArgumentsInvalid`; it never raises anything else.
- Through a whole `Agent` run, a bad call becomes a tool result with status `error` that
  the model sees in its next request, and the run still completes.
"""

from __future__ import annotations

import asyncio
import json
import re
import types
import typing
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from tests.tools.json_values import as_json, same
from tether import Agent, RunContext, Tool, tool
from tether.errors import ToolArgumentsInvalid
from tether.messages import ToolCall, ToolResult
from tether.testing import ScriptedModel, call, reply
from tether.tools import OutputTool

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- tools with assorted signatures ---------------------------------------------------------


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str
    qty: int = 1
    tags: list[str] = Field(default_factory=list)


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    street: str
    city: str
    zip_code: str | None = None


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item]
    address: Address | None = None
    gift: bool = False


@tool
def scalars(
    count: int,
    ratio: float,
    flag: bool,
    name: str,
    mode: Literal["fast", "slow"] = "fast",
    level: Literal[1, 2, 3] = 2,
    limit: int | None = None,
) -> dict[str, Any]:
    """Scalars of every kind.

    Args:
        count: How many.
        ratio: A fraction.
        flag: On or off.
        name: A label.
        mode: How to go.
        level: How hard.
        limit: An optional cap.
    """
    return {**locals()}


@tool
def collections(
    tags: list[str],
    scores: dict[str, float],
    matrix: list[list[int]] | None = None,
    pair: tuple[int, str] | None = None,
    anything: Any = None,
) -> dict[str, Any]:
    """Containers."""
    return {**locals()}


@tool
async def place_order(
    ctx: RunContext[None], order: Order, priority: Literal["low", "high"] = "low"
) -> dict[str, Any]:
    """Nested models, a context parameter, an async function."""
    return {"order": order, "priority": priority}


@tool
def positional(a: int, b: str = "b", /, *, c: bool = False, d: float = 0.5) -> dict[str, Any]:
    """Positional-only and keyword-only parameters."""
    return {"a": a, "b": b, "c": c, "d": d}


@tool
def aliased(
    _from: str,
    content_type: Annotated[str, Field(alias="Content-Type")] = "application/json",
    schema: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Names pydantic reserves, and an alias."""
    return {**locals()}


TOOLS = [scalars, collections, place_order, positional, aliased]


# --- strategies from types ------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def for_type(annotation: Any) -> st.SearchStrategy[Any]:
    """JSON data valid for `annotation`, as a model would send it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return json_values
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(-(2**53), 2**53)
    if annotation is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if annotation is str:
        return st.text(max_size=30)
    if origin is Literal:
        return st.sampled_from(args)
    if origin is Annotated:
        return for_type(args[0])
    if origin in (typing.Union, types.UnionType):
        return st.one_of([for_type(a) for a in args])
    if annotation is type(None):
        return st.none()
    if origin is list:
        return st.lists(for_type(args[0]), max_size=4)
    if origin is tuple:
        return st.tuples(*(for_type(a) for a in args)).map(list)
    if origin is dict:
        return st.dictionaries(st.text(max_size=10), for_type(args[1]), max_size=4)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _for_fields(
            {
                (f.alias or n): (f.annotation, f.is_required())
                for n, f in annotation.model_fields.items()
            }
        )
    raise NotImplementedError(annotation)


def _for_fields(fields: dict[str, tuple[Any, bool]]) -> st.SearchStrategy[dict[str, Any]]:
    required = {n: for_type(a) for n, (a, needed) in fields.items() if needed}
    optional = {n: for_type(a) for n, (a, needed) in fields.items() if not needed}
    return st.fixed_dictionaries(required, optional=optional)


def for_tool(tool_: Tool) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for `tool_`, built from its argument model's fields (by their JSON names)."""
    model = tool_.signature.args_model
    return _for_fields(
        {(f.alias or n): (f.annotation, f.is_required()) for n, f in model.model_fields.items()}
    )


def _json_name(tool_: Tool, python_name: str) -> str:
    field = tool_.signature.args_model.model_fields.get(python_name)
    renamed = {v: k for k, v in tool_.signature.renamed.items()}
    if field is None:
        field = tool_.signature.args_model.model_fields[renamed[python_name]]
    return field.alias or python_name


def _defaults(tool_: Tool) -> dict[str, Any]:
    return {
        _json_name(tool_, name): field.get_default(call_default_factory=True)
        for name, field in tool_.signature.args_model.model_fields.items()
        if not field.is_required()
    }


def _call(tool_: Tool, arguments: Any) -> ToolCall:
    return ToolCall(id="call_1", name=tool_.name, arguments=arguments)


def _names_field(message: str, name: str) -> bool:
    return re.search(rf"(?:: |; ){re.escape(name)}[:.]", message) is not None


# --- (a) valid arguments --------------------------------------------------------------------


@pytest.mark.parametrize("tool_", TOOLS, ids=lambda t: t.name)
@SETTINGS
@given(data=st.data())
def test_arguments_built_from_the_types_validate_and_reach_the_function(
    tool_: Tool, data: st.DataObject
) -> None:
    arguments = data.draw(for_tool(tool_))
    encoding = data.draw(st.sampled_from(["json", "object"]))
    sent = json.dumps(arguments) if encoding == "json" else arguments
    jsonschema.validate(arguments, tool_.definition.parameters)  # the schema agrees

    validated = tool_.validate(_call(tool_, sent))

    received = asyncio.run(tool_.execute(dict(validated), None))
    received.pop("ctx", None)
    got = {_json_name(tool_, k): as_json(v) for k, v in received.items()}
    want = {**_defaults(tool_), **arguments}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert same(got[key], as_json(value)), f"{key}: sent {value!r}, received {got[key]!r}"


# --- (b) anything else ----------------------------------------------------------------------


def _validate_or_refuse(tool_: Tool, arguments: Any) -> ToolArgumentsInvalid | None:
    """Validate; only `ToolArgumentsInvalid` may come out (anything else fails the test)."""
    refused: ToolArgumentsInvalid | None = None
    try:
        result = tool_.validate(_call(tool_, arguments))
    except ToolArgumentsInvalid as exc:
        refused = exc
    if refused is None:
        assert isinstance(result, dict)
    else:
        assert refused.tool == tool_.name
        assert str(refused).startswith(("invalid arguments for tool", "the arguments for tool"))
    return refused


malformed_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet='{}[]":,0123456789.eE+-tfnrul \\', max_size=60),
    json_values.map(json.dumps),  # valid JSON, most of it not an object
    st.integers(1, 60_000).map(lambda depth: '{"a": ' + "[" * depth),
    st.integers(1, 60_000).map(lambda depth: "[" * depth + "]" * depth),
)


@pytest.mark.parametrize("tool_", TOOLS, ids=lambda t: t.name)
@SETTINGS
@given(raw=malformed_text)
def test_any_text_is_validated_or_refused(tool_: Tool, raw: str) -> None:
    refused = _validate_or_refuse(tool_, raw)
    assert refused is None or isinstance(refused, ToolArgumentsInvalid)


@pytest.mark.parametrize("tool_", TOOLS, ids=lambda t: t.name)
@SETTINGS
@given(data=st.data())
def test_a_valid_call_cut_short_is_refused(tool_: Tool, data: st.DataObject) -> None:
    text = json.dumps(data.draw(for_tool(tool_)))
    cut = data.draw(st.integers(0, len(text) - 1))
    if text[:cut].strip():  # an empty string means "no arguments", which may be valid
        assert _validate_or_refuse(tool_, text[:cut]) is not None


@pytest.mark.parametrize("tool_", TOOLS, ids=lambda t: t.name)
@SETTINGS
@given(garbage=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_any_json_object_is_validated_or_refused(tool_: Tool, garbage: dict[str, Any]) -> None:
    # An object (Anthropic-style) and the same object as JSON text (OpenAI-style) take
    # different validation paths; they must agree.
    as_object = _validate_or_refuse(tool_, garbage)
    as_text = _validate_or_refuse(tool_, json.dumps(garbage))
    assert (as_object is None) == (as_text is None), (as_object, as_text)


def _never_valid_for(annotation: Any) -> st.SearchStrategy[Any]:
    """JSON values that no lax coercion turns into `annotation`."""
    if annotation is Any:
        return st.nothing()
    objects = st.dictionaries(st.text(max_size=5), json_scalars, min_size=1, max_size=3)
    containers = st.lists(json_scalars, min_size=1, max_size=3) | objects
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _never_valid_for(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):  # X | None
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _never_valid_for(inner)
    if origin in (list, tuple):
        return objects | st.integers() | st.booleans()
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return st.lists(json_scalars, max_size=3) | st.integers() | st.text(max_size=5)
    return containers  # a scalar or a Literal


@pytest.mark.parametrize("tool_", TOOLS, ids=lambda t: t.name)
@SETTINGS
@given(data=st.data())
def test_a_wrong_type_is_refused_naming_the_field(tool_: Tool, data: st.DataObject) -> None:
    arguments = data.draw(for_tool(tool_))
    fields = tool_.signature.args_model.model_fields
    candidates = [
        (f.alias or n, f.annotation) for n, f in fields.items() if f.annotation is not Any
    ]
    name, annotation = data.draw(st.sampled_from(candidates))
    arguments[name] = data.draw(_never_valid_for(annotation))

    refused = _validate_or_refuse(tool_, json.dumps(arguments))

    assert refused is not None, f"{name} accepted {arguments[name]!r}"
    assert _names_field(str(refused), name), str(refused)


@pytest.mark.parametrize("tool_", TOOLS, ids=lambda t: t.name)
@SETTINGS
@given(data=st.data())
def test_an_invented_argument_is_refused_naming_it(tool_: Tool, data: st.DataObject) -> None:
    arguments = data.draw(for_tool(tool_))
    known = set(tool_.definition.parameters["properties"])
    invented = data.draw(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
            lambda n: n not in known
        )
    )
    arguments[invented] = data.draw(json_values)

    refused = _validate_or_refuse(tool_, arguments)

    assert refused is not None
    assert _names_field(str(refused), invented), str(refused)
    assert "Extra inputs are not permitted" in str(refused)


def test_missing_required_arguments_are_each_named() -> None:
    with pytest.raises(ToolArgumentsInvalid) as caught:
        scalars.validate(_call(scalars, "{}"))
    for name in ("count", "ratio", "flag", "name"):
        assert _names_field(str(caught.value), f"{name}"), str(caught.value)
    assert not _names_field(str(caught.value), "mode")


@SETTINGS
@given(text=malformed_text | json_values.map(json.dumps))
def test_output_validation_of_any_text_never_crashes(text: str) -> None:
    for output in (OutputTool(Order), OutputTool(list[int])):
        call = ToolCall(id="c", name="final_result", arguments=text)
        for outcome in (_outcome(output.validate_text, text), _outcome(output.validate_call, call)):
            if isinstance(outcome, ToolArgumentsInvalid):
                assert outcome.tool == "final_result"
            else:
                assert isinstance(outcome, Order | list)


def _outcome(validate: Any, value: Any) -> Any:
    """The validated value, or the `ToolArgumentsInvalid` it raised (nothing else may)."""
    try:
        return validate(value)
    except ToolArgumentsInvalid as exc:
        return exc


# --- (c) through a whole run ----------------------------------------------------------------


def _tool_results(result: Any) -> list[ToolResult]:
    return [m for m in result.messages if isinstance(m, ToolResult)]


async def test_a_bad_call_becomes_an_error_result_the_model_sees_and_corrects() -> None:
    received: list[dict[str, Any]] = []

    @tool
    def book(room: int, nights: int = 1) -> str:
        received.append({"room": room, "nights": nights})
        return f"booked {room}"

    model = ScriptedModel(
        [
            call("book", raw='{"room": 12, "nights": '),  # cut short
            call("book", room="twelve"),  # wrong type
            call("book", room=12, breakfast=True),  # invented argument
            call("book", room=12, nights=2),  # corrected
            reply("Booked room 12."),
        ]
    )

    result = await Agent(model=model, tools=[book]).run("Book room 12 for two nights")

    assert result.status == "completed"
    assert result.output == "Booked room 12."
    model.assert_complete()
    statuses = [r.status for r in _tool_results(result)]
    assert statuses == ["error", "error", "error", "ok"]
    assert received == [{"room": 12, "nights": 2}]  # only the valid call ran
    errors = [r.content for r in _tool_results(result)[:3]]
    assert "not a JSON object" in errors[0]
    assert _names_field(errors[1], "room")
    assert _names_field(errors[2], "breakfast")
    # Each error was in the conversation the model was sent next.
    for step, error in enumerate(errors, start=1):
        seen = [m for m in model.requests[step].messages if isinstance(m, ToolResult)]
        assert seen[-1].content == error
        assert seen[-1].status == "error"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=malformed_text | st.dictionaries(st.text(max_size=8), json_values).map(json.dumps))
def test_a_run_survives_any_arguments(raw: str) -> None:
    model = ScriptedModel([call("scalars", raw=raw), reply("done")])

    result = asyncio.run(Agent(model=model, tools=[scalars]).run("go"))

    assert result.status == "completed"
    assert result.output == "done"
    (tool_result,) = _tool_results(result)
    assert tool_result.status in ("ok", "error")
    (seen,) = [m for m in model.requests[1].messages if isinstance(m, ToolResult)]
    assert seen == tool_result
    if tool_result.status == "error":
        assert "scalars" in tool_result.content
