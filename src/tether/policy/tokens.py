"""A conservative estimate of a request's prompt tokens, without a tokenizer.

Budgets and token rate limits must decide before a call what it may cost, and no
tokenizer is at hand for every provider. So the estimate errs high on purpose. Over
the UTF-8 bytes of every text it counts a whole token for each digit, ASCII
punctuation, upper-case letter, space and control character (the bytes tokenizers
often split one by one: Qwen and Llama split digits singly, random mixed-case ids
barely merge), two for a newline (it never merges with what precedes it, so `x\\n`
lines are two tokens each), and 3/4 of a token for every other byte; plus fixed tokens
for each message, tool call and tool definition, and a preamble when tools are on offer.

Measured against a real byte-level BPE (Qwen2.5's, 151k entries, the embedded model's)
it over-counts English prose and code about 4x and Chinese, Russian and emoji text 3x
to 5x, and stays at or above the real count for JSON full of numbers, UUIDs, hex,
base64, API keys, random letters and random Unicode, texts on which a plain bytes/2
rule under-counts by up to half. The exception is a few characters of random rare
script, which may need one token per byte; the framing tokens of the message cover
that for short texts. The one hard bound is one token per byte (every byte-level BPE
token holds at least one byte): nothing short of a tokenizer is both tight and safe,
so callers settle to the provider's reported usage afterwards.
"""

from __future__ import annotations

import json
import string

from tether.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    RunState,
    ToolCall,
    ToolDefinition,
    ToolResult,
)

__all__ = ["estimate_message_tokens", "estimate_prompt_tokens", "estimate_text_tokens"]

PER_REQUEST = 8
"""Priming tokens of a request (OpenAI documents 3, chat templates add a few more)."""
PER_MESSAGE = 8
"""Role and separator tokens around each message (OpenAI documents 3 to 4)."""
PER_TOOL_CALL = 12
"""Framing of one tool call or tool result (type, id and name fields)."""
PER_TOOL = 16
"""Framing of one tool definition."""
TOOLS_PREAMBLE = 400
"""Hidden instructions a provider adds when tools are on offer (Anthropic documents up
to 346 tokens for its tool-use system prompt)."""

# Bytes counted a whole token each; `bytes.translate` deletes all the others, in C.
_DENSE = (
    string.digits
    + string.ascii_uppercase
    + string.punctuation
    + " "
    + "".join(map(chr, range(32)))
    + "\x7f"
).encode()
_NOT_DENSE = bytes(b for b in range(256) if b not in _DENSE)

_TOOL_CACHE: dict[int, tuple[ToolDefinition, int]] = {}
"""Estimates of tool definitions by `id`; the entry holds the definition, so its id
cannot be reused while cached. Definitions are built once per agent, so this stays small."""
_TOOL_CACHE_MAX = 1024


def estimate_text_tokens(text: str) -> int:
    """An over-estimate of the tokens of `text` (see the module docstring)."""
    if not text:
        return 0
    data = text.encode("utf-8", "surrogatepass")
    dense = len(data.translate(None, _NOT_DENSE))
    # 3/4 per byte, the remaining 1/4 for dense bytes, and one more per newline: a line
    # break never merges with what precedes it, so `x\n` lines cost 2 tokens; rounded up.
    return (3 * len(data) + dense + 4 * data.count(b"\n") + 3) // 4


def estimate_message_tokens(message: Message) -> int:
    """An over-estimate of the tokens of one message, its framing included."""
    if isinstance(message, AssistantMessage):
        texts: list[str] = []
        calls = 0
        for part in message.parts:
            if isinstance(part, ToolCall):
                calls += 1
                texts += (part.id, " ", part.name, " ", part.arguments_json())
            else:
                texts.append(part.text)
        return PER_MESSAGE + PER_TOOL_CALL * calls + estimate_text_tokens("".join(texts))
    if isinstance(message, ToolResult):
        text = f"{message.call_id} {message.name} {message.content}"
        return PER_MESSAGE + PER_TOOL_CALL + estimate_text_tokens(text)
    return PER_MESSAGE + estimate_text_tokens(message.content)


class _Memo:
    """The estimate of the messages a run last sent, to count only what it adds next."""

    __slots__ = ("count", "first", "last", "total")

    def __init__(self) -> None:
        self.count = 0
        self.first: Message | None = None
        self.last: Message | None = None
        self.total = 0


def estimate_prompt_tokens(request: ModelRequest, run: RunState | None = None) -> int:
    """An over-estimate of the input tokens `request` will be billed for.

    Counts every message's text, tool calls (ids, names, arguments), tool results and
    the tool definitions on offer (name, description, JSON schema), at the rates given
    in the module docstring, plus framing tokens for each.

    Given the `run` that sends it, the estimate of messages the run already sent is
    kept in its state and reused while its conversation only grows (the same message
    objects, appended to), so a long run pays for each message once, not at every step.

    Example:
        ```python
        request = ModelRequest(messages=[UserMessage(content="Hello there")])
        assert estimate_prompt_tokens(request) >= 3
        ```
    """
    messages = request.messages
    if run is None:
        total = sum(map(estimate_message_tokens, messages))
    else:
        memo: _Memo = run.extra("tokens", _Memo)
        known = memo.count
        if (
            known
            and len(messages) >= known
            and messages[known - 1] is memo.last
            and messages[0] is memo.first
        ):
            total = memo.total + sum(map(estimate_message_tokens, messages[known:]))
        else:
            total = sum(map(estimate_message_tokens, messages))
        if messages:
            memo.count, memo.first, memo.last, memo.total = (
                len(messages),
                messages[0],
                messages[-1],
                total,
            )
    total += PER_REQUEST
    if request.tools:
        total += TOOLS_PREAMBLE
        for tool in request.tools:
            total += _tool_tokens(tool)
    return total


def _tool_tokens(tool: ToolDefinition) -> int:
    found = _TOOL_CACHE.get(id(tool))
    if found is not None and found[0] is tool:
        return found[1]
    schema = json.dumps(tool.parameters, ensure_ascii=False, separators=(",", ":"))
    tokens = (
        PER_TOOL
        + estimate_text_tokens(tool.name)
        + estimate_text_tokens(tool.description)
        + estimate_text_tokens(schema)
    )
    if len(_TOOL_CACHE) >= _TOOL_CACHE_MAX:
        _TOOL_CACHE.clear()
    _TOOL_CACHE[id(tool)] = (tool, tokens)
    return tokens
