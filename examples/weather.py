"""A weather assistant: the README's first example.

Run it on the embedded local model, offline:

    tether run examples/weather.py:agent "What's the weather in Paris?"
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from tether import Agent, tool


class Weather(BaseModel):
    city: str
    temperature: float
    unit: Literal["c", "f"]
    conditions: str


# A stand-in for a weather API, so the example runs with no network.
_OBSERVATIONS = {
    "paris": (18.0, "light rain"),
    "london": (14.0, "overcast"),
    "tokyo": (24.0, "clear sky"),
    "new york": (21.0, "sunny"),
    "berlin": (16.0, "cloudy"),
}


@tool(timeout=5)
async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> Weather:
    """Current weather for a city.

    Args:
        city: City name, e.g. "Paris".
        unit: "c" for Celsius or "f" for Fahrenheit.
    """
    celsius, conditions = _OBSERVATIONS.get(city.strip().lower(), (20.0, "clear sky"))
    temperature = celsius if unit == "c" else round(celsius * 9 / 5 + 32, 1)
    return Weather(city=city, temperature=temperature, unit=unit, conditions=conditions)


agent = Agent(
    model="local",
    instructions="You are a weather assistant. Use the get_weather tool for current weather.",
    tools=[get_weather],
    name="weather",
)
