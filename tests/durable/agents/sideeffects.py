"""An agent whose one tool is a side effect that is not idempotent: it charges a card.

The charge writes a line to `$SIDEEFFECTS_DIR/charges` as it starts, then blocks until
the file `$SIDEEFFECTS_DIR/gate` exists, so a test can kill the process while the
side effect is in flight (its ledger row `started`, never `finished`).
"""

import os
import time
from pathlib import Path

from tether import Agent, tool
from tether.messages import ModelRequest
from tether.testing import FunctionModel, Step, call, reply


def _dir() -> Path:
    return Path(os.environ["SIDEEFFECTS_DIR"])


@tool(side_effect=True)
def charge(card: str, amount: int) -> str:
    """Charge a card."""
    with (_dir() / "charges").open("a") as charges:
        charges.write(f"{card} {amount}\n")
    while not (_dir() / "gate").exists():
        time.sleep(0.05)
    return f"charged {amount} to {card}"


def _answer(request: ModelRequest) -> Step:
    results = [m for m in request.messages if m.role == "tool"]
    if not results:
        return call("charge", card="4242", amount=30)
    return reply(f"The charge says: {results[-1].content}")


agent = Agent(model=FunctionModel(_answer, name="cashier"), tools=[charge], name="sideeffects")
