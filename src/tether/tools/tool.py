"""`@tool` and `Tool`: a function the model may call, validated at the boundary.

Everything that can be computed once (the JSON schema, the argument model, whether the
function is async, where the `RunContext` goes) is computed at decoration time, so a
call costs one pydantic validation and the function itself.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any, overload

from pydantic import BaseModel, ValidationError

from tether.errors import (
    ConfigError,
    ToolArgumentsInvalid,
    ToolError,
    ToolExecutionError,
    ToolTimeout,
)
from tether.messages import ToolCall, ToolDefinition
from tether.tools.context import RunContext
from tether.tools.schema import ToolSignature, read_signature

__all__ = ["Tool", "render_validation_errors", "tool"]

_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _unwrap(function: Callable[..., Any]) -> Callable[..., Any]:
    return function.func if isinstance(function, functools.partial) else function


class Tool:
    """A callable the model may call, with its schema, validator and limits.

    Build one with `@tool` (or `Tool(function)`); a plain callable given to
    `Agent(tools=[...])` is wrapped with the defaults.
    """

    __slots__ = (
        "_definition",
        "_semaphore",
        "_signature",
        "dedupe",
        "description",
        "fallbacks",
        "function",
        "idempotent",
        "is_async",
        "max_concurrency",
        "name",
        "retries",
        "retry",
        "retryable",
        "side_effect",
        "timeout",
        "volatile",
    )

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        retries: int | None = None,
        retryable: bool | None = None,
        fallbacks: Sequence[Tool | Callable[..., Any]] = (),
        retry: Any = None,
        side_effect: bool = False,
        idempotent: bool = False,
        dedupe: bool = False,
        volatile: Sequence[str] = (),
    ) -> None:
        if not callable(function):
            raise ConfigError(f"a tool must be callable, got {type(function).__name__}")
        if timeout is not None and not (
            isinstance(timeout, int | float)
            and not isinstance(timeout, bool)
            and 0 < timeout < math.inf
        ):
            raise ConfigError(
                f"tool timeout must be a number of seconds > 0 (or None), got {timeout!r}"
            )
        if max_concurrency is not None and not (
            isinstance(max_concurrency, int)
            and not isinstance(max_concurrency, bool)
            and max_concurrency >= 1
        ):
            raise ConfigError(
                f"tool max_concurrency must be an int >= 1 (or None), got {max_concurrency!r}"
            )
        self.function = function
        # A callable object has no __name__: it is named after its class.
        target = _unwrap(function)
        self.name = name or getattr(target, "__name__", None) or type(target).__name__
        if not _TOOL_NAME.fullmatch(self.name):
            raise ConfigError(
                f"tool name {self.name!r} must be 1 to 64 ASCII letters, digits, '_' or '-' "
                "(what OpenAI and Anthropic accept); pass name=... to @tool"
            )
        if retries is not None and not (isinstance(retries, int) and 0 <= retries <= 100):
            raise ConfigError(
                f"tool retries must be an int from 0 to 100 (or None), got {retries!r}"
            )
        if (idempotent or dedupe) and not side_effect:
            raise ConfigError(
                f"tool {self.name!r}: idempotent=True and dedupe=True describe a side effect; "
                "declare it with side_effect=True"
            )
        if volatile and not dedupe:
            raise ConfigError(
                f"tool {self.name!r}: volatile=... names the arguments cross-run dedupe "
                "ignores; it needs dedupe=True"
            )
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.retry = retry
        # A side effect that does not dedupe on its key must not run twice for one call.
        self.retryable = (not side_effect or idempotent) if retryable is None else retryable
        self.side_effect = side_effect
        self.idempotent = idempotent
        self.dedupe = dedupe
        self.volatile: frozenset[str] = frozenset(volatile)
        self.fallbacks: tuple[Tool, ...] = tuple(
            f if isinstance(f, Tool) else Tool(f) for f in fallbacks
        )
        self._semaphore = _LoopSemaphore(max_concurrency) if max_concurrency else None
        call = getattr(target, "__call__", None)  # noqa: B004 - callable objects
        self.is_async = inspect.iscoroutinefunction(target) or (
            not inspect.isroutine(target) and inspect.iscoroutinefunction(call)
        )
        # A function defined in a class body (first parameter `self`) is described
        # once it is bound, in __get__.
        self._signature: ToolSignature | None = None
        if not _is_unbound_method(function):
            self._signature = read_signature(function, self.name)
        self.description = description
        self._definition: ToolDefinition | None = None

    # -- description -------------------------------------------------------------------

    @property
    def signature(self) -> ToolSignature:
        if self._signature is None:
            raise ConfigError(
                f"tool {self.name!r} is a method; use it through an instance "
                f"(e.g. tools=[obj.{self.name}]), not through the class"
            )
        return self._signature

    @property
    def definition(self) -> ToolDefinition:
        """What the model is told about this tool (built once)."""
        if self._definition is None:
            sig = self.signature
            self._definition = ToolDefinition(
                name=self.name,
                description=self.description if self.description is not None else sig.description,
                parameters=sig.parameters,
            )
        return self._definition

    def __get__(self, instance: object, owner: type | None = None) -> Tool:
        if instance is None:
            return self
        bound = Tool(self.function.__get__(instance, owner), **self._options())
        bound._semaphore = self._semaphore  # one limit for the method, across instances
        return bound

    def _options(self) -> dict[str, Any]:
        """The keywords this tool was declared with, to declare another like it."""
        return {
            "name": self.name,
            "description": self.description,
            "timeout": self.timeout,
            "max_concurrency": self.max_concurrency,
            "retries": self.retries,
            "retryable": self.retryable,
            "fallbacks": self.fallbacks,
            "retry": self.retry,
            "side_effect": self.side_effect,
            "idempotent": self.idempotent,
            "dedupe": self.dedupe,
            "volatile": tuple(sorted(self.volatile)),
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, bypassing validation (handy in tests)."""
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    # -- calling -------------------------------------------------------------------------

    def validate(self, call: ToolCall) -> dict[str, Any]:
        """Parse and validate the model's arguments; raise `ToolArgumentsInvalid` if bad.

        JSON text is validated in one pass by pydantic's JSON parser (so a `Decimal`
        keeps every digit the model wrote); an object (Anthropic-style) is validated as
        Python data. A failure is worded from the two-step path, which names the field.
        """
        # The validator itself: `model_validate_json` wraps it in half again its cost.
        validator = self.signature.args_model.__pydantic_validator__
        if isinstance(call.arguments, str):
            try:
                model = validator.validate_json(call.arguments.strip() or "{}")
            except ValidationError:
                pass  # explained below
            else:
                return self._keyword_arguments(model)
        try:
            raw = call.arguments_dict()
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise ToolArgumentsInvalid(
                f"the arguments for tool {self.name!r} are not a JSON object ({exc}). "
                "Call it again with a JSON object matching its schema.",
                tool=self.name,
            ) from None
        try:
            model = validator.validate_python(raw)
        except ValidationError as exc:
            raise ToolArgumentsInvalid(
                f"invalid arguments for tool {self.name!r}: {render_validation_errors(exc)}. "
                "Fix them and call the tool again.",
                tool=self.name,
            ) from None
        return self._keyword_arguments(model)

    def _keyword_arguments(self, model: BaseModel) -> dict[str, Any]:
        renamed = self.signature.renamed
        if renamed:  # parameters like `_from` live under another field name
            return {renamed.get(k, k): v for k, v in model.__dict__.items()}
        return model.__dict__  # the model is thrown away: its dict needs no copy

    async def execute(self, arguments: dict[str, Any], ctx: RunContext[Any] | None) -> Any:
        """Run the function with validated arguments, under its timeout and concurrency cap.

        `arguments` is not modified. Raises only `ToolError` subclasses: `ToolTimeout`,
        `ToolExecutionError` (with the original exception as `__cause__`), or a
        `ToolError` the function raised itself.
        """
        # One coroutine for the whole call: with thousands of runs in flight, every
        # extra layer is a frame to create and an object for the collector to walk.
        sig = self.signature
        args: tuple[Any, ...] = ()
        if sig.context_param is not None or sig.positional_only:
            arguments = dict(arguments)
            if sig.context_param is not None:
                arguments[sig.context_param] = ctx
            if sig.positional_only:
                args = tuple(arguments.pop(p) for p in sig.positional_only)
        semaphore = self._semaphore.get() if self._semaphore is not None else None
        deadline: asyncio.Timeout | None = None
        try:
            if semaphore is not None:
                await semaphore.acquire()
            try:
                if self.is_async:
                    call = self.function(*args, **arguments)
                else:
                    # Sync tools may block (I/O, CPU); a thread keeps other runs moving.
                    call = asyncio.to_thread(self.function, *args, **arguments)
                if self.timeout is None:
                    return await call
                async with asyncio.timeout(self.timeout) as deadline:
                    return await call
            finally:
                if semaphore is not None:
                    semaphore.release()
        except ToolError as exc:
            if exc.tool is None:
                exc.tool = self.name
            raise
        except TimeoutError as exc:
            if deadline is None or not deadline.expired():
                # The tool's own timeout (an HTTP call, a wait_for): an ordinary failure.
                raise ToolExecutionError(
                    f"tool {self.name!r} failed: TimeoutError: {exc}", tool=self.name
                ) from exc
            raise ToolTimeout(
                f"tool {self.name!r} did not finish within {self.timeout}s and was cancelled",
                tool=self.name,
            ) from None
        except Exception as exc:
            raise ToolExecutionError(
                f"tool {self.name!r} failed: {type(exc).__name__}: {exc}", tool=self.name
            ) from exc


