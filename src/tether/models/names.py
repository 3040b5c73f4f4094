"""`infer_model`: from a name like `openai:gpt-4.1-mini` to an adapter instance."""

from __future__ import annotations

from tether.errors import ConfigError
from tether.models.base import Model
from tether.settings import Settings, get_settings

__all__ = ["infer_model"]

_PROVIDERS = ("openai", "anthropic", "local")


def infer_model(model: Model | str | None, settings: Settings | None = None) -> Model:
    """Resolve a model name (or `None`, the configured default) to a `Model`.

    Accepted names: `openai:MODEL`, `anthropic:MODEL`, `local` (the embedded default) and
    `local:/path/to/file.gguf`. SDKs are imported only for the provider named.
    """
    if isinstance(model, Model):
        return model
    settings = settings or get_settings()
    name = model or settings.resolve_default_model()
    if not isinstance(name, str):
        raise ConfigError(f"a model is a name like 'openai:gpt-4.1-mini' or a Model, got {name!r}")
    provider, _, model_id = name.partition(":")
    if provider == "local":
        from tether.models.local import LocalModel

        return LocalModel(path=model_id or None, settings=settings)
    if provider == "openai" and model_id:
        from tether.models.openai import OpenAIModel

        return OpenAIModel(model_id, settings=settings)
    if provider == "anthropic" and model_id:
        from tether.models.anthropic import AnthropicModel

        return AnthropicModel(model_id, settings=settings)
    raise ConfigError(
        f"unknown model {name!r}: name it 'provider:model' with provider one of "
        f"{', '.join(_PROVIDERS)} (e.g. 'openai:gpt-4.1-mini', 'anthropic:claude-haiku-4-5', "
        "'local')"
    )
