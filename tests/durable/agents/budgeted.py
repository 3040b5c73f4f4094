"""An agent whose one model call is priced, and a driver that runs many of it at once.

The model answers at once (after a short pause, so runs overlap) and reports as many
output tokens as the request allowed (`max_tokens`): what a real model does at worst,
so each call costs exactly what the shared budget reserved for it. Input is free, so
the prompt estimate plays no part in what a call may cost.

As a script it is one of several processes spending one user's daily budget:

    python budgeted.py DATABASE_URL USER RUNS [RUN_ID]

It launches a `Runtime`, prints `ready`, waits for a line on stdin (so every process
starts spending at once), runs RUNS durable runs concurrently for USER and prints one
JSON line: `{"statuses": {run_id: status}, "errors": [...]}`. The tiers come from the
environment (`TETHER_BUDGET_TIERS`, `TETHER_DEFAULT_TIER`). With RUN_ID (and RUNS 1)
the one run has that id; `BUDGETED_MODEL_PAUSE_S` makes each call take that long (a
test kills the process in the middle of one).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

from tether import Agent
from tether.durable import Runtime
from tether.errors import BudgetExceeded
from tether.messages import ModelRequest, ModelSettings, Usage
from tether.models import ModelPrice, register_price
from tether.policy import Policy
from tether.testing import FunctionModel, Step

MODEL = "budget-test-model"
OUTPUT_USD_PER_M = 1.0
"""$1 per million output tokens: a call of 1000 tokens costs $0.001."""
MAX_TOKENS = 1000

register_price(MODEL, ModelPrice(input=0.0, output=OUTPUT_USD_PER_M))


async def _answer(request: ModelRequest) -> Step:
    await asyncio.sleep(float(os.environ.get("BUDGETED_MODEL_PAUSE_S", "0.02")))
    used = request.settings.max_tokens or 4096
    return Step(text="ok", usage=Usage(input_tokens=12, output_tokens=used))


agent = Agent(
    model=FunctionModel(_answer, name=MODEL),
    model_settings=ModelSettings(max_tokens=MAX_TOKENS),
    policy=Policy(retry=None, breaker=None),
    name="budgeted",
)


async def _spend(runtime: Runtime, user: str, ids: list[str]) -> dict[str, object]:
    outcomes = await asyncio.gather(
        *(runtime.run("budgeted", "spend", user=user, run_id=i) for i in ids),
        return_exceptions=True,
    )
    statuses: dict[str, str] = {}
    errors: list[str] = []
    for run_id, outcome in zip(ids, outcomes, strict=True):
        if isinstance(outcome, BudgetExceeded):
            statuses[run_id] = "budget"
        elif isinstance(outcome, BaseException):
            statuses[run_id] = "error"
            errors.append(f"{type(outcome).__name__}: {outcome}")
        else:
            statuses[run_id] = outcome.status
    await runtime.aclose_agents()
    return {"statuses": statuses, "errors": errors}


def main() -> None:
    url, user, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ids = sys.argv[4:] or [uuid.uuid4().hex for _ in range(runs)]
    assert len(ids) == runs
    runtime = Runtime(url)
    runtime.register(agent, target=f"{__file__}:agent")
    runtime.launch()
    try:
        print("ready", flush=True)
        sys.stdin.readline()
        report = asyncio.run(_spend(runtime, user, ids))
    finally:
        runtime.shutdown()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
