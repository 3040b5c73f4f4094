"""DBOS's console log handler, made to write to the current `sys.stderr`."""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["dbos_logs_to_current_stderr"]


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to `sys.stderr` as it is at each record, not as it was when created (DBOS's
    own console handler keeps the stream of its first launch, which a CLI runner or a
    test harness may have closed since)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def dbos_logs_to_current_stderr() -> None:
    """Give DBOS's logger its console handler first (DBOS adds its own only if none)."""
    dbos_logger = logging.getLogger("dbos")
    if not dbos_logger.handlers:
        dbos_logger.propagate = False
        handler = _CurrentStderr()
        handler.name = "__dbos_console_log_handler__"
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s [%(levelname)8s] (%(name)s:%(filename)s:%(lineno)s) %(message)s",
                datefmt="%H:%M:%S",
            )
        )
        dbos_logger.addHandler(handler)
