"""Policies: small objects applied to every effect through the seam, and their config."""

from tether.policy.breaker import Breaker
from tether.policy.buckets import SharedRateLimitStore
from tether.policy.budget import Budget
from tether.policy.circuits import SharedBreakerStore
from tether.policy.clock import SYSTEM_CLOCK, Clock, SystemClock
from tether.policy.limits import UsageLimitPolicy, UsageLimits
from tether.policy.loop_guard import LoopGuard
from tether.policy.ratelimit import RateLimits
from tether.policy.retry import Retry
from tether.policy.spec import Policy

__all__ = [
    "SYSTEM_CLOCK",
    "Breaker",
    "Budget",
    "Clock",
    "LoopGuard",
    "Policy",
    "RateLimits",
    "Retry",
    "SharedBreakerStore",
    "SharedRateLimitStore",
    "SystemClock",
    "UsageLimitPolicy",
    "UsageLimits",
]
