"""Where tether's per-step CPU goes: cProfile over many sequential runs.

    uv run python benchmarks/profile_core.py                 # 5-step runs, prebuilt responses
    uv run python benchmarks/profile_core.py --steps 1       # the fixed cost of a run
    uv run python benchmarks/profile_core.py --scripted      # with ScriptedModel's own work
    uv run python benchmarks/profile_core.py --concurrent 5000   # runs in flight, 50 ms model

cProfile inflates the cost of each Python call, so read the ranking and call counts
(calls per run = ncalls / runs), not the absolute times; `core.py` has the real figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import BenchModel, arguments, tether_runner

from tether.testing import ScriptedModel, call, reply


async def main(steps: int, runs: int, scripted: bool, concurrent: int, top: int) -> None:
    if scripted:
        script = [*(call("add", raw=arguments(s)) for s in range(1, steps)), reply("3")]
        model: ScriptedModel | BenchModel = ScriptedModel(script * (runs + 200))
    elif concurrent:
        model = BenchModel(steps, latency=0.05)
    else:
        model = BenchModel(steps, reuse=True)
    run = tether_runner(model)
    for _ in range(200):
        await run()
    profile = cProfile.Profile()
    if concurrent:
        profile.enable()
        await asyncio.gather(*(run() for _ in range(concurrent)))
        runs = concurrent
    else:
        profile.enable()
        for _ in range(runs):
            await run()
    profile.disable()
    print(f"{runs} runs of {steps} steps; ncalls / {runs} = calls per run")
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--scripted", action="store_true", help="use ScriptedModel")
    parser.add_argument("--concurrent", type=int, default=0, help="runs in flight at once")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.runs, args.scripted, args.concurrent, args.top))
