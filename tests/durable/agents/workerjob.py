"""An agent for `tether worker` tests: one slow side effect per run.

The model first asks for `apply_effect(order=<the prompt>)`, then answers "done". The
tool is a side effect that dedupes downstream on `ctx.idempotency_key`
(`idempotent=True`): it POSTs `{"key", "order", "pid"}` to the server at
`$WORKERJOB_DOWNSTREAM` (the test's), then lingers, so a worker killed mid-run is often
killed after the effect was applied and before its step was recorded. Both the model and
the tool take a while, so runs are in flight when a test acts on a worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request

from tether import Agent, RunContext, tool
from tether.messages import ModelRequest, ToolResult, UserMessage
from tether.policy import Policy
from tether.testing import FunctionModel, Step, call, reply

MODEL_PAUSE_S = 0.3
TOOL_PAUSE_S = 1.0


def _post(body: bytes) -> str:
    request = urllib.request.Request(
        os.environ["WORKERJOB_DOWNSTREAM"],
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.read().decode())


@tool(side_effect=True, idempotent=True)
async def apply_effect(ctx: RunContext, order: str) -> str:
    """Apply the order downstream (once per idempotency key)."""
    body = json.dumps({"key": ctx.idempotency_key, "order": order, "pid": os.getpid()})
    answer = await asyncio.to_thread(_post, body.encode())
    await asyncio.sleep(TOOL_PAUSE_S)
    return answer


async def _model(request: ModelRequest) -> Step:
    await asyncio.sleep(MODEL_PAUSE_S)
    if any(isinstance(m, ToolResult) for m in request.messages):
        return reply("done")
    prompt = next(m.content for m in request.messages if isinstance(m, UserMessage))
    return call("apply_effect", order=prompt)


agent = Agent(
    model=FunctionModel(_model, name="workerjob-model"),
    tools=[apply_effect],
    policy=Policy(retry=None, breaker=None),
    name="workerjob",
)
