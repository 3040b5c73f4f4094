"""Policies: small objects applied to every effect through the seam, and their config."""

from tether.policy.limits import UsageLimitPolicy, UsageLimits
from tether.policy.spec import Policy

__all__ = ["Policy", "UsageLimitPolicy", "UsageLimits"]
