"""BFCL function definitions as real Python tools, and their ground-truth calls.

The Berkeley Function Calling Leaderboard ships as the PyPI package `bfcl-eval`, installed
without its (huge) dependencies purely for its data files: it is never imported, only
located. Each BFCL function definition becomes a real Python function, written as source
and `exec`-ed, with keyword-only parameters annotated from the BFCL types, defaults for the
optional ones and a Google-style docstring, then decorated with `tether.tool`, so the
whole path a user's function takes (signature, type hints, docstring) is exercised.

BFCL types map to Python as a user would write them:

    string, integer, float, boolean -> str, int, float, bool
    enum (any type)                 -> Literal[...]   (on an array: list[Literal[...]])
    array / tuple with items        -> list[T] / tuple[T, ...]
    dict with properties            -> a nested pydantic model (with its own `required`,
                                       else every key optional)
    dict without properties, any    -> dict[str, Any], Any
    optional with default None      -> T | None = None

A parameter name that is not a Python identifier (`Content-Type`) gets a Python name and
`Annotated[T, Field(alias="Content-Type")]`; names pydantic reserves (`_from`, `dict`,
`schema`) are used as they are: tether must cope with them.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import keyword
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

import tether
from tether import Tool

__all__ = [
    "CATEGORIES",
    "OMIT",
    "SKIPPED_CATEGORIES",
    "BfclCall",
    "BfclFunction",
    "data_dir",
    "ground_truth_calls",
    "load_entries",
    "make_tool",
    "tool_name",
    "tools_for",
]

CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
SKIPPED_CATEGORIES = {
    "simple_java": "Java signatures (String, HashMap, long, ...) with Java-literal answers",
    "simple_javascript": "JavaScript signatures with JavaScript-literal answers",
    "multi_turn_*": "stateful Python classes driven over turns, no per-call ground truth",
    "irrelevance, live_relevance": "no ground truth calls; used for their definitions and "
    "for wrong-argument tests only",
    "live_irrelevance": "no ground truth; 917 more distinct definitions from the same live "
    "sources as live_multiple, left out to keep the suite fast",
    "memory, web_search, format_sensitivity": "agentic categories without function schemas "
    "of their own",
}


def data_dir() -> Path | None:
    """Where `bfcl_eval/data` lies, found without importing `bfcl_eval`."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations))) / "data"
    return found if found.is_dir() else None


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def load_entries(category: str) -> list[dict[str, Any]]:
    """The entries of one category, each with its `ground_truth` (if the category has one)."""
    root = data_dir()
    assert root is not None, "bfcl-eval is not installed"
    entries = list(_json_lines(root / f"BFCL_v4_{category}.json"))
    answers_path = root / "possible_answer" / f"BFCL_v4_{category}.json"
    if answers_path.exists():
        answers = {a["id"]: a["ground_truth"] for a in _json_lines(answers_path)}
        for entry in entries:
            entry["ground_truth"] = answers[entry["id"]]
    return entries


# --- definitions to Python --------------------------------------------------------------


class Unsupported(Exception):
    """A BFCL definition uses a construct this converter does not map."""


@dataclass
class BfclFunction:
    """One BFCL definition and the tether tool built from it."""

    spec: dict[str, Any]
    tool: Tool
    python_names: dict[str, str]
    """BFCL parameter name -> Python parameter name (they differ for `Content-Type`)."""
    dropped_defaults: list[str] = field(default_factory=list)
    """Required parameters whose BFCL default a Python signature cannot keep."""

    @property
    def name(self) -> str:
        return str(self.spec["name"])


_SCALARS: dict[str, Any] = {"string": str, "integer": int, "float": float, "boolean": bool}


def _python_name(name: str, taken: set[str]) -> str:
    candidate = re.sub(r"\W", "_", name)
    if not candidate or candidate[0].isdigit():
        candidate = "p_" + candidate
    while keyword.iskeyword(candidate) or candidate in taken:
        candidate += "_"
    taken.add(candidate)
    return candidate


def _literal(values: list[Any]) -> Any:
    return Literal[tuple(values)]  # type: ignore[valid-type]


def annotation_for(spec: dict[str, Any], where: str) -> Any:
    """The Python type a user would write for one BFCL parameter schema."""
    kind = spec.get("type")
    enum = spec.get("enum")
    if kind in ("array", "tuple"):
        items = spec.get("items")
        if enum:  # BFCL puts the allowed item values on the array itself
            item: Any = _literal(enum)
        elif items is None:
            item = Any
        else:
            item = annotation_for(items, f"{where}[]")
        return list[item] if kind == "array" else tuple[item, ...]
    if enum:
        return _literal(enum)
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "any":
        return Any
    if kind == "dict":
        properties = spec.get("properties")
        if not properties:
            return dict[str, Any]
        return _nested_model(spec, where)
    raise Unsupported(f"{where}: BFCL type {kind!r}")


def _nested_model(spec: dict[str, Any], where: str) -> type[BaseModel]:
    properties: dict[str, Any] = spec["properties"]
    # A nested dict without its own `required` list declares no required keys.
    required = set(spec.get("required", ()))
    taken: set[str] = set()
    fields: dict[str, Any] = {}
    for name, sub in properties.items():
        python = _python_name(name, taken)
        if python.startswith("_") or hasattr(BaseModel, python):  # as a user would
            python = _python_name("field" + python, taken)
        annotation = annotation_for(sub, f"{where}.{name}")
        description = sub.get("description") or None
        if name in required:
            default: Any = ...
        else:
            default = sub.get("default")
            if default is None:
                annotation = annotation | None
        alias = name if python != name else None
        fields[python] = (annotation, Field(default, alias=alias, description=description))
    model_name = re.sub(r"\W", "_", where.title().replace(".", "_")) or "Nested"
    return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)


