"""Provider-neutral messages, tool calls, tool results, usage and run results.

Adapters map these to and from each provider's wire format; the loop, policies and
stores only ever see these types. They are pydantic models so a run can be dumped to
JSON and loaded back exactly (`RunResult.model_dump_json()`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AssistantMessage",
    "CallNext",
    "Effect",
    "EffectPolicy",
    "Message",
    "ModelEffect",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "RunResult",
    "RunState",
    "RunStatus",
    "SystemMessage",
    "TextPart",
    "ToolCall",
    "ToolDefinition",
    "ToolEffect",
    "ToolResult",
    "ToolStatus",
    "Usage",
    "UserMessage",
    "construct",
    "share_fields_sets",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")

_ModelT = TypeVar("_ModelT", bound=BaseModel)
_object_new = object.__new__
_object_setattr = object.__setattr__
_FIELDS: dict[type[BaseModel], tuple[tuple[str, ...] | None, set[str]]] = {}


def construct(cls: type[_ModelT], /, **values: Any) -> _ModelT:
    """`cls.model_construct(**values)` for trusted values, in well under half the time.

    The loop builds a few models per step, and pydantic's `model_construct` walks every
    field for aliases and defaults (about 2 µs, slower than validating). When `values`
    names every field of a plain model, in declaration order, this builds the very
    object `model_construct` would (`values` becomes its `__dict__`); anything else
    (a missing field, aliases, private attributes, post-init) goes to `model_construct`.

    Its fields-set is one set per class, holding every field: pydantic only ever adds a
    field name to it (a no-op here) or copies it, and sharing it saves a GC-tracked set
    of 200 to 700 bytes per message, which adds up with thousands of runs in flight.
    """
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = _plain_fields(cls)
    names, fields_set = found
    if names is None or tuple(values) != names:
        return cls.model_construct(**values)
    model = _object_new(cls)
    _object_setattr(model, "__dict__", values)
    _object_setattr(model, "__pydantic_fields_set__", fields_set)
    _object_setattr(model, "__pydantic_extra__", None)
    _object_setattr(model, "__pydantic_private__", None)
    return model


def _plain_fields(cls: type[BaseModel]) -> tuple[tuple[str, ...] | None, set[str]]:
    """The field names of `cls` if `construct` may build it directly (else `None`), and
    the fields-set its instances share."""
    fields = cls.__pydantic_fields__
    plain = (
        cls.__new__ is object.__new__
        and not cls.__pydantic_root_model__
        and not cls.__pydantic_post_init__
        and not cls.__private_attributes__
        and cls.model_config.get("extra") != "allow"
        and all(f.alias is None and f.validation_alias is None for f in fields.values())
    )
    return (tuple(fields), set(fields)) if plain else (None, set())


_SHARED_SETS: dict[type[BaseModel], list[set[str]] | None] = {}
"""Per class: the fields-sets its instances share (None: not frozen, so none are)."""
_SHARED_PER_CLASS = 8
_UNSEEN: Any = object()


def _share_fields_set(model: BaseModel) -> None:
    cls = type(model)
    shared = _SHARED_SETS.get(cls, _UNSEEN)
    if shared is _UNSEEN:
        shared = _SHARED_SETS[cls] = [] if cls.model_config.get("frozen") else None
    if shared is None:
        return
    fields = model.__pydantic_fields_set__
    for candidate in shared:
        if candidate is fields:
            return
        if candidate == fields:
            _object_setattr(model, "__pydantic_fields_set__", candidate)
            return
    if len(shared) < _SHARED_PER_CLASS:  # a frozen model's own set: it never changes
        shared.append(fields)


def share_fields_sets(message: AssistantMessage) -> None:
    """Let `message` and its parts share their fields-sets with the others of their class.

    A model built by validation or `model_construct` (as adapters build responses) gets
    a set of its own: 200 to 700 bytes and one more object for the garbage collector to
    walk, for every message a run keeps, and with thousands of runs in flight that is
    what tips the collector into extra full collections. Pydantic never changes the
    fields-set of a frozen model (a copy gets a copy of it), so equal ones can be one
    object, as `construct`'s are. Models that are not frozen keep their own.
    """
    _share_fields_set(message)
    for part in message.parts:
        _share_fields_set(part)


class Usage(BaseModel):
    """Tokens and calls spent: an immutable value that adds up with `+`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    """Input tokens served from the provider's prompt cache (a subset of `input_tokens`)."""
    requests: int = 0
    tool_calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return construct(
            Usage,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            requests=self.requests + other.requests,
            tool_calls=self.tool_calls + other.tool_calls,
        )


