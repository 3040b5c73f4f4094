"""A tool's argument model and JSON schema, built once from its signature and docstring.

Parameter descriptions come from the docstring (Google, NumPy or Sphinx style, read by
`docstring_parser`). A parameter annotated `RunContext` is injected, not shown to the
model. The argument model forbids unknown fields, so a hallucinated argument is an
error the model sees, not something silently dropped.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from tether.errors import ConfigError
from tether.tools.context import RunContext

__all__ = ["ToolSignature", "read_signature"]


@dataclass(slots=True, frozen=True)
class ToolSignature:
    """What tether learned from a function once, at decoration time."""

    description: str
    args_model: type[BaseModel]
    parameters: dict[str, Any]
    """The JSON schema of the arguments, as sent to the model."""
    context_param: str | None
    """Name of the injected `RunContext` parameter, if any."""
    positional_only: tuple[str, ...]
    renamed: dict[str, str] = field(default_factory=dict)
    """Argument-model field name -> parameter name, for parameters pydantic cannot use
    as field names (`_from`, `json`, `model_config`); the model sees the parameter name."""


def _field_name_unusable(name: str) -> bool:
    # pydantic refuses leading underscores and `model_dump`, and silently drops a field
    # named `model_config`; names of other BaseModel members only warn, but shadow them.
    return name.startswith("_") or hasattr(BaseModel, name)


def _user_alias(annotation: Any) -> str | None:
    if typing.get_origin(annotation) is not typing.Annotated:
        return None
    aliases = [m.alias for m in annotation.__metadata__ if isinstance(m, FieldInfo) and m.alias]
    return aliases[-1] if aliases else None


def _is_context(annotation: Any) -> bool:
    return annotation is RunContext or typing.get_origin(annotation) is RunContext


def _described(function: Callable[..., Any]) -> Any:
    """The function whose annotations and docstring describe `function`'s parameters:
    the wrapped function of a `functools.partial`, `__call__` of a callable object."""
    while isinstance(function, functools.partial):
        function = function.func
    if not inspect.isroutine(function) and not inspect.isclass(function):
        return type(function).__call__
    return function


def _description(doc: docstring_parser.Docstring) -> str:
    parts = [p for p in (doc.short_description, doc.long_description) if p]
    return "\n\n".join(parts).strip()


def read_signature(
    function: Callable[..., Any], name: str, *, skip_first: bool = False
) -> ToolSignature:
    """Build the argument model and JSON schema of `function` (once per tool)."""
    described = _described(function)
    try:
        signature = inspect.signature(function)
        hints = typing.get_type_hints(described, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise ConfigError(
            f"cannot read the signature of tool {name!r}: {exc}. Tools need type hints "
            "that resolve at decoration time."
        ) from exc

    doc = docstring_parser.parse(inspect.getdoc(described) or inspect.getdoc(function) or "")
    param_docs = {p.arg_name: (p.description or "").strip() for p in doc.params}

    fields: dict[str, Any] = {}
    context_param: str | None = None
    positional_only: list[str] = []
    renamed: dict[str, str] = {}
    params = list(signature.parameters.values())
    if skip_first and params:
        params = params[1:]
    for param in params:
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ConfigError(
                f"tool {name!r} takes *{param.name}; a tool's parameters must be named so "
                "the model can be told about them. Replace it with named parameters."
            )
        annotation = hints.get(param.name, Any)
        if _is_context(annotation):
            if context_param is not None:
                raise ConfigError(f"tool {name!r} declares two RunContext parameters")
            context_param = param.name
            continue
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            positional_only.append(param.name)
        extra: dict[str, Any] = {}
        if param_docs.get(param.name):  # else keep a description given in Annotated[..., Field]
            extra["description"] = param_docs[param.name]
        field_name = param.name
        if _field_name_unusable(param.name):
            field_name = "arg_" + param.name.lstrip("_")
            while field_name in signature.parameters or field_name in fields:
                field_name += "_"
            renamed[field_name] = param.name
            extra["alias"] = _user_alias(annotation) or param.name
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[field_name] = (annotation, Field(default, **extra))

    model_name = "".join(part.capitalize() for part in name.split("_")) + "Args"
    try:
        args_model = create_model(
            model_name,
            __config__=ConfigDict(
                extra="forbid", arbitrary_types_allowed=False, protected_namespaces=()
            ),
            **fields,
        )
        parameters = args_model.model_json_schema()
    except Exception as exc:  # pydantic raises several types for unusable annotations
        raise ConfigError(
            f"tool {name!r} has a parameter type pydantic cannot describe as JSON schema: {exc}"
        ) from exc
    parameters.pop("title", None)
    for prop in parameters.get("properties", {}).values():
        prop.pop("title", None)
    parameters.setdefault("properties", {})
    return ToolSignature(
        description=_description(doc),
        args_model=args_model,
        parameters=parameters,
        context_param=context_param,
        positional_only=tuple(positional_only),
        renamed=renamed,
    )
