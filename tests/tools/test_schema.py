"""Tool schemas from signatures and docstrings."""

from __future__ import annotations

import enum
from datetime import date
from typing import Annotated, Literal, Optional

import jsonschema
import pytest
from pydantic import BaseModel, Field

from tether import RunContext, tool
from tether.errors import ToolArgumentsInvalid
from tether.messages import ToolCall


def params(t: object) -> dict:  # type: ignore[type-arg]
    return t.definition.parameters  # type: ignore[attr-defined,no-any-return]


class TestDocstrings:
    def test_google(self) -> None:
        @tool
        def search(query: str, limit: int = 10) -> list[str]:
            """Search the catalogue.

            Results are sorted by relevance.

            Args:
                query: Words to look for.
                limit: At most this many results,
                    counted after filtering.

            Returns:
                Matching titles.
            """
            return []

        assert search.definition.description == (
            "Search the catalogue.\n\nResults are sorted by relevance."
        )
        props = params(search)["properties"]
        assert props["query"]["description"] == "Words to look for."
        assert props["limit"]["description"] == (
            "At most this many results,\ncounted after filtering."
        )

    def test_numpy(self) -> None:
        @tool
        def search(query: str, limit: int = 10) -> list[str]:
            """Search the catalogue.

            Parameters
            ----------
            query : str
                Words to look for.
            limit : int, optional
                At most this many results.

            Returns
            -------
            list of str
            """
            return []

        assert search.definition.description == "Search the catalogue."
        props = params(search)["properties"]
        assert props["query"]["description"] == "Words to look for."
        assert props["limit"]["description"] == "At most this many results."

    def test_sphinx(self) -> None:
        @tool
        def search(query: str, limit: int = 10) -> list[str]:
            """Search the catalogue.

            :param query: Words to look for.
            :param limit: At most this many results.
            :returns: Matching titles.
            """
            return []

        assert search.definition.description == "Search the catalogue."
        props = params(search)["properties"]
        assert props["query"]["description"] == "Words to look for."
        assert props["limit"]["description"] == "At most this many results."

    def test_no_docstring(self) -> None:
        @tool
        def bare(x: int) -> int:
            return x

        assert bare.definition.description == ""
        assert params(bare)["properties"] == {"x": {"type": "integer"}}

    def test_description_override_keeps_parameter_docs(self) -> None:
        @tool(description="Override.")
        def f(x: int) -> int:
            """Original.

            Args:
                x: The x.
            """
            return x

        assert f.definition.description == "Override."
        assert params(f)["properties"]["x"]["description"] == "The x."


class Address(BaseModel):
    """A postal address."""

    street: str
    city: str = Field("Oslo", description="City name")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class TestTypes:
    def test_defaults_and_required(self) -> None:
        @tool
        def f(a: int, b: str = "x", c: float = 1.5, d: bool = False) -> None: ...

        schema = params(f)
        assert schema["required"] == ["a"]
        assert schema["properties"] == {
            "a": {"type": "integer"},
            "b": {"type": "string", "default": "x"},
            "c": {"type": "number", "default": 1.5},
            "d": {"type": "boolean", "default": False},
        }
        assert schema["additionalProperties"] is False
        assert schema["type"] == "object"
        assert "title" not in schema

    def test_optional(self) -> None:
        @tool
        def f(a: Optional[int] = None, b: str | None = None) -> None: ...  # noqa: UP045

        props = params(f)["properties"]
        assert props["a"] == {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
        assert props["b"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}
        assert "required" not in params(f)

    def test_literal_and_enum(self) -> None:
        @tool
        def f(unit: Literal["c", "f"], color: Color = Color.RED) -> None: ...

        schema = params(f)
        assert schema["properties"]["unit"] == {"enum": ["c", "f"], "type": "string"}
        assert schema["properties"]["color"]["$ref"] == "#/$defs/Color"
        assert schema["$defs"]["Color"]["enum"] == ["red", "blue"]

    def test_nested_model(self) -> None:
        @tool
        def ship(to: Address, items: list[str], when: date | None = None) -> None: ...

        schema = params(ship)
        assert schema["properties"]["to"] == {"$ref": "#/$defs/Address"}
        address = schema["$defs"]["Address"]
        assert address["required"] == ["street"]
        assert address["properties"]["city"]["description"] == "City name"
        assert schema["properties"]["items"] == {"type": "array", "items": {"type": "string"}}

        arguments = ship.validate(
            ToolCall(
                id="1",
                name="ship",
                arguments={"to": {"street": "1 Main St", "city": "Oslo"}, "items": ["a"]},
            )
        )
        assert arguments["to"] == Address(street="1 Main St", city="Oslo")
        assert arguments["when"] is None

    def test_nested_model_is_validated(self) -> None:
        @tool
        def ship(to: Address) -> None: ...

        with pytest.raises(ToolArgumentsInvalid, match=r"to\.street: Field required"):
            ship.validate(ToolCall(id="1", name="ship", arguments={"to": {"city": "Oslo"}}))

    def test_annotated_field_constraints(self) -> None:
        @tool
        def f(n: Annotated[int, Field(ge=1, le=5, description="From the annotation")]) -> None:
            """Doc.

            Args:
                n: From the docstring.
            """

        prop = params(f)["properties"]["n"]
        assert prop["minimum"] == 1
        assert prop["maximum"] == 5
        with pytest.raises(ToolArgumentsInvalid, match="less than or equal to 5"):
            f.validate(ToolCall(id="1", name="f", arguments={"n": 9}))

    def test_context_is_left_out(self) -> None:
        @tool
        def f(ctx: RunContext[None], x: int) -> None: ...

        @tool
        def g(x: int, context: RunContext) -> None: ...  # type: ignore[type-arg]

        assert params(f)["properties"] == {"x": {"type": "integer"}}
        assert params(g)["properties"] == {"x": {"type": "integer"}}
        assert f.signature.context_param == "ctx"
        assert g.signature.context_param == "context"

    def test_no_parameters(self) -> None:
        @tool
        def now() -> str:
            return "now"

        assert params(now) == {"type": "object", "properties": {}, "additionalProperties": False}

    @pytest.mark.parametrize(
        "arguments",
        [
            {"to": {"street": "s"}, "items": [], "when": "2025-01-02"},
            {"to": {"street": "s", "city": "c"}, "items": ["x", "y"]},
        ],
    )
    def test_schema_is_valid_json_schema_that_accepts_what_validates(self, arguments: dict) -> None:  # type: ignore[type-arg]
        @tool
        def ship(to: Address, items: list[str], when: date | None = None) -> None: ...

        schema = params(ship)
        jsonschema.Draft202012Validator.check_schema(schema)
        jsonschema.validate(arguments, schema)
        validated = ship.validate(ToolCall(id="1", name="ship", arguments=arguments))
        assert set(validated) == {"to", "items", "when"}

    def test_positional_only_parameters_are_passed_positionally(self) -> None:
        calls: list[tuple[int, int]] = []

        @tool
        def f(a: int, /, b: int) -> None:
            calls.append((a, b))

        assert f.signature.positional_only == ("a",)
        assert set(params(f)["properties"]) == {"a", "b"}
