"""Where the garbage collector's time goes while thousands of runs are in flight.

    uv run python benchmarks/gc_pressure.py              # 5,000 runs, default collector
    uv run python benchmarks/gc_pressure.py --tuned      # after gc.freeze() + higher thresholds
    uv run python benchmarks/gc_pressure.py --runs 2000

For tether and the minimal loop in turn: wall time of one batch of concurrent 5-step
runs (50 ms per model call), the collector's time per generation (from `gc.callbacks`),
and the same batch with the collector disabled, which bounds what GC work can cost.
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

from core import BenchModel, minimal_runner, tether_runner
from minimal_loop import make_model

_spent = [0.0, 0.0, 0.0]
_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _spent[info["generation"]] += time.perf_counter() - _started[0]


async def _batch(n: int, run: Callable[[], Awaitable[Any]]) -> tuple[float, list[float]]:
    gc.collect()
    _spent[:] = [0.0, 0.0, 0.0]
    gc.callbacks.append(_on_gc)
    try:
        started = time.perf_counter()
        await asyncio.gather(*(run() for _ in range(n)))
        return time.perf_counter() - started, list(_spent)
    finally:
        gc.callbacks.remove(_on_gc)


async def main(runs: int) -> None:
    steps, latency = 5, 0.05
    contenders = {
        "tether": tether_runner(BenchModel(steps, latency=latency)),
        "minimal": minimal_runner(make_model(steps, latency=latency)),
    }
    print(f"{runs} concurrent runs x {steps} steps x {latency * 1000:.0f} ms; ideal 250 ms")
    print(f"{'':10} {'wall ms':>8} {'x ideal':>8} {'gen0':>6} {'gen1':>6} {'gen2':>6}  no-gc ms")
    for name, run in contenders.items():
        await _batch(runs, run)  # warm up
        wall, spent = await _batch(runs, run)
        gc.disable()
        try:
            no_gc, _ = await _batch(runs, run)
        finally:
            gc.enable()
        gen = " ".join(f"{s * 1000:6.0f}" for s in spent)
        ratio = wall / (steps * latency)
        print(f"{name:10} {wall * 1000:8.0f} {ratio:7.2f}x {gen}  {no_gc * 1000:8.0f}")


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
