"""Agents for the crash-recovery test (`tests/durable/test_crash_recovery.py`).

Loaded by `tether run tests/durable/agents/crashy.py:agent` in a subprocess that the
test SIGKILLs. The model is `openai:crashy`, served by the test's local fake OpenAI
server (`TETHER_OPENAI_BASE_URL`); the tools call the test's "downstream" HTTP server
(`CRASHY_DOWNSTREAM_URL`), which records every request:

- `lookup(order)`: a read (GET /lookup), safe to repeat.
- `charge(order, amount)`: a side effect (POST /charge). In `agent` it is idempotent:
  it sends `ctx.idempotency_key` and the downstream applies each key once. In `unsafe`
  it is not: the downstream applies every request it gets.

Both tools take a little while (the downstream holds its replies, and `charge` prepares
before it sends), so a kill can land inside them, before or after the charge is sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
import urllib.request
from typing import Any

from tether import Agent, RunContext, tool

INSTRUCTIONS = "Look the order up, charge it, then say what was charged."
PREPARE_S = 0.03
"""How long `charge` works before it sends its request."""


def _call(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request to the downstream (GET, or POST with a JSON body); its JSON reply."""
    url = os.environ["CRASHY_DOWNSTREAM_URL"] + path
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        answer: dict[str, Any] = json.loads(reply.read())
    return answer


@tool
async def lookup(order: str) -> str:
    """The amount due on an order.

    Args:
        order: The order id.
    """
    query = urllib.parse.urlencode({"order": order})
    answer = await asyncio.to_thread(_call, f"/lookup?{query}")
    return str(answer["amount"])


async def _charge(order: str, amount: int, key: str | None) -> str:
    await asyncio.sleep(PREPARE_S)  # e.g. building the payment: a kill may land before it is sent
    body = {"order": order, "amount": amount, "key": key}
    answer = await asyncio.to_thread(_call, "/charge", body)
    return str(answer["receipt"])


@tool(name="charge", side_effect=True, idempotent=True)
async def charge_idempotent(ctx: RunContext, order: str, amount: int) -> str:
    """Charge an order (the downstream dedupes on the idempotency key).

    Args:
        order: The order id.
        amount: The amount to charge.
    """
    return await _charge(order, amount, ctx.idempotency_key)


@tool(name="charge", side_effect=True)
async def charge_once(order: str, amount: int) -> str:
    """Charge an order (no idempotency key: every request charges).

    Args:
        order: The order id.
        amount: The amount to charge.
    """
    return await _charge(order, amount, None)


agent = Agent(
    model="openai:crashy",
    instructions=INSTRUCTIONS,
    tools=[lookup, charge_idempotent],
    name="crashy",
)
unsafe = Agent(
    model="openai:crashy",
    instructions=INSTRUCTIONS,
    tools=[lookup, charge_once],
    name="crashy-unsafe",
)
