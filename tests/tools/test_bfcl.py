"""tether's tool schemas and argument validation against the Berkeley Function Calling
Leaderboard (BFCL v4, from `bfcl-eval==2026.3.23`, installed with `--no-deps` as data).

Every BFCL function definition of the Python categories becomes a real Python function
decorated with `tether.tool` (see `bfcl_data.py`), and then:

- the JSON schema tether generates is a valid Draft 2020-12 schema with BFCL's
  properties, required set, types, enums and descriptions (read back from the docstring);
- every ground-truth call that is valid under its own definition passes `Tool.validate`
  and `jsonschema` alike, and the tool receives exactly the ground-truth values; the few
  answers that contradict their own definitions are pinned below and must be refused by
  both, with an error naming the bad field;
- wrong-typed arguments, derived from the ground truth and from the irrelevance
  categories' definitions, are refused with `ToolArgumentsInvalid` naming the field.

Skipped categories, and why, are in `bfcl_data.SKIPPED_CATEGORIES` (Java and JavaScript
definitions describe another language's types and answer with its literals).
"""

from __future__ import annotations

import inspect
import json
import re
from collections import Counter
from typing import Annotated, Any

import jsonschema
import pytest
from pydantic import Field

from tests.tools.bfcl_data import (
    CATEGORIES,
    BfclCall,
    BfclFunction,
    data_dir,
    ground_truth_calls,
    load_entries,
    tools_for,
)
from tests.tools.json_values import as_json, same
from tether import Tool, tool
from tether.errors import ToolArgumentsInvalid
from tether.messages import ToolCall

INSTALL = "uv pip install --no-deps bfcl-eval==2026.3.23"
# Categories without answers, used for their definitions. live_irrelevance is left out:
# its 917 distinct definitions come from the same live sources as live_multiple's and
# would add about 4 s for no new kind of definition.
DEFINITION_ONLY = ("irrelevance", "live_relevance")

# category: (function definitions, ground-truth calls) in bfcl-eval 2026.3.23; pinned so
# the tests cannot pass on an empty or truncated data set.
EXPECTED_COUNTS = {
    "simple_python": (400, 400),
    "multiple": (557, 200),
    "parallel": (200, 540),
    "parallel_multiple": (520, 607),
    "live_simple": (258, 258),
    "live_multiple": (4178, 1053),
    "live_parallel": (18, 39),
    "live_parallel_multiple": (95, 55),
    "irrelevance": (240, 0),
    "live_relevance": (44, 0),
}

# Ground-truth calls that break their own function definition. tether and jsonschema
# must both refuse them, and tether's message must name the field.
# entry id -> (field named in the error, what is wrong in the BFCL data)
KNOWN_BAD_ANSWERS = {
    "simple_python_200": ("fuel_efficiency", "required parameter listed as omittable"),
    "parallel_multiple_21": ("x", "an array parameter given a Python expression string"),
    "parallel_multiple_26": ("type", "a parameter the definition does not have"),
    "parallel_multiple_94": ("elements", "strings in an integer array"),
    "live_simple_106-63-0": ("auto_loan_payment_start", "required parameter omittable"),
    "live_simple_112-68-0": ("acc_routing_start", "required parameter with no value"),
    "live_multiple_87-38-4": ("type", "'openai' is not in the enum"),
    "live_multiple_144-56-0": ("perPage", "required parameter listed as omittable"),
    "live_multiple_189-83-0": ("data", "keys the nested object does not declare"),
    "live_multiple_507-149-4": ("origin_airport", "required parameter omittable"),
    "live_multiple_552-153-1": ("is_unisex", "true for the enum 'True'/'False'/'dontcare'"),
    "live_multiple_595-158-1": ("number_of_rooms", "2 for the enum '1'/'2'/'3'/'dontcare'"),
    "live_multiple_596-158-2": ("number_of_rooms", "1 for the enum '1'/'2'/'3'/'dontcare'"),
    "live_multiple_731-167-2": ("in_unit_laundry", "true for a string enum"),
    "live_multiple_733-167-4": ("in_unit_laundry", "true for a string enum"),
    "live_multiple_735-167-6": ("in_unit_laundry", "true for a string enum"),
    "live_multiple_750-169-5": ("genre", "'Any' is not in the enum"),
    "live_multiple_756-169-11": ("genre", "'horror' (lower case) is not in the enum"),
    "live_multiple_834-178-9": ("track", "required parameter listed as omittable"),
    "live_multiple_835-178-10": ("genre", "'Reggaeton' is not in the enum"),
    "live_multiple_862-181-3": ("journey_start_time", "a parameter the definition lacks"),
    "live_multiple_871-182-8": ("genre", "'Play' is not in the enum"),
    "live_multiple_947-197-0": ("duration", "'5 minutes' is not in the enum"),
    "live_multiple_964-207-0": ("statement", "required 'statement' given as 'question'"),
    "live_parallel_multiple_2-2-0": ("command", "a command that is not in the enum"),
}

