"""Settings from the environment (`TETHER_*`) and a `.env` file.

API keys are `SecretStr`: they print as `**********` and are only unwrapped at the
provider boundary. The provider's own variable names (`OPENAI_API_KEY`,
`ANTHROPIC_API_KEY`) are read too, so existing deployments work unchanged.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "TierBudget", "get_settings"]


class TierBudget(BaseModel):
    """What one tier's runs, users and tenants may spend, in USD (`None`: no limit).

    Example (`TETHER_BUDGET_TIERS`):
        `{"free": {"run_usd": 0.1, "user_day_usd": 1}, "pro": {"user_day_usd": 50}}`
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    user_day_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Per user per UTC day, across every run, process and machine."""
    tenant_day_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    """Per tenant per UTC day, across all its users."""


def _default_cache_dir() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tether"


class Settings(BaseSettings):
    """Everything tether reads from the environment. Field `x` is `TETHER_X`."""

    model_config = SettingsConfigDict(
        env_prefix="TETHER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    default_model: str | None = None
    """Model used when an agent names none. Unset: `local`, unless an API key is set."""

    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TETHER_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("TETHER_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("TETHER_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TETHER_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"),
    )
    model_timeout: float = 120.0
    """Seconds one model call may take, end to end."""

    local_model: Path | None = None
    """A GGUF file for `model="local"` instead of the embedded Qwen2.5-Coder-1.5B."""
    local_threads: int | None = None
    """CPU threads for the local model; unset uses every core."""
    local_context: int = 8192
    """Context window (tokens) of the local model."""
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    """Where the embedded model file is assembled once."""

    database_url: str = "sqlite:///.tether/tether.db"
    """Run history, the side-effect ledger, shared budgets and the durable engine's
    journal. SQLite (a file, WAL mode) by default; `postgresql://...` to scale out."""
    app_version: str = "1"
    """The durable application version. Runs started under one version are resumed
    only by processes of that version: bump it when a deploy changes what a run does
    step by step (its tools, their order, the loop), and drain the old version first."""
    budget_tiers: dict[str, TierBudget] = Field(default_factory=dict)
    """Named spending tiers (JSON), e.g. free and pro; see `TierBudget`."""
    tenant_tiers: dict[str, str] = Field(default_factory=dict)
    """Which tier each tenant is on (JSON), e.g. `{"acme": "pro"}`."""
    default_tier: str | None = None
    """The tier of a run whose tenant has none (and of runs with no tenant)."""
    shared_policy_state: bool = True
    """Durable runs keep their circuit breakers and rate-limit buckets in the database,
    so every process on it shares them (a limit of 500 requests per minute is 500 for
    all workers together). Off: each process keeps its own."""
    worker_heartbeat_s: float = Field(default=2.0, gt=0)
    """How often a worker writes its heartbeat."""
    worker_stale_s: float = Field(default=15.0, gt=0)
    """A worker whose heartbeat is older than this is dead; its runs are resumed."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    log_format: Literal["json", "console"] = "json"

    def resolve_default_model(self) -> str:
        """The model an agent uses when it names none."""
        if self.default_model:
            return self.default_model
        if self.openai_api_key is not None:
            return "openai:gpt-4.1-mini"
        if self.anthropic_api_key is not None:
            return "anthropic:claude-haiku-4-5"
        return "local"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call `get_settings.cache_clear()`."""
    return Settings()