def _docstring(description: str, params: list[tuple[str, str]]) -> str:
    lines = [description.strip() or "(no description)"]
    documented = [(n, d.strip()) for n, d in params if d and d.strip()]
    if documented:
        lines += ["", "Args:"]
        for name, text in documented:
            first, *rest = text.splitlines() or [""]
            lines.append(f"    {name}: {first}")
            lines += [f"        {line}" if line.strip() else "" for line in rest]
    return "\n".join(lines) + "\n"


def tool_name(bfcl_name: str) -> str:
    """BFCL names like `math.factorial` as providers accept them (BFCL's own OpenAI
    handler replaces the dots the same way)."""
    return bfcl_name.replace(".", "_")


@functools.cache
def _build(canonical: str) -> BfclFunction:
    return make_tool(json.loads(canonical))


def tools_for(entry: dict[str, Any]) -> dict[str, BfclFunction]:
    """The tools of one entry by BFCL name; a definition shared by entries is built once."""
    return {f["name"]: _build(json.dumps(f, sort_keys=True)) for f in entry["function"]}


def make_tool(spec: dict[str, Any]) -> BfclFunction:
    """Write `spec` as a Python function, `exec` it, and decorate it with `tether.tool`."""
    parameters = spec["parameters"]
    properties: dict[str, Any] = parameters.get("properties", {})
    required = set(parameters.get("required", ()))
    namespace: dict[str, Any] = {"__name__": "bfcl_generated"}
    taken: set[str] = set()
    python_names: dict[str, str] = {}
    signature: list[str] = []
    dropped: list[str] = []
    docs: list[tuple[str, str]] = []
    for i, (name, sub) in enumerate(properties.items()):
        python = _python_name(name, taken)
        python_names[name] = python
        annotation = annotation_for(sub, f"{spec['name']}.{name}")
        if python != name:
            annotation = Annotated[annotation, Field(alias=name)]
        if name in required:
            if "default" in sub:
                dropped.append(name)
            default_source = ""
        else:
            default = sub.get("default")
            if default is None:
                annotation = annotation | None
            namespace[f"_bfcl_default_{i}"] = default
            default_source = f" = _bfcl_default_{i}"
        namespace[f"_bfcl_type_{i}"] = annotation
        signature.append(f"{python}: _bfcl_type_{i}{default_source}")
        docs.append((python, sub.get("description", "")))
    function_name = _python_name(tool_name(spec["name"]), set())
    params_source = ("*, " + ", ".join(signature)) if signature else ""
    # `{**locals()}`, not `dict(locals())`: BFCL has a parameter named `dict`.
    body = "    return {**locals()}\n"
    source = f"def {function_name}({params_source}) -> dict:\n" + body
    exec(compile(source, f"<bfcl {spec['name']}>", "exec"), namespace)
    function = namespace[function_name]
    function.__doc__ = _docstring(spec.get("description", ""), docs)
    built = tether.tool(name=tool_name(spec["name"]))(function)
    return BfclFunction(spec=spec, tool=built, python_names=python_names, dropped_defaults=dropped)


# --- ground truth -------------------------------------------------------------------------


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()


def pick(spec: dict[str, Any], acceptable: Any) -> Any:
    """The first acceptable value of a parameter, or OMIT when BFCL lists `""` first
    (the parameter may be left out). A few answers list no value at all
    (`live_simple_112-68-0`); that is read as "leave it out" too. Two levels down, some
    answers give the value itself, not a list (`live_multiple_121-46-0`)."""
    if not isinstance(acceptable, list):
        return acceptable
    if not acceptable:
        return OMIT
    first = acceptable[0]
    if isinstance(first, str) and first == "":
        return OMIT
    return concrete(spec, first)


def concrete(spec: dict[str, Any], value: Any) -> Any:
    """A ground-truth value, with BFCL's nested lists of acceptable values resolved: inside
    a dict-typed value, every key maps to its own list of acceptable values."""
    kind = spec.get("type")
    if kind == "dict" and isinstance(value, dict):
        properties = spec.get("properties") or {}
        out = {}
        for key, acceptable in value.items():
            chosen = pick(properties.get(key, {}), acceptable)
            if chosen is not OMIT:
                out[key] = chosen
        return out
    if kind in ("array", "tuple") and isinstance(value, list):
        items = spec.get("items", {})
        return [concrete(items, v) for v in value]
    return value


@dataclass
class BfclCall:
    """One ground-truth call: which function, and the concrete arguments."""

    entry_id: str
    function: BfclFunction
    arguments: dict[str, Any]
    omitted_required: list[str]
    """Required parameters the ground truth lets the model leave out (`""` listed first)."""


def ground_truth_calls(entry: dict[str, Any], tools: dict[str, BfclFunction]) -> list[BfclCall]:
    """The concrete calls of one entry's ground truth."""
    calls = []
    for answer in entry["ground_truth"]:
        ((name, params),) = answer.items()
        function = tools[name]
        properties = function.spec["parameters"].get("properties", {})
        required = set(function.spec["parameters"].get("required", ()))
        arguments = {}
        omitted = []
        for param, acceptable in params.items():
            value = pick(properties.get(param, {}), acceptable)
            if value is OMIT:
                if param in required:
                    omitted.append(param)
                continue
            arguments[param] = value
        calls.append(BfclCall(entry["id"], function, arguments, omitted))
    return calls
