"""Core runtime benchmark: tether's loop against a hand-written minimal loop.

    uv run python benchmarks/core.py            # full run (about a minute)
    uv run python benchmarks/core.py --quick    # smoke run (a few seconds)

Prints a table (target, tether, minimal loop, ratio to minimal, within target or over)
and writes it to benchmarks/out/core.json. Timings are informational: nothing here is
asserted, and tests never time anything. Both loops run in this process, interleaved,
so the ratio is more stable than either figure on a noisy machine.

Figures:
  1. overhead per step: many sequential runs of N steps (N-1 steps calling a trivial
     async tool with JSON arguments, then an answer), with a zero-latency model; wall
     time / (runs * N), median of several repeats. Nothing is subtracted: it includes
     the fake model's work (building its response), which is the same logical work in
     both loops.
  2. concurrency: 1,000 and 5,000 runs of 5 steps started at once, every model call
     sleeping 50 ms; wall time against the ideal 250 ms.
  3. memory per run: traced bytes held per live run while thousands are parked mid-run
     (in their third model call), from tracemalloc, after a full collection.
  4. parallel tools: one step with 5 tool calls that each sleep 100 ms; wall time.
  5. GC pressure: gc-tracked objects per live run, counted at the same moment as 3.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from minimal_loop import Tool as MinimalTool
from minimal_loop import add as minimal_add
from minimal_loop import make_model, minimal_run, tool_definitions

from tether import Agent, Policy, tool
from tether.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCall,
    Usage,
)
from tether.models import Model
from tether.testing import FunctionModel, ScriptedModel, call, reply

OUT = Path(__file__).resolve().parent / "out" / "core.json"


def arguments(step: int) -> str:
    """The tool-call arguments of a step: different each step, as in a real run (the same
    call repeated step after step is a loop, which tether's loop guard stops)."""
    return _ARGUMENTS[step] if step < len(_ARGUMENTS) else f'{{"a": {step}, "b": 2}}'


_ARGUMENTS = [f'{{"a": {step}, "b": 2}}' for step in range(64)]
USAGE = Usage(input_tokens=10, output_tokens=5)
KB = 1024


# --- the tether side ---------------------------------------------------------------------


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
async def slow(a: int, b: int) -> int:
    """Add two numbers, slowly (100 ms)."""
    await asyncio.sleep(0.1)
    return a + b


class BenchModel(Model):
    """The tether twin of `minimal_loop.make_model`: `steps - 1` tool-call steps, then
    an answer, read off the conversation length. It records nothing (unlike the testing
    models, which keep every request), so memory figures are the runtime's own.

    Fresh responses are built as an adapter without tether's `construct` builds them
    (validated tool calls; `model_construct` for the message and the response, each with
    a fields-set of its own), so a good part of what a live run holds for the collector
    is the model's; with `reuse`, each step's response is built once and shared by
    every run (no model work at all).
    """

    def __init__(
        self,
        steps: int,
        *,
        latency: float = 0.0,
        tool: str = "add",
        parallel: int = 1,
        wait: Callable[[int], Awaitable[None]] | None = None,
        reuse: bool = False,
    ) -> None:
        self.name = "bench"
        self.steps = steps
        self.latency = latency
        self.tool = tool
        self.parallel = parallel
        self.wait = wait
        self.prebuilt: list[ModelResponse] | None = None
        if reuse:
            self.prebuilt = [self.respond(s) for s in range(1, steps + 1)]

    def step_of(self, request: ModelRequest) -> int:
        return (len(request.messages) - 1) // (1 + self.parallel) + 1

    def respond(self, step: int) -> ModelResponse:
        if self.prebuilt is not None:
            return self.prebuilt[min(step, self.steps) - 1]
        parts: list[TextPart | ToolCall]
        if step < self.steps:
            parts = [
                ToolCall(id=f"call_{step}_{i}", name=self.tool, arguments=arguments(step))
                for i in range(self.parallel)
            ]
        else:
            parts = [TextPart(text="3")]
        return ModelResponse.model_construct(
            message=AssistantMessage.model_construct(parts=parts),
            usage=USAGE,
            model=self.name,
            finish_reason="tool_calls" if step < self.steps else "stop",
        )

    async def request(self, request: ModelRequest) -> ModelResponse:
        step = self.step_of(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.wait is not None:
            await self.wait(step)
        return self.respond(step)


CORE = Policy(retry=None, breaker=None, loop_guard=None)
"""The core runtime, as the core issue's targets measure it: no reliability policies."""


def tether_runner(
    model: Model, tools: Sequence[Any] = (add,), policy: Policy = CORE
) -> Callable[[], Awaitable[Any]]:
    agent = Agent(model=model, tools=list(tools), policy=policy)
    agent.spec()  # resolve once, as a long-lived agent would

    def run() -> Awaitable[Any]:
        return agent.run("1 + 2?")

    return run


def minimal_runner(model: Any) -> Callable[[], Awaitable[Any]]:
    tools: dict[str, MinimalTool] = {"add": minimal_add}
    definitions = tool_definitions(tools)

    def run() -> Awaitable[Any]:
        return minimal_run(model, tools, definitions, "1 + 2?")

    return run


# --- 1. overhead per step ----------------------------------------------------------------


async def _time_sequential(run: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    """Wall and CPU seconds for `runs` runs, one after another."""
    cpu, started = time.process_time(), time.perf_counter()
    for _ in range(runs):
        await run()
    return time.perf_counter() - started, time.process_time() - cpu


async def overhead(steps: int, runs: int, repeats: int) -> dict[str, Any]:
    """µs per step for each contender, median over `repeats`, interleaved.

    `tether` uses `ScriptedModel` (the issue's setting) and `minimal` a fake model that
    builds fresh dicts; `*_reuse` return prebuilt responses (runtime cost only);
    `tether_function` uses `FunctionModel` returning fully validated messages.
    """
    scripted = ScriptedModel(
        [*(call("add", raw=arguments(s)) for s in range(1, steps)), reply("3")] * runs
    )
    function_model = FunctionModel(_validated_responses(steps))
    contenders: dict[str, Callable[[], Awaitable[Any]]] = {
        "minimal": minimal_runner(make_model(steps)),
        "tether": tether_runner(scripted),
        "minimal_reuse": minimal_runner(make_model(steps, reuse=True)),
        "tether_reuse": tether_runner(BenchModel(steps, reuse=True)),
        "tether_function": tether_runner(function_model),
    }
    for run in contenders.values():  # warm up (imports, caches, specialisation)
        for _ in range(min(runs, 200)):
            await run()
        scripted.position, scripted.requests = 0, []
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            scripted.position, scripted.requests = 0, []
            function_model.requests = []
            gc.collect()
            elapsed, used = await _time_sequential(run, runs)
            samples[name].append(elapsed / (runs * steps) * 1e6)
            cpu[name].append(used / (runs * steps) * 1e6)
    scripted.requests, function_model.requests = [], []
    return {
        name: {
            "us_per_step": statistics.median(s),
            "cpu_us_per_step": statistics.median(cpu[name]),
            "samples_us": [round(x, 2) for x in s],
        }
        for name, s in samples.items()
    }


def _validated_responses(steps: int) -> Callable[[ModelRequest], ModelResponse]:
    def answer(request: ModelRequest) -> ModelResponse:
        step = (len(request.messages) - 1) // 2 + 1
        parts: list[TextPart | ToolCall] = (
            [ToolCall(id=f"call_{step}_0", name="add", arguments=arguments(step))]
            if step < steps
            else [TextPart(text="3")]
        )
        return ModelResponse(
            message=AssistantMessage(parts=parts),
            usage=Usage(input_tokens=10, output_tokens=5),
            model="function",
        )

    return answer


# --- 2. concurrency ----------------------------------------------------------------------


async def concurrency(n: int, steps: int, latency: float, repeats: int) -> dict[str, Any]:
    """`n` runs started at once, every model call sleeping `latency`; wall time.

    `tether` uses `BenchModel` (records nothing, like a provider adapter);
    `tether_function` uses `FunctionModel`, which keeps every request it was sent (a
    testing aid), so its runs hold more memory and pay for more garbage collection.
    """
    ideal = steps * latency
    bench = BenchModel(steps)

    async def answer(request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(latency)
        return bench.respond(bench.step_of(request))

    model = FunctionModel(answer)
    runners = {
        "minimal": minimal_runner(make_model(steps, latency=latency)),
        "tether": tether_runner(BenchModel(steps, latency=latency)),
        "tether_function": tether_runner(model),
        "tether_defaults": tether_runner(BenchModel(steps, latency=latency), policy=Policy()),
    }
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            model.requests = []  # FunctionModel records every request; not the runtime's
            gc.collect()
            started = time.perf_counter()
            results = await asyncio.gather(*(run() for _ in range(n)))
            samples[name].append(time.perf_counter() - started)
            assert len(results) == n
            del results
    model.requests = []
    return {
        name: {
            "wall_s": statistics.median(s),
            "ratio_to_ideal": statistics.median(s) / ideal,
            "samples_s": [round(x, 4) for x in s],
        }
        for name, s in samples.items()
    } | {"ideal_s": ideal, "runs": n}


# --- 3 and 5. memory and gc objects per live run -----------------------------------------


async def held_per_run(n: int, steps: int, make: str) -> dict[str, float]:
    """Park `n` runs in their third model call; bytes and gc objects held per run."""
    parked = 0
    all_parked = asyncio.Event()
    release = asyncio.Event()
    park_at = min(3, steps)

    async def wait(step: int) -> None:
        nonlocal parked
        if step == park_at:
            parked += 1
            if parked == n:
                all_parked.set()
            await release.wait()

    if make == "tether":
        run = tether_runner(BenchModel(steps, wait=wait))
    else:
        run = minimal_runner(make_model(steps, wait=wait))
    release.set()  # warm: anything built once per agent is not a per-run cost
    await run()
    await run()
    release.clear()
    parked = 0

    for _ in range(3):  # let the event loop drop what earlier phases left in its callbacks
        await asyncio.sleep(0)
    gc.collect()
    objects_before = len(gc.get_objects())
    tracemalloc.start()
    bytes_before = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.ensure_future(run()) for _ in range(n)]
    await all_parked.wait()
    gc.collect()
    bytes_held = tracemalloc.get_traced_memory()[0] - bytes_before
    tracemalloc.stop()
    objects_held = len(gc.get_objects()) - objects_before
    release.set()
    await asyncio.gather(*tasks)
    del tasks
    return {"bytes_per_run": bytes_held / n, "gc_objects_per_run": objects_held / n}


# --- 4. parallel tool calls --------------------------------------------------------------


async def parallel_tools(calls: int, repeats: int) -> dict[str, Any]:
    async def minimal_slow(a: int, b: int) -> int:
        await asyncio.sleep(0.1)
        return a + b

    tools: dict[str, MinimalTool] = {"slow": minimal_slow}
    definitions = tool_definitions(tools)
    minimal_model = make_model(2, tool="slow", parallel=calls)
    runners = {
        "minimal": lambda: minimal_run(minimal_model, tools, definitions, "1 + 2?"),
        "tether": tether_runner(BenchModel(2, tool="slow", parallel=calls), tools=[slow]),
    }
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            started = time.perf_counter()
            await run()
            samples[name].append(time.perf_counter() - started)
    return {name: {"wall_s": statistics.median(s)} for name, s in samples.items()}


# --- report -------------------------------------------------------------------------------


def _row(
    metric: str, target: str, tether: str, minimal: str, ratio: float, ok: bool | None
) -> list[str]:
    verdict = "-" if ok is None else ("within" if ok else "OVER")
    return [metric, target, tether, minimal, f"{ratio:.2f}x", verdict]


def _print_table(rows: list[list[str]]) -> None:
    header = ["figure", "target", "tether", "minimal loop", "tether/minimal", "target?"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print(line)


async def main(quick: bool, out: Path = OUT) -> dict[str, Any]:
    steps, latency = 5, 0.05
    runs, repeats = (300, 3) if quick else (2000, 7)
    sizes = (1000,) if quick else (1000, 5000)
    memory_runs = 1000 if quick else 5000

    mode = "quick" if quick else "full"
    print(f"tether core benchmark ({mode}); python {platform.python_version()}")
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": quick,
        "steps_per_run": steps,
    }
    print(
        f"1. overhead: {runs} sequential runs of {steps} steps, median of {repeats} ...", flush=True
    )
    results["overhead"] = await overhead(steps, runs, repeats)
    one_step = await overhead(1, runs, repeats)
    results["overhead_1_step"] = one_step

    results["concurrency"] = {}
    for n in sizes:
        print(f"2. concurrency: {n} runs x {steps} steps x {latency * 1000:.0f} ms ...", flush=True)
        results["concurrency"][str(n)] = await concurrency(n, steps, latency, 1 if quick else 3)

    print(f"3/5. memory and gc objects: {memory_runs} runs parked mid-run ...", flush=True)
    results["held"] = {
        name: await held_per_run(memory_runs, steps, name) for name in ("minimal", "tether")
    }

    print("4. 5 parallel 100 ms tool calls in one step ...", flush=True)
    results["parallel_tools"] = await parallel_tools(5, 3 if quick else 5)

    o, c, h, p = (results[k] for k in ("overhead", "concurrency", "held", "parallel_tools"))

    def per_step(name: str, figures: dict[str, Any] = o) -> float:
        return float(figures[name]["us_per_step"])

    def shown(name: str, figures: dict[str, Any] = o) -> str:
        """Wall µs per step, and CPU µs (what this process itself spent) beside it."""
        return f"{figures[name]['us_per_step']:.1f} (cpu {figures[name]['cpu_us_per_step']:.1f})"

    def overhead_row(label: str, ours: str, base: str, figures: dict[str, Any] = o) -> list[str]:
        ratio = per_step(ours, figures) / per_step(base, figures)
        return _row(label, "", shown(ours, figures), shown(base, figures), ratio, None)

    t_us, m_us = per_step("tether"), per_step("minimal")
    rows = [
        _row(
            "overhead per step (us), ScriptedModel",
            "<= 30",
            shown("tether"),
            shown("minimal"),
            t_us / m_us,
            t_us <= 30,
        ),
        overhead_row("  runtime only (prebuilt responses)", "tether_reuse", "minimal_reuse"),
        overhead_row("  FunctionModel, validated messages", "tether_function", "minimal"),
        overhead_row("  1-step run, whole run (us)", "tether", "minimal", one_step),
    ]
    for size, limit in (("1000", 1.5), ("5000", 3.0)):
        if size not in c:
            continue
        tr, mr = c[size]["tether"]["ratio_to_ideal"], c[size]["minimal"]["ratio_to_ideal"]
        rows.append(
            _row(
                f"{size} concurrent x 5 steps (x ideal 250 ms)",
                f"<= {limit}x",
                f"{tr:.2f}x ({c[size]['tether']['wall_s'] * 1000:.0f} ms)",
                f"{mr:.2f}x ({c[size]['minimal']['wall_s'] * 1000:.0f} ms)",
                tr / mr,
                tr <= limit,
            )
        )
        for key, label in (
            ("tether_function", "  same, FunctionModel (keeps requests)"),
            ("tether_defaults", "  same, default policies (retry, breaker, guard)"),
        ):
            fr = c[size][key]["ratio_to_ideal"]
            rows.append(
                _row(
                    label,
                    "",
                    f"{fr:.2f}x ({c[size][key]['wall_s'] * 1000:.0f} ms)",
                    f"{mr:.2f}x",
                    fr / mr,
                    None,
                )
            )
    tb, mb = h["tether"]["bytes_per_run"], h["minimal"]["bytes_per_run"]
    rows.append(
        _row(
            "memory per live run (KB)",
            "<= 20",
            f"{tb / KB:.1f}",
            f"{mb / KB:.1f}",
            tb / mb,
            tb <= 20 * KB,
        )
    )
    tg, mg = h["tether"]["gc_objects_per_run"], h["minimal"]["gc_objects_per_run"]
    rows.append(_row("gc objects per live run", "", f"{tg:.0f}", f"{mg:.0f}", tg / mg, None))
    tp, mp = p["tether"]["wall_s"], p["minimal"]["wall_s"]
    rows.append(
        _row(
            "5 parallel 100 ms tools, step (ms)",
            "~100",
            f"{tp * 1000:.1f}",
            f"{mp * 1000:.1f}",
            tp / mp,
            tp <= 0.11,
        )
    )
    print()
    _print_table(rows)
    print("KB = 1024 bytes. Timings are wall-clock on this machine; compare ratios, not absolutes.")
    results["table"] = rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))  # noqa: ASYNC240 - once, at the end
    print(f"written: {out}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds: smaller sizes, fewer repeats"
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON results (default {OUT})")
    parser.add_argument(
        "--gc-tuned",
        action="store_true",
        help="as a process hosting thousands of runs may be set up: gc.freeze() after "
        "start-up and gc.set_threshold(50_000, 20, 20) (tether never does this itself)",
    )
    args = parser.parse_args()
    if args.gc_tuned:
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
    asyncio.run(main(args.quick, args.out))
