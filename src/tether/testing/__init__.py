"""Test doubles for agents: scripted and function models (and, with the reliability
policies, fault injection and a fake clock).

Example:
    ```python
    from tether.testing import ScriptedModel, call, calls, reply

    model = ScriptedModel([
        call("get_weather", city="Paris"),
        calls(call("get_time", tz="CET"), call("get_news")),  # parallel calls, one step
        reply("Sunny, 21 °C."),
    ])
    result = await Agent(model=model, tools=[get_weather, get_time, get_news]).run("...")
    model.assert_complete()
    ```
"""

from tether.testing.clock import FakeClock
from tether.testing.faults import MODEL_FAULTS, TOOL_FAULTS, FaultRecord
from tether.testing.faulty_model import FaultyModel
from tether.testing.faulty_tool import FaultyTool, faulty_tool
from tether.testing.scripted import (
    FunctionModel,
    ScriptedModel,
    ScriptExhausted,
    Step,
    call,
    calls,
    raise_error,
    reply,
)

__all__ = [
    "MODEL_FAULTS",
    "TOOL_FAULTS",
    "FakeClock",
    "FaultRecord",
    "FaultyModel",
    "FaultyTool",
    "FunctionModel",
    "ScriptExhausted",
    "ScriptedModel",
    "Step",
    "call",
    "calls",
    "faulty_tool",
    "raise_error",
    "reply",
]
