"""From a provider's HTTP error to a typed `ModelError`, shared by every adapter."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from tether.errors import ModelAuthError, ModelError, ModelHTTPError, ModelRateLimited

__all__ = ["error_from_status", "parse_retry_after"]

_RETRYABLE = frozenset({408, 409, 429}) | frozenset(range(500, 600))
_RETRY_AFTER_CAP = 3600.0


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms`, `retry-after` (seconds or an HTTP date).

    Returns `None` when absent or unreadable; never negative; capped at an hour.
    """
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("retry-after-ms")
    if value is not None:
        try:
            return min(max(float(value) / 1000, 0.0), _RETRY_AFTER_CAP)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), _RETRY_AFTER_CAP)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), _RETRY_AFTER_CAP)


def error_from_status(
    status: int,
    message: str,
    *,
    model: str,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
) -> ModelError:
    """The tether error for an HTTP error status from a provider."""
    retry_after = parse_retry_after(headers)
    where = f"{model}: HTTP {status}: {message}"
    if status == 429:
        return ModelRateLimited(
            f"{where}. Rate limited; tether retries after the provider's Retry-After.",
            model=model,
            status_code=status,
            retry_after=retry_after,
            body=body,
        )
    if status in (401, 403):
        return ModelAuthError(
            f"{where}. The API key was rejected: check TETHER_{model.split(':')[0].upper()}"
            "_API_KEY (or the provider's own variable).",
            model=model,
            status_code=status,
            body=body,
        )
    hint = {
        400: "The request was rejected as malformed; this is not retried.",
        404: "The model or endpoint does not exist: check the model name and base URL.",
    }.get(status, "")
    return ModelHTTPError(
        f"{where}. {hint}".rstrip(". ") + ("." if hint else ""),
        model=model,
        retryable=status in _RETRYABLE,
        status_code=status,
        retry_after=retry_after,
        body=body,
    )
