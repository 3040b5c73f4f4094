"""Policy overhead: µs per step with every reliability policy on (and no faults) against
the bare loop.

    uv run python benchmarks/policies.py            # full run (about 10 s)
    uv run python benchmarks/policies.py --quick    # smoke run (a few seconds)

Contenders, each a long-lived agent running many sequential runs of N steps (N-1 steps
calling a trivial async tool, then an answer) on the zero-latency `BenchModel` of
`core.py`, its tool arguments varied per step so the loop guard has nothing to stop:

  bare           Policy(retry=None, breaker=None, loop_guard=None): no policy at all
  defaults       Policy(): the production defaults (retry, breaker, loop guard)
  all            every policy: retry, breaker, deployment and per-user rate limits
                 (requests and tokens), a budget (cost, tokens, requests, tool calls),
                 the loop guard and a run timeout
  all, 2 tiers   the same with a fallback chain of two models (the primary serves)

Rounds are interleaved and the median of several is reported. Nothing is asserted;
tests never time anything.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import USAGE, BenchModel, add

from tether import Agent, Policy
from tether.messages import AssistantMessage, ModelResponse, TextPart, ToolCall
from tether.models import ModelPrice, register_price
from tether.policy.breaker import Breaker
from tether.policy.budget import Budget
from tether.policy.loop_guard import LoopGuard
from tether.policy.ratelimit import RateLimits
from tether.policy.retry import Retry

BIG = 10**12


class VariedBenchModel(BenchModel):
    """`BenchModel` whose tool calls differ from step to step (as real ones do), so the
    loop guard sees no loop. Responses are built once per step, shared by every run."""

    def __init__(self, steps: int, name: str = "bench") -> None:
        super().__init__(steps)
        self.name = name
        self.prebuilt = [self._build(s) for s in range(1, steps + 1)]

    def _build(self, step: int) -> ModelResponse:
        parts: list[TextPart | ToolCall]
        if step < self.steps:
            parts = [ToolCall(id=f"call_{step}", name="add", arguments=f'{{"a": {step}, "b": 2}}')]
        else:
            parts = [TextPart(text="3")]
        return ModelResponse.model_construct(
            message=AssistantMessage.model_construct(parts=parts),
            usage=USAGE,
            model=self.name,
            finish_reason="tool_calls" if step < self.steps else "stop",
        )


def all_policies() -> Policy:
    return Policy(
        retry=Retry(),
        breaker=Breaker(),
        rate_limits=RateLimits(
            requests_per_minute=BIG, tokens_per_minute=BIG, user_requests_per_minute=BIG
        ),
        budget=Budget(run_usd=1e6, run_tokens=BIG, run_requests=BIG, run_tool_calls=BIG),
        loop_guard=LoopGuard(),
        timeout=3600.0,
    )


def runner(model: Any, policy: Policy) -> Callable[[], Awaitable[Any]]:
    agent = Agent(model=model, tools=[add], policy=policy)
    agent.spec()  # resolve once, as a long-lived agent would

    def run() -> Awaitable[Any]:
        return agent.run("1 + 2?", user="u-1")

    return run


async def _time(run: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    cpu, started = time.process_time(), time.perf_counter()
    for _ in range(runs):
        result = await run()
    assert result.status == "completed", result.status
    return time.perf_counter() - started, time.process_time() - cpu


async def measure(steps: int, runs: int, repeats: int) -> dict[str, dict[str, float]]:
    for name in ("bench", "bench-b"):  # the budget prices every model it may use
        register_price(name, ModelPrice(input=0.10, output=0.40))
    bare = Policy(retry=None, breaker=None, loop_guard=None)
    contenders = {
        "bare": runner(VariedBenchModel(steps), bare),
        "defaults": runner(VariedBenchModel(steps), Policy()),
        "all": runner(VariedBenchModel(steps), all_policies()),
        "all, 2 tiers": runner(
            [VariedBenchModel(steps), VariedBenchModel(steps, name="bench-b")], all_policies()
        ),
    }
    for run in contenders.values():  # warm up
        await _time(run, min(runs, 200))
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            gc.collect()
            elapsed, used = await _time(run, runs)
            wall[name].append(elapsed / (runs * steps) * 1e6)
            cpu[name].append(used / (runs * steps) * 1e6)
    return {
        name: {"us_per_step": statistics.median(wall[name]), "cpu_us": statistics.median(cpu[name])}
        for name in contenders
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer runs")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    runs, repeats = (200, 3) if args.quick else (2000, 7)
    figures = asyncio.run(measure(args.steps, runs, repeats))
    base = figures["bare"]["us_per_step"]
    print(
        f"policy overhead: {runs} sequential runs x {args.steps} steps, median of {repeats}"
        f" (Python {sys.version.split()[0]})"
    )
    print(f"{'contender':<14} {'µs/step':>8} {'(cpu)':>8} {'+ over bare':>12}")
    for name, figure in figures.items():
        extra = figure["us_per_step"] - base
        print(
            f"{name:<14} {figure['us_per_step']:>8.1f} {figure['cpu_us']:>8.1f} "
            f"{'' if name == 'bare' else f'{extra:+.1f}':>12}"
        )
    worst = max(f["us_per_step"] for f in figures.values()) - base
    print(f"target: <= 60 µs per step on top of the bare loop; worst here {worst:+.1f} µs")


if __name__ == "__main__":
    main()
