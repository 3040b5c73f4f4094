"""Tools: `@tool`, schemas from signatures, validation at the boundary, execution."""

from tether.tools.context import RunContext
from tether.tools.output import OUTPUT_TOOL_NAME, OutputTool
from tether.tools.tool import Tool, tool
from tether.tools.toolset import ToolSet, render_output

__all__ = [
    "OUTPUT_TOOL_NAME",
    "OutputTool",
    "RunContext",
    "Tool",
    "ToolSet",
    "render_output",
    "tool",
]
