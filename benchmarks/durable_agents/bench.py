"""The agents of `benchmarks/durable.py`: N-1 no-op tool steps then an answer.

`BENCH_STEPS` sets N (default 10), `BENCH_MODEL_MS` the model's latency (default 0),
and while the file `BENCH_BLOCK_FILE` names exists the tool blocks (to strand runs).
"""

from __future__ import annotations

import asyncio
import os

from tether import Agent, Policy, tool
from tether.messages import ModelRequest, ToolResult
from tether.testing import FunctionModel, call, reply

STEPS = int(os.environ.get("BENCH_STEPS", "10"))
LATENCY = float(os.environ.get("BENCH_MODEL_MS", "0")) / 1000


async def respond(request: ModelRequest) -> object:
    if LATENCY:
        await asyncio.sleep(LATENCY)
    done = sum(isinstance(m, ToolResult) for m in request.messages)
    return call("noop", i=done) if done < STEPS - 1 else reply("done")


@tool
async def noop(i: int) -> int:
    """Do nothing."""
    block = os.environ.get("BENCH_BLOCK_FILE")
    # Another process removes the file: polling is the only way to hear of it.
    while block and os.path.exists(block):  # noqa: ASYNC110, ASYNC240 (a stat per 50 ms)
        await asyncio.sleep(0.05)
    return i


agent = Agent(
    model=FunctionModel(respond, name="bench"),
    tools=[noop],
    name="bench",
    policy=Policy(retry=None, breaker=None, loop_guard=None, max_steps=1000),
)
