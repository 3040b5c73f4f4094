"""`FakeClock`: virtual time for policies under test (retries, breakers, rate limits).

Policies read the time and wait through `tether.policy.clock.Clock`; give them a
`FakeClock` and a test that backs off for minutes runs in milliseconds, deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import math

__all__ = ["FakeClock"]

_MAX_BUSY_TICKS = 1_000
"""Loop iterations the clock waits for runnable tasks to settle before it jumps anyway,
so a task that spins on `asyncio.sleep(0)` cannot stop virtual time."""


class FakeClock:
    """Virtual monotonic time that jumps ahead instead of waiting (a `Clock`).

    `sleep(seconds)` parks the caller until virtual time reaches `now() + seconds`. Time
    jumps only when the event loop has nothing else ready to run, and then straight to
    the earliest deadline: concurrent sleepers wake in deadline order (ties in the order
    they went to sleep), and each sees `now()` equal to its own deadline, as with a real
    clock. So concurrent runs share one timeline: ten runs backing off 2 s at once take
    2 virtual seconds, not 20, and a rate limiter's 60 s window means what it says.

    Work that is not a clock sleep takes no virtual time. A task waiting on something
    else (a thread, a socket) does not hold virtual time back.

    Args:
        start: The initial `now()`.

    Attributes:
        sleeps: Every `sleep` asked for, in seconds, in order (zero and negative ones too).

    Example:
        ```python
        clock = FakeClock()
        retry = Retry(attempts=3, clock=clock)
        ...
        assert clock.sleeps == [1.0, 2.0]
        clock.advance(30)  # e.g. let a breaker cool down
        ```
    """

    __slots__ = ("_advancer", "_now", "_seq", "_sleepers", "sleeps")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []  # a heap
        self._seq = 0
        self._advancer: asyncio.AbstractEventLoop | None = None
        """The loop on which a `_tick` is scheduled (None when none is)."""

    def now(self) -> float:
        """Virtual seconds."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of virtual time (at least one pass of the event loop)."""
        self.sleeps.append(seconds)
        if not seconds > 0:  # also NaN
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        deadline = self._now + seconds if math.isfinite(seconds) else math.inf
        heapq.heappush(self._sleepers, (deadline, self._seq, wake))
        self._seq += 1
        if self._advancer is not loop:
            self._advancer = loop
            loop.call_soon(self._tick, loop, 0)
        await wake  # cancelled: the entry is dropped when it comes up

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by `seconds`, waking the sleepers it reaches."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        self._wake_until(self._now + seconds)

    @property
    def sleeping(self) -> int:
        """How many tasks are parked in `sleep` now."""
        return sum(1 for _, _, wake in self._sleepers if not wake.done())

    def _wake_until(self, deadline: float) -> None:
        if deadline > self._now:
            self._now = deadline
        sleepers = self._sleepers
        while sleepers and sleepers[0][0] <= self._now:
            wake = heapq.heappop(sleepers)[2]
            if not wake.done():
                wake.set_result(None)

    def _tick(self, loop: asyncio.AbstractEventLoop, busy_ticks: int) -> None:
        """Jump to the earliest deadline once the loop has nothing else to run."""
        sleepers = self._sleepers
        while sleepers and sleepers[0][2].done():  # cancelled sleepers
            heapq.heappop(sleepers)
        if not sleepers or loop.is_closed():
            self._advancer = None
            return
        # CPython's event loop keeps its runnable callbacks in `_ready`; another loop
        # gets a fixed number of passes to settle instead.
        ready = getattr(loop, "_ready", None)
        busy = bool(ready) if ready is not None else busy_ticks < 100
        if busy and busy_ticks < _MAX_BUSY_TICKS:
            loop.call_soon(self._tick, loop, busy_ticks + 1)
            return
        deadline = sleepers[0][0]
        if deadline == math.inf:  # only endless sleepers left: they wait for advance()
            self._advancer = None
            return
        self._wake_until(deadline)
        loop.call_soon(self._tick, loop, 0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now}, sleeping={self.sleeping})"
