"""Where the garbage collector's time goes while thousands of runs are in flight.

    uv run python benchmarks/gc_pressure.py              # 5,000 runs, default collector
    uv run python benchmarks/gc_pressure.py --tuned      # after gc.freeze() + higher thresholds
    uv run python benchmarks/gc_pressure.py --runs 2000

For tether (core runtime; with the default policies; with a model that builds its
responses with `tether.messages.construct` as `ScriptedModel` does) and the minimal loop
in turn: wall time of one batch of concurrent 5-step runs (50 ms per model call), the
collector's time and number of collections per generation (from `gc.callbacks`), and the
same batch with the collector disabled, which bounds what GC work can cost. The
collection counts follow from what the runs allocate and keep, so unlike the times they
hardly move with the load on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import USAGE, BenchModel, arguments, minimal_runner, tether_runner
from minimal_loop import make_model

from tether import Policy
from tether.messages import AssistantMessage, ModelResponse, TextPart, ToolCall, construct

_spent = [0.0, 0.0, 0.0]
_count = [0, 0, 0]
_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _spent[info["generation"]] += time.perf_counter() - _started[0]
        _count[info["generation"]] += 1


class TrustedBenchModel(BenchModel):
    """`BenchModel` building its responses as `ScriptedModel` does: trusted values through
    `construct`, whose objects share one fields-set per class (what the model allocates
    then differs from the minimal loop's fake model far less)."""

    def respond(self, step: int) -> ModelResponse:
        parts: list[TextPart | ToolCall]
        if step < self.steps:
            parts = [
                construct(
                    ToolCall,
                    type="tool_call",
                    id=f"call_{step}_{i}",
                    name=self.tool,
                    arguments=arguments(step),
                )
                for i in range(self.parallel)
            ]
        else:
            parts = [construct(TextPart, type="text", text="3")]
        return construct(
            ModelResponse,
            message=construct(AssistantMessage, role="assistant", parts=parts),
            usage=USAGE,
            model=self.name,
            finish_reason="tool_calls" if step < self.steps else "stop",
        )


async def _batch(n: int, run: Callable[[], Awaitable[Any]]) -> tuple[float, list[float], list[int]]:
    gc.collect()
    _spent[:] = [0.0, 0.0, 0.0]
    _count[:] = [0, 0, 0]
    gc.callbacks.append(_on_gc)
    try:
        started = time.perf_counter()
        await asyncio.gather(*(run() for _ in range(n)))
        return time.perf_counter() - started, list(_spent), list(_count)
    finally:
        gc.callbacks.remove(_on_gc)


async def main(runs: int) -> None:
    steps, latency = 5, 0.05
    contenders = {
        "tether": tether_runner(BenchModel(steps, latency=latency)),
        "defaults": tether_runner(BenchModel(steps, latency=latency), policy=Policy()),
        "trusted": tether_runner(TrustedBenchModel(steps, latency=latency)),
        "minimal": minimal_runner(make_model(steps, latency=latency)),
    }
    print(f"{runs} concurrent runs x {steps} steps x {latency * 1000:.0f} ms; ideal 250 ms")
    print(
        "GC ms per generation (collections in brackets); defaults: tether with Policy(); "
        "trusted: tether, the model building with construct"
    )
    print(f"{'':9} {'wall ms':>7} {'x ideal':>7} {'gen0':>11} {'gen1':>11} {'gen2':>11}  no-gc ms")
    for name, run in contenders.items():
        await _batch(runs, run)  # warm up
        wall, spent, count = await _batch(runs, run)
        gc.disable()
        try:
            no_gc, _, _ = await _batch(runs, run)
        finally:
            gc.enable()
        gen = " ".join(f"{s * 1000:5.0f} ({c:3})" for s, c in zip(spent, count, strict=True))
        ratio = wall / (steps * latency)
        print(f"{name:9} {wall * 1000:7.0f} {ratio:6.2f}x {gen}  {no_gc * 1000:8.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument(
        "--tuned", action="store_true", help="gc.freeze() + set_threshold(50_000, 20, 20)"
    )
    args = parser.parse_args()
    if args.tuned:
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
    asyncio.run(main(args.runs))
