"""Settings from the environment, default model resolution, model names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from tether import Agent, ConfigError, Settings, get_settings
from tether.models import infer_model
from tether.observe import logs
from tether.testing import ScriptedModel, reply

VARIABLES = [
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "TETHER_OPENAI_API_KEY",
    "TETHER_OPENAI_BASE_URL",
    "TETHER_ANTHROPIC_API_KEY",
    "TETHER_ANTHROPIC_BASE_URL",
    "TETHER_DEFAULT_MODEL",
    "TETHER_MODEL_TIMEOUT",
    "TETHER_LOG_LEVEL",
    "TETHER_LOG_FORMAT",
    "TETHER_LOCAL_CONTEXT",
    "TETHER_LOCAL_THREADS",
    "TETHER_LOCAL_MODEL",
    "TETHER_CACHE_DIR",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No variables from the real environment, no `.env` from the working directory."""
    # Logging is configured from settings; keep a test's TETHER_LOG_LEVEL from outliving it.
    monkeypatch.setattr(logs, "_logger", logs._logger)
    monkeypatch.setattr(logs, "_level", logs._level)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class TestEnvironment:
    def test_defaults(self) -> None:
        settings = get_settings()
        assert settings.default_model is None
        assert settings.openai_api_key is None
        assert settings.anthropic_api_key is None
        assert settings.model_timeout == 120.0
        assert settings.log_level == "WARNING"
        assert settings.log_format == "json"
        assert settings.local_context == 8192

    def test_tether_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TETHER_DEFAULT_MODEL", "anthropic:claude-haiku-4-5")
        monkeypatch.setenv("TETHER_MODEL_TIMEOUT", "7.5")
        monkeypatch.setenv("TETHER_LOG_LEVEL", "DEBUG")
        monkeypatch.setenv("TETHER_LOCAL_THREADS", "3")
        monkeypatch.setenv("TETHER_OPENAI_BASE_URL", "http://localhost:8000/v1")
        settings = get_settings()
        assert settings.default_model == "anthropic:claude-haiku-4-5"
        assert settings.model_timeout == 7.5
        assert settings.log_level == "DEBUG"
        assert settings.local_threads == 3
        assert settings.openai_base_url == "http://localhost:8000/v1"

    def test_provider_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://localhost:9000")
        settings = get_settings()
        assert settings.openai_api_key is not None
        assert settings.openai_api_key.get_secret_value() == "sk-openai"
        assert settings.anthropic_api_key is not None
        assert settings.anthropic_api_key.get_secret_value() == "sk-ant"
        assert settings.anthropic_base_url == "http://localhost:9000"

    def test_tether_variable_wins_over_provider_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "from-provider")
        monkeypatch.setenv("TETHER_OPENAI_API_KEY", "from-tether")
        key = get_settings().openai_api_key
        assert key is not None
        assert key.get_secret_value() == "from-tether"

    def test_settings_are_cached_until_cleared(self, monkeypatch: pytest.MonkeyPatch) -> None:
        first = get_settings()
        monkeypatch.setenv("TETHER_MODEL_TIMEOUT", "3")
        assert get_settings() is first
        get_settings.cache_clear()
        assert get_settings().model_timeout == 3

    def test_dotenv_file(self, tmp_path: Path) -> None:
        (tmp_path / ".env").write_text(
            "TETHER_DEFAULT_MODEL=openai:gpt-4.1\nOPENAI_API_KEY=sk-env\n"
        )
        settings = Settings()
        assert settings.default_model == "openai:gpt-4.1"
        assert settings.openai_api_key is not None
        assert settings.openai_api_key.get_secret_value() == "sk-env"

    def test_bad_values_are_rejected(self, monkeypatch: pytest.MonkeyPatch) -> None:
        with monkeypatch.context() as patched:
            patched.setenv("TETHER_LOG_LEVEL", "LOUD")
            with pytest.raises(ValidationError, match="log_level"):
                Settings()

    def test_keys_are_secret(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
        settings = Settings()
        assert "sk-very-secret" not in repr(settings)
        assert "sk-very-secret" not in settings.model_dump_json()


class TestDefaultModel:
    def test_local_without_keys(self) -> None:
        assert get_settings().resolve_default_model() == "local"

    def test_openai_with_an_openai_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
        assert get_settings().resolve_default_model() == "openai:gpt-4.1-mini"

    def test_anthropic_with_an_anthropic_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
        assert get_settings().resolve_default_model() == "anthropic:claude-haiku-4-5"

    def test_openai_first_with_both_keys(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
        assert get_settings().resolve_default_model() == "openai:gpt-4.1-mini"

    def test_explicit_default_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
        monkeypatch.setenv("TETHER_DEFAULT_MODEL", "anthropic:claude-sonnet-4-5")
        assert get_settings().resolve_default_model() == "anthropic:claude-sonnet-4-5"


class TestInferModel:
    def test_a_model_instance_is_returned_as_is(self) -> None:
        model = ScriptedModel([])
        assert infer_model(model) is model

    @pytest.mark.parametrize(
        "name", ["gpt-4.1-mini", "openai:", "anthropic:", "mistral:large", "openai", ":x", ""]
    )
    def test_bad_names_list_the_accepted_forms(self, name: str) -> None:
        settings = Settings(default_model="nonsense")
        with pytest.raises(ConfigError) as info:
            infer_model(name, settings)
        message = str(info.value)
        assert "provider:model" in message
        for form in ("openai", "anthropic", "local", "openai:gpt-4.1-mini"):
            assert form in message

    def test_none_uses_the_configured_default(self) -> None:
        with pytest.raises(ConfigError, match="'nonsense'"):
            infer_model(None, Settings(default_model="nonsense"))

    def test_not_a_name(self) -> None:
        with pytest.raises(ConfigError, match="Model"):
            Agent(model=42)  # type: ignore[arg-type]

    async def test_agent_resolves_names_on_first_use(self) -> None:
        agent = Agent(model="nope:model")  # no error until a run needs it
        with pytest.raises(ConfigError, match="unknown model 'nope:model'"):
            await agent.run("hi")

    async def test_agent_default_timeout_comes_from_settings(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TETHER_MODEL_TIMEOUT", "9")
        get_settings.cache_clear()
        model = ScriptedModel([reply("hi")])
        await Agent(model=model).run("hi")
        assert model.requests[0].settings.timeout == 9
