"""`Policy`: what a user declares about how runs of an agent are governed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tether.errors import ConfigError
from tether.messages import EffectPolicy
from tether.policy.limits import UsageLimitPolicy, UsageLimits

__all__ = ["Policy"]


@dataclass(frozen=True, slots=True)
class Policy:
    """How runs of an agent are governed.

    Args:
        max_steps: Model calls a run may make before `MaxStepsExceeded`.
        limits: Requests, tool calls and tokens a run may spend.
        output_retries: Re-asks after a final answer fails validation.
        extra: Your own effect policies, placed inside tether's (closest to the call).
    """

    max_steps: int = 20
    limits: UsageLimits = field(default_factory=UsageLimits)
    output_retries: int = 2
    extra: Sequence[EffectPolicy] = ()

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ConfigError(f"Policy.max_steps must be >= 1, got {self.max_steps}")
        if self.output_retries < 0:
            raise ConfigError(f"Policy.output_retries must be >= 0, got {self.output_retries}")

    def layers(self) -> list[EffectPolicy]:
        """The effect policies this declaration asks for, outermost first."""
        layers: list[EffectPolicy] = []
        if self.limits.any:
            layers.append(UsageLimitPolicy(self.limits))
        layers.extend(self.extra)
        return layers
