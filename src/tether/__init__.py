"""tether: a runtime for running AI agents in production.

The public API is what this module re-exports; everything else lives in submodules
(`tether.models`, `tether.tools`, `tether.policy`, `tether.testing`, ...).
"""

from tether.agent import Agent
from tether.errors import (
    ConfigError,
    MaxStepsExceeded,
    ModelError,
    OutputValidationError,
    RunStopped,
    TetherError,
    ToolError,
    UsageLimitExceeded,
)
from tether.loop import (
    Event,
    ModelResponded,
    RunCompleted,
    RunStarted,
    StepStarted,
    TextDelta,
    ToolCalled,
    ToolReturned,
)
from tether.messages import ModelSettings, RunResult, Usage
from tether.models import Model
from tether.policy import Policy, UsageLimits
from tether.settings import Settings, get_settings
from tether.tools import RunContext, Tool, tool

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "ConfigError",
    "Event",
    "MaxStepsExceeded",
    "Model",
    "ModelError",
    "ModelResponded",
    "ModelSettings",
    "OutputValidationError",
    "Policy",
    "RunCompleted",
    "RunContext",
    "RunResult",
    "RunStarted",
    "RunStopped",
    "Settings",
    "StepStarted",
    "TetherError",
    "TextDelta",
    "Tool",
    "ToolCalled",
    "ToolError",
    "ToolReturned",
    "Usage",
    "UsageLimitExceeded",
    "UsageLimits",
    "get_settings",
    "tool",
]
