"""Observability: structured logs (and, later, traces and metrics)."""

from tether.observe.effect_log import LogEffects, log_retry
from tether.observe.logs import configure_logging, enabled, get_logger

__all__ = ["LogEffects", "configure_logging", "enabled", "get_logger", "log_retry"]