_META = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
_JSON_TYPES = {
    "string": "string",
    "integer": "integer",
    "float": "number",
    "boolean": "boolean",
    "array": "array",
    "tuple": "array",
    "dict": "object",
}


needs_bfcl = pytest.mark.skipif(
    data_dir() is None, reason=f"bfcl-eval is not installed; run `{INSTALL}`"
)


def _entries(category: str) -> list[dict[str, Any]]:
    return _ENTRIES.setdefault(category, load_entries(category))


_ENTRIES: dict[str, list[dict[str, Any]]] = {}


def _validator(function: BfclFunction) -> jsonschema.Draft202012Validator:
    key = id(function)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = jsonschema.Draft202012Validator(function.tool.definition.parameters)
    return _VALIDATORS[key]


_VALIDATORS: dict[int, jsonschema.Draft202012Validator] = {}


def _names_field(message: str, name: str) -> bool:
    """Whether tether's error message reports a problem at `name` (or inside it)."""
    return re.search(rf"(?:: |; ){re.escape(name)}[:.]", message) is not None


# --- comparing values -------------------------------------------------------------------


# --- schemas --------------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    assert ref.startswith("#/$defs/"), ref
    return _resolve(root["$defs"][ref.removeprefix("#/$defs/")], root)


def _variants(schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a property schema (`T | None` is `anyOf [T, null]`)."""
    schema = _resolve(schema, root)
    options = schema.get("anyOf", [schema])
    return [_resolve(o, root) for o in options if o.get("type") != "null"]


def _flat(text: str) -> str:
    return " ".join(text.split())


def check_property(name: str, bfcl: dict[str, Any], schema: dict[str, Any], root: Any) -> None:
    """One property of tether's schema says what the BFCL definition says."""
    where = f"{name}: tether {json.dumps(schema)[:300]} for BFCL {json.dumps(bfcl)[:300]}"
    assert _flat(schema.get("description", "")) == _flat(bfcl.get("description", "")), where
    (variant,) = _variants(schema, root)
    kind, enum = bfcl.get("type"), bfcl.get("enum")
    if kind in ("array", "tuple"):
        assert variant.get("type") == "array", where
        items = _resolve(variant.get("items", {}), root)
        if enum:
            assert items.get("enum") == enum or [items.get("const")] == enum, where
        elif "items" in bfcl:
            check_property(f"{name}[]", {**bfcl["items"], "description": ""}, items, root)
    elif enum:
        assert variant.get("enum", [variant.get("const")]) == enum, where
    elif kind == "any" or (kind == "dict" and not bfcl.get("properties")):
        assert variant.get("type") in (None, "object"), where
    else:
        assert variant.get("type") == _JSON_TYPES[kind], where
    if kind == "dict" and bfcl.get("properties"):
        check_object(bfcl, variant, root, nested=True)


def check_object(bfcl: dict[str, Any], schema: dict[str, Any], root: Any, nested: bool) -> None:
    properties = bfcl.get("properties", {})
    assert set(schema.get("properties", {})) == set(properties)
    required = set(bfcl.get("required", ())) if not nested or "required" in bfcl else set()
    assert set(schema.get("required", ())) == required
    assert schema.get("additionalProperties") is False  # hallucinated arguments are refused
    for name, sub in properties.items():
        check_property(name, sub, schema["properties"][name], root)


_CHECKED: set[int] = set()
_META_CHECKED: set[str] = set()


def _without_descriptions(schema: Any) -> Any:
    """`schema` with its string descriptions emptied: whether a schema is valid does not
    depend on a description's text (one that is not a string is kept, so its shape is
    checked), and checking each distinct shape once against the 2020-12 meta-schema saves
    a third of the time."""
    if isinstance(schema, list):
        return [_without_descriptions(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "description" and isinstance(value, str):
            out[key] = ""
        elif key in ("default", "enum", "const", "examples"):
            out[key] = value  # values, not schemas
        else:
            out[key] = _without_descriptions(value)
    return out


@needs_bfcl
@pytest.mark.parametrize("category", [*CATEGORIES, *DEFINITION_ONLY])
def test_definitions_become_valid_matching_schemas(category: str) -> None:
    functions = 0
    for entry in _entries(category):
        for name, function in tools_for(entry).items():
            functions += 1
            if id(function) in _CHECKED:  # the same definition in another entry
                continue
            _CHECKED.add(id(function))
            definition = function.tool.definition
            parameters = definition.parameters
            shape = json.dumps(_without_descriptions(parameters), sort_keys=True)
            if shape not in _META_CHECKED:
                errors = list(_META.iter_errors(parameters))
                assert not errors, f"{entry['id']} {name}: {errors[0].message}"
                _META_CHECKED.add(shape)
            assert parameters["type"] == "object"
            assert _flat(definition.description) == _flat(function.spec.get("description", ""))
            check_object(function.spec["parameters"], parameters, parameters, nested=False)
    assert functions == EXPECTED_COUNTS[category][0]


# --- ground truth ---------------------------------------------------------------------------


def _calls(category: str) -> list[BfclCall]:
    return [c for e in _entries(category) for c in ground_truth_calls(e, tools_for(e))]


def _validate(
    tool_: Tool, call: ToolCall
) -> tuple[dict[str, Any], None] | tuple[None, ToolArgumentsInvalid]:
    try:
        return tool_.validate(call), None
    except ToolArgumentsInvalid as exc:
        return None, exc


def _python_arguments(call: BfclCall) -> dict[str, Any]:
    return {call.function.python_names[k]: v for k, v in call.arguments.items()}


@needs_bfcl
@pytest.mark.parametrize("category", CATEGORIES)
async def test_ground_truth_calls_validate_and_reach_the_tool(category: str) -> None:
    accepted = refused_calls = 0
    refused: set[str] = set()
    for call in _calls(category):
        tool_ = call.function.tool
        schema_errors = list(_validator(call.function).iter_errors(call.arguments))
        as_text = ToolCall(id="c", name=tool_.name, arguments=json.dumps(call.arguments))
        validated, error = _validate(tool_, as_text)
        if error is not None:
            refused.add(call.entry_id)
            refused_calls += 1
            assert call.entry_id in KNOWN_BAD_ANSWERS, f"{call.entry_id}: {error}"
            assert schema_errors, f"{call.entry_id}: jsonschema accepts what tether refuses"
            assert _names_field(str(error), KNOWN_BAD_ANSWERS[call.entry_id][0]), str(error)
            assert error.tool == tool_.name
            continue
        assert not schema_errors, f"{call.entry_id}: tether accepts what its schema refuses"
        accepted += 1
        # Anthropic-style object arguments validate the same way.
        as_object = ToolCall(id="c", name=tool_.name, arguments=call.arguments)
        from_object, object_error = _validate(tool_, as_object)
        assert object_error is None, f"{call.entry_id}: {object_error}"
        assert from_object == validated, call.entry_id
        as_object = ToolCall(id="c", name=tool_.name, arguments=call.arguments)
        assert tool_.validate(as_object).keys() == validated.keys()

        python_arguments = _python_arguments(call)
        defaults = inspect.signature(tool_.function).parameters
        assert validated.keys() == defaults.keys()
        for python_name, value in validated.items():
            if python_name in python_arguments:
                want = python_arguments[python_name]
                assert same(as_json(value), want), f"{call.entry_id} {python_name}: {value!r}"
            else:
                assert value == defaults[python_name].default, f"{call.entry_id} {python_name}"

        received = await tool_.execute(dict(validated), None)
        assert received.keys() == validated.keys()
        assert all(received[k] is validated[k] for k in validated)

    expected_bad = {i for i in KNOWN_BAD_ANSWERS if i.rsplit("_", 1)[0] == category}
    assert refused == expected_bad
    assert accepted + refused_calls == EXPECTED_COUNTS[category][1]


@needs_bfcl
def test_reserved_parameter_names_in_bfcl_reach_the_tool() -> None:
    """BFCL uses `_from`, `_class`, `dict` and `schema` as parameter names (keywords
    dodged with an underscore); pydantic cannot take them as field names as they are."""
    seen: Counter[str] = Counter()
    for category in CATEGORIES:
        for call in _calls(category):
            if call.entry_id in KNOWN_BAD_ANSWERS:
                continue
            for name in call.arguments.keys() & {"_from", "_class", "dict", "schema"}:
                validated = call.function.tool.validate(
                    ToolCall(id="c", name=call.function.tool.name, arguments=call.arguments)
                )
                assert same(as_json(validated[name]), call.arguments[name])
                seen[name] += 1
    assert seen["_from"] >= 10
    assert seen["_class"] >= 5


# --- wrong types ----------------------------------------------------------------------------


def wrong_value(bfcl: dict[str, Any]) -> Any:
    """A value of the wrong type (or outside the enum) for one BFCL parameter; None for
    `any`, where nothing is wrong."""
    kind, enum = bfcl.get("type"), bfcl.get("enum")
    if kind == "any":
        return None
    if kind in ("array", "tuple", "dict"):
        return 42
    if enum:
        return "__not_one_of_the_options__" if isinstance(enum[0], str) else 987654321
    return {"string": 12345, "boolean": "not a boolean"}.get(kind, "not a number")


def _assert_refused(function: BfclFunction, arguments: dict[str, Any], bad: list[str]) -> None:
    tool_ = function.tool
    with pytest.raises(ToolArgumentsInvalid) as caught:
        tool_.validate(ToolCall(id="c", name=tool_.name, arguments=json.dumps(arguments)))
    message = str(caught.value)
    for name in bad:
        assert _names_field(message, name), f"{name} not named in: {message}"
    assert list(_validator(function).iter_errors(arguments)), "jsonschema accepts it"


@needs_bfcl
@pytest.mark.parametrize("category", CATEGORIES)
def test_wrong_typed_ground_truth_arguments_are_refused(category: str) -> None:
    mutated = 0
    done: set[tuple[int, str]] = set()
    for call in _calls(category):
        if call.entry_id in KNOWN_BAD_ANSWERS:
            continue
        properties = call.function.spec["parameters"]["properties"]
        for name in call.arguments:
            wrong = wrong_value(properties[name])
            if wrong is None or (id(call.function), name) in done:
                continue
            done.add((id(call.function), name))
            _assert_refused(call.function, {**call.arguments, name: wrong}, [name])
            mutated += 1
    assert mutated >= EXPECTED_COUNTS[category][1] // 2


@needs_bfcl
@pytest.mark.parametrize("category", DEFINITION_ONLY)
def test_irrelevance_definitions_refuse_wrong_and_missing_arguments(category: str) -> None:
    """The irrelevance categories have no answers; their definitions still must refuse an
    empty call (naming every required parameter), wrong types and invented arguments."""
    checked = 0
    for entry in _entries(category):
        for function in tools_for(entry).values():
            properties = function.spec["parameters"]["properties"]
            required = [n for n in function.spec["parameters"].get("required", ())]
            if required:
                _assert_refused(function, {}, required)
            wrong = {n: wrong_value(properties[n]) for n in properties}
            wrong = {n: v for n, v in wrong.items() if v is not None}
            if wrong:
                _assert_refused(function, wrong, list(wrong))
            _assert_refused(function, {"__invented__": 1}, ["__invented__"])
            checked += 1
    assert checked == EXPECTED_COUNTS[category][0]


# --- regressions found with BFCL ------------------------------------------------------------


class TestParameterNamesPydanticReserves:
    """Legal Python parameter names that pydantic refuses or shadows as field names."""

    @pytest.mark.parametrize(
        "name", ["_from", "_class", "_", "dict", "schema", "json", "model_config", "model_dump"]
    )
    async def test_name_is_kept_in_the_schema_and_reaches_the_function(self, name: str) -> None:
        namespace: dict[str, Any] = {}
        exec(
            f"def find({name}: int, arg_{name.lstrip('_')}: str = 'x') -> dict:\n"
            f"    '''Find.\n\n    Args:\n        {name}: The {name}.\n    '''\n"
            "    return {**locals()}\n",
            namespace,
        )
        find = tool(namespace["find"])
        parameters = find.definition.parameters
        assert list(parameters["properties"]) == [name, f"arg_{name.lstrip('_')}"]
        assert parameters["required"] == [name]
        assert parameters["properties"][name]["description"] == f"The {name}."
        arguments = find.validate(ToolCall(id="c", name="find", arguments={name: 3}))
        assert arguments == {name: 3, f"arg_{name.lstrip('_')}": "x"}
        assert await find.execute(arguments, None) == arguments
        with pytest.raises(ToolArgumentsInvalid, match=rf"{re.escape(name)}: Input should be"):
            find.validate(ToolCall(id="c", name="find", arguments={name: "three"}))

    def test_an_alias_on_an_underscored_name_is_honoured(self) -> None:
        @tool
        def search(_from: Annotated[str, Field(alias="from")]) -> str:
            return _from

        assert list(search.definition.parameters["properties"]) == ["from"]
        assert search.validate(ToolCall(id="c", name="search", arguments={"from": "a"})) == {
            "_from": "a"
        }

    def test_a_description_in_annotated_field_survives_without_a_docstring(self) -> None:
        @tool
        def get(key: Annotated[str, Field(description="The key to read.")]) -> str:
            return key

        assert get.definition.parameters["properties"]["key"]["description"] == ("The key to read.")

    def test_a_bad_non_ascii_value_is_shown_readably(self) -> None:
        @tool
        def control(command: Annotated[str, Field(pattern="^[a-z]+$")]) -> str:
            return command

        bad = ToolCall(id="c", name="control", arguments={"command": "침실, 공기청정기"})
        with pytest.raises(ToolArgumentsInvalid, match="침실, 공기청정기"):
            control.validate(bad)
