"""A scripted agent for the CLI tests: one tool call, then an answer; priced, so runs
cost something."""

from tether import Agent, tool
from tether.models import ModelPrice, register_price
from tether.testing import ScriptedModel, call, reply

register_price("cli-scripted", ModelPrice(input=1.0, output=2.0))


@tool
def lookup(city: str) -> str:
    """The weather in a city."""
    return f"{city}: sunny, 21 C"


agent = Agent(
    model=ScriptedModel(
        [call("lookup", city="Paris"), reply("Sunny in Paris, 21 C.")], name="cli-scripted"
    ),
    tools=[lookup],
    name="cliagent",
)