class SystemMessage(BaseModel):
    """Instructions for the model."""

    model_config = _FROZEN
    role: Literal["system"] = "system"
    content: str


class UserMessage(BaseModel):
    """What the user (or the runtime, on the user's behalf) says."""

    model_config = _FROZEN
    role: Literal["user"] = "user"
    content: str


class TextPart(BaseModel):
    """Text the model wrote."""

    model_config = _FROZEN
    type: Literal["text"] = "text"
    text: str


class ToolCall(BaseModel):
    """The model asks for one tool call.

    `arguments` is kept as the provider sent it: a JSON string (OpenAI-style) or an
    object (Anthropic-style), so it can be sent back unchanged even when malformed.
    """

    model_config = _FROZEN
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: str | dict[str, Any] = Field(default_factory=dict)

    def arguments_json(self) -> str:
        """The arguments as a JSON string."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"), ensure_ascii=False)

    def arguments_dict(self) -> dict[str, Any]:
        """The arguments as a dict. Raises `ValueError` if they are not a JSON object."""
        if isinstance(self.arguments, dict):
            return self.arguments
        parsed = json.loads(self.arguments) if self.arguments.strip() else {}
        if not isinstance(parsed, dict):
            raise ValueError(f"tool arguments must be a JSON object, got {type(parsed).__name__}")
        return parsed


class AssistantMessage(BaseModel):
    """What the model answered: text and tool calls, in the order it produced them."""

    model_config = _FROZEN
    role: Literal["assistant"] = "assistant"
    parts: list[Annotated[TextPart | ToolCall, Field(discriminator="type")]] = Field(
        default_factory=list
    )

    @property
    def text(self) -> str:
        """All text parts joined."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [p for p in self.parts if isinstance(p, ToolCall)]


ToolStatus = Literal["ok", "error", "denied", "degraded"]


class ToolResult(BaseModel):
    """The outcome of one tool call, as the model will see it.

    `status` is `ok`, `error` (the model may correct its call), `denied` (a permission
    or confirmation refused it) or `degraded` (the tool and its fallbacks are unavailable:
    the model should not retry, and should tell the user). `content` is the tool's output
    rendered as text.
    """

    model_config = _FROZEN
    role: Literal["tool"] = "tool"
    call_id: str
    name: str
    content: str
    status: ToolStatus = "ok"

    @classmethod
    def of(cls, call: ToolCall, content: str, status: ToolStatus = "ok") -> ToolResult:
        """The result of `call` (built without validation: for trusted values)."""
        return construct(
            cls, role="tool", call_id=call.id, name=call.name, content=content, status=status
        )


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolResult, Field(discriminator="role")
]


class ToolDefinition(BaseModel):
    """What a model is told about a tool: its name, description and JSON schema."""

    model_config = _FROZEN
    name: str
    description: str = ""
    parameters: dict[str, Any]


class ModelSettings(BaseModel):
    """Sampling settings passed to the provider; `None` leaves the provider default."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    timeout: float | None = None
    """Seconds for one model call, end to end."""
    seed: int | None = None
    stop: list[str] | None = None


class ModelRequest(BaseModel):
    """One model call: the conversation so far, the tools on offer, the settings.

    `tool_choice` is `auto` (answer or call), `required` (must call a tool) or `none`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    messages: list[Message]
    tools: list[ToolDefinition] = Field(default_factory=list)
    settings: ModelSettings = Field(default_factory=ModelSettings)
    tool_choice: Literal["auto", "required", "none"] = "auto"