class _LoopSemaphore:
    """One semaphore per event loop: an asyncio.Semaphore binds to the first loop it
    waits on, and a tool outlives loops (`run_sync`, one loop per test)."""

    __slots__ = ("_by_loop", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._by_loop = weakref.WeakKeyDictionary()

    def get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None:
            found = self._by_loop[loop] = asyncio.Semaphore(self.limit)
        return found


def _is_unbound_method(function: Callable[..., Any]) -> bool:
    if not inspect.isfunction(function):
        return False
    params = list(inspect.signature(function).parameters)
    return bool(params) and params[0] in ("self", "cls") and "." in function.__qualname__


def render_validation_errors(exc: ValidationError) -> str:
    """A pydantic validation error as one line the model can act on."""
    parts = []
    for error in exc.errors(include_url=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        got = error.get("input")
        # ensure_ascii=False: "침실" stays readable instead of 80 chars of \uXXXX escapes.
        shown = (
            json.dumps(got, default=str, ensure_ascii=False)[:80]
            if error["type"] != "missing"
            else None
        )
        parts.append(f"{where}: {error['msg']}" + (f" (got {shown})" if shown else ""))
    return "; ".join(parts)


@overload
def tool(function: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    retries: int | None = None,
    retryable: bool | None = None,
    fallbacks: Sequence[Tool | Callable[..., Any]] = (),
    retry: Any = None,
    side_effect: bool = False,
    idempotent: bool = False,
    dedupe: bool = False,
    volatile: Sequence[str] = (),
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    retries: int | None = None,
    retryable: bool | None = None,
    fallbacks: Sequence[Tool | Callable[..., Any]] = (),
    retry: Any = None,
    side_effect: bool = False,
    idempotent: bool = False,
    dedupe: bool = False,
    volatile: Sequence[str] = (),
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Declare a function (sync or async, or a method) as a tool the model may call.

    Args:
        name: Name shown to the model; defaults to the function's name.
        description: Overrides the docstring's summary.
        timeout: Seconds before the call is cancelled and the model told it timed out.
        max_concurrency: At most this many executions of this tool at once, process-wide.
        retries: Extra attempts after a retryable failure (a timeout, an exception);
            `None` uses the agent's `Retry(tool_attempts=...)`. A `ToolError` you raise
            and invalid arguments are never retried.
        retryable: `False` for a tool that must never run twice for one call; the
            default is `True`, except for a side effect that is not `idempotent`.
        fallbacks: Tools tried in order, with the same arguments, when this one is
            unavailable; when all are, the model gets a `degraded` result.
        retry: A `tether.policy.Retry` for this tool (attempts, base, cap), instead of
            the agent's.
        side_effect: The tool changes the world (sends, pays, writes). In a durable run
            it is recorded in the ledger before and after it runs, so it happens once.
        idempotent: The tool dedupes on `ctx.idempotency_key` downstream, so a call
            interrupted by a crash may run again; otherwise the run stops with
            `OutcomeUnknown` for a human to reconcile (`tether resolve`).
        dedupe: Also dedupe across runs: a call with the same canonical arguments as a
            finished one gets that one's result instead of running.
        volatile: Arguments (timestamps, nonces) left out of the `dedupe` key.

    Example:
        ```python
        @tool(timeout=5)
        async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> Weather:
            '''Current weather for a city.

            Args:
                city: City name, e.g. "Paris".
            '''
        ```
    """

    def wrap(fn: Callable[..., Any]) -> Tool:
        return Tool(
            fn,
            name=name,
            description=description,
            timeout=timeout,
            max_concurrency=max_concurrency,
            retries=retries,
            retryable=retryable,
            fallbacks=fallbacks,
            retry=retry,
            side_effect=side_effect,
            idempotent=idempotent,
            dedupe=dedupe,
            volatile=volatile,
        )

    return wrap(function) if function is not None else wrap
