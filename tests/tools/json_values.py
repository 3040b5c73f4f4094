"""Comparing what a tool received with the JSON values that were sent (test helpers)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def as_json(value: Any) -> Any:
    """A received value back as JSON data: models by alias (only keys that were set)."""
    if isinstance(value, BaseModel):
        return as_json(value.model_dump(by_alias=True, exclude_unset=True))
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    return value


def same(got: Any, want: Any) -> bool:
    """Equal with types (a bool is not an int); an int sent for a float may become a float."""
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(got, float) and isinstance(want, int | float):
        return got == want
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in got)
    return type(got) is type(want) and got == want