class ModelResponse(BaseModel):
    """What one model call returned."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    message: AssistantMessage
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    """The model that served the call, as `provider:model`."""
    finish_reason: str | None = None


RunStatus = Literal[
    "completed",
    "max_steps",
    "usage_limit",
    "output_invalid",
    "budget",
    "loop",
    "timeout",
    "rate_limited",
    "outcome_unknown",
    "failed",
]


class RunResult(BaseModel):
    """The outcome of a run: the answer, the whole conversation, usage and cost."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    run_id: str
    status: RunStatus
    output: Any = None
    messages: list[Message] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    steps: int = 0
    duration_s: float = 0.0
    error: str | None = None
    degraded: bool = False
    """A fallback served some call: a later model tier, a fallback tool, or none at all."""
    degraded_reasons: list[str] = Field(default_factory=list)
    critic_rejected: bool = False
    """The output critic still rejected the final answer after every revision."""
    critic_issues: list[str] = Field(default_factory=list)

    @property
    def text(self) -> str:
        """The last assistant text of the run."""
        for message in reversed(self.messages):
            if isinstance(message, AssistantMessage) and message.text:
                return message.text
        return ""


# --- effects: a model call or a tool call in flight, as the policies see it ---------------


@dataclass(slots=True)
class RunState:
    """The mutable state of one run that policies may read (and the loop updates).

    Spending is kept as plain counters (no object per step); `usage` builds the
    `Usage` value when asked.
    """

    run_id: str
    agent: str
    user: str | None = None
    deps: Any = None
    tenant: str | None = None
    step: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0
    cost_usd: float = 0.0
    started: float = 0.0
    """`time.perf_counter()` when the run started."""
    degraded_reasons: list[str] | None = None
    """Why fallbacks served calls of this run (None until one does)."""
    extra_key: str | None = field(default=None, repr=False)
    """The first policy that kept per-run state (see `extra`) ..."""
    extra_value: Any = field(default=None, repr=False)
    """... and its state: most runs have one such policy, and need no dict for it."""
    extras: dict[str, Any] | None = field(default=None, repr=False)
    """Per-run state of any further policies, keyed by policy (None until one keeps some)."""

    def degrade(self, reason: str) -> None:
        """Record that a fallback served a call, and why."""
        if self.degraded_reasons is None:
            self.degraded_reasons = []
        self.degraded_reasons.append(reason)

    def extra(self, key: str, factory: Callable[[], Any]) -> Any:
        """A policy's state for this run, made by `factory` on first use."""
        if key == self.extra_key:
            return self.extra_value
        if self.extra_key is None:
            self.extra_key = key
            found = self.extra_value = factory()
            return found
        extras = self.extras
        if extras is None:
            extras = self.extras = {}
        found = extras.get(key)
        if found is None:
            found = extras[key] = factory()
        return found

    @property
    def usage(self) -> Usage:
        """What the run has spent so far."""
        return construct(
            Usage,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_tokens=self.cached_tokens,
            requests=self.requests,
            tool_calls=self.tool_calls,
        )

    def spend(self, used: Usage, cost_usd: float) -> None:
        """Count one model request and what it used."""
        self.input_tokens += used.input_tokens
        self.output_tokens += used.output_tokens
        self.cached_tokens += used.cached_tokens
        self.requests += 1
        self.cost_usd += cost_usd


@dataclass(slots=True)
class ModelEffect:
    """One model call on its way through the policy onion."""

    kind: ClassVar[Literal["model"]] = "model"
    run: RunState
    request: ModelRequest
    on_text: Callable[[str], None] | None = None
    """Set when the caller streams: the innermost call streams text into it."""


@dataclass(slots=True)
class ToolEffect:
    """One validated tool call on its way through the policy onion."""

    kind: ClassVar[Literal["tool"]] = "tool"
    run: RunState
    call: ToolCall
    index: int
    """Position of the call among its step's calls (stable: used in idempotency keys)."""
    arguments: dict[str, Any]

    @property
    def name(self) -> str:
        return self.call.name


Effect = ModelEffect | ToolEffect
CallNext = Callable[[Any], Awaitable[Any]]
"""The rest of the onion: awaited with the effect, returns a `ModelResponse` for a model
effect and a `ToolResult` for a tool effect."""


class EffectPolicy(Protocol):
    """A layer of the onion around every effect (think ASGI middleware).

    It acts, then awaits `call_next(effect)` or answers itself. `kinds` says which
    effects it wraps; it is left out of the other chain entirely, at no cost.

    Write it as `async def __call__`. A policy that often has nothing to do may instead
    be a plain `def` that returns `call_next(effect)` unawaited in that case (and a
    coroutine otherwise), which spares every effect one coroutine frame.
    """

    kinds: ClassVar[frozenset[str]]

    def __call__(self, effect: Any, call_next: CallNext) -> Awaitable[Any]: ...
