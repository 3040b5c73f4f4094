"""tether's structured logs: JSON lines (or console) through structlog.

tether keeps a logger of its own rather than configuring structlog globally, so
importing tether never changes how your application logs. Its level and format come
from settings (`TETHER_LOG_LEVEL`, default WARNING, and `TETHER_LOG_FORMAT`); below the
level a log call is a no-op, which keeps the hot path free of formatting.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "enabled", "get_logger"]

_logger: Any = None
_level = logging.WARNING


def configure_logging(
    level: str | int | None = None, *, format: str | None = None, stream: TextIO | None = None
) -> None:
    """Set tether's log level (`DEBUG`/`INFO`/`WARNING`/`ERROR`), format and stream.

    Args:
        level: Events below it cost nothing. Default: `TETHER_LOG_LEVEL`.
        format: `json` (one object per line) or `console`. Default: `TETHER_LOG_FORMAT`.
        stream: Where lines go; stderr by default.
    """
    global _logger, _level
    from tether.settings import get_settings

    settings = get_settings()
    chosen = level if level is not None else settings.log_level
    _level = chosen if isinstance(chosen, int) else logging.getLevelNamesMapping()[chosen.upper()]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if (format or settings.log_format) == "console"
        else structlog.processors.JSONRenderer()
    )
    _logger = structlog.wrap_logger(
        structlog.PrintLogger(stream or sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level),
        logger_name="tether",
    )


def get_logger() -> Any:
    """tether's logger (configured from settings on first use)."""
    if _logger is None:
        configure_logging()
    return _logger


def enabled(level: int) -> bool:
    """Whether events at `level` are emitted: lets callers skip building them."""
    if _logger is None:
        configure_logging()
    return level >= _level
