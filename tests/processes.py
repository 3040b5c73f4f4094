"""Run one function in several spawned processes at once, against one database.

Store tests prove what holds when processes race (migrations, budget reservations,
shared policy state): `together(work, url, n)` starts `n` fresh interpreters, each calls
`work(url, index, ready)`, doing its own set-up and then calling `ready()`, which
returns only when all `n` are set up, so the racing part starts at once everywhere.
It returns what each returned, by index, and fails the test with every child's error.

`work` must be a module-level function (a spawned child imports it by name).
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from typing import Any

__all__ = ["together"]

Work = Callable[[str, int, Callable[[], None]], Any]


def _child(work: Work, url: str, index: int, barrier: Any, results: Any) -> None:
    try:
        value = work(url, index, lambda: barrier.wait(timeout=120))
    except BaseException as exc:
        results.put((index, None, f"process {index}: {type(exc).__name__}: {exc}"))
    else:
        results.put((index, value, ""))


def together(work: Work, url: str, processes: int, *, timeout: float = 240) -> dict[int, Any]:
    """`work(url, index, ready)` in `processes` spawned processes at once; their
    results by index. Fails the test if one raised, exited uncleanly or went silent."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    children = [
        context.Process(target=_child, args=(work, url, i, barrier, results))
        for i in range(processes)
    ]
    for child in children:
        child.start()
    values: dict[int, Any] = {}
    errors: list[str] = []
    try:
        for _ in children:
            index, value, error = results.get(timeout=timeout)
            values[index] = value
            if error:
                errors.append(error)
    except queue.Empty:
        errors.append("a process reported nothing")
    finally:
        for child in children:
            child.join(timeout=60)
            if child.is_alive():
                child.kill()
                child.join()
    assert errors == []
    assert [child.exitcode for child in children] == [0] * processes
    return values
