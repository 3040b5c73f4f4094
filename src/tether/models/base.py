"""The one protocol every model adapter implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from tether.messages import ModelRequest, ModelResponse

__all__ = ["Model", "TextSink"]

TextSink = Callable[[str], None]
"""Receives text deltas as a streamed response arrives."""


class Model(ABC):
    """A model behind one async method, `request`.

    `name` is `provider:model` (`openai:gpt-4.1-mini`). Adapters translate their SDK's
    errors into `tether.errors.ModelError` subclasses, so policies never see SDK types,
    and build SDK clients with retries off: tether's retry policy is the only one.
    """

    name: str

    @abstractmethod
    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one request and return the complete response."""

    async def request_stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        """Like `request`, calling `on_text` with text as it arrives.

        Adapters whose provider streams override this; the default sends the whole text
        at once when the response is complete.
        """
        response = await self.request(request)
        text = response.message.text
        if text:
            on_text(text)
        return response

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections. Called when the agent that owns the model is closed."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
