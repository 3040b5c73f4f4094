"""A fork server for crash tests: `tether` commands in real processes, without paying
for Python's imports each time.

A `tether` process spends most of its start importing (openai, DBOS, SQLAlchemy,
pydantic), seconds on a small machine, while the run it is killed in lasts well under
one. This server imports all that once, then for each request forks a child that runs
the `tether` console script's entry point (`tether.cli:main`) with the request's
arguments, environment, working directory and output files. A child is a real process:
the test SIGKILLs it by pid, and it dies mid-write like any other. Nothing is started
before a fork (no thread, no connection, no settings read), so each child begins as a
fresh `tether` process would, minus the import time.

Protocol (one JSON object per line):
    stdin:  {"id": N, "argv": [...], "env": {...}, "cwd": "...", "stdout": PATH, "stderr": PATH}
    stdout: {"id": N, "pid": PID}             when the child is forked
            {"pid": PID, "returncode": CODE}   when it ends (-9: killed by SIGKILL)
The server exits when its stdin closes (after reaping the children left).
"""

from __future__ import annotations

import json
import os
import select
import sys
import traceback
from typing import Any

import tether.cli
import tether.durable
import tether.models.openai  # imported here, once, for the children
from tether.settings import get_settings


def _child(request: dict[str, Any]) -> int:
    os.chdir(request["cwd"])
    stdin = os.open(os.devnull, os.O_RDONLY)
    stdout = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    stderr = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.dup2(stderr, 2)
    os.environ.clear()
    os.environ.update(request["env"])
    get_settings.cache_clear()
    sys.argv = ["tether", *request["argv"]]
    try:
        tether.cli.main()
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _fork(request: dict[str, Any]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _child(request)
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    return pid


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _reap(block: bool) -> int:
    """Report the children that ended; how many were reaped."""
    reaped = 0
    while True:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        _say({"pid": pid, "returncode": code})


def main() -> None:
    buffer = b""
    open_ = True
    while open_:
        ready, _, _ = select.select([0], [], [], 0.01)
        if ready:
            data = os.read(0, 1 << 16)
            if not data:
                open_ = False
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    request = json.loads(line)
                    _say({"id": request["id"], "pid": _fork(request)})
        _reap(block=False)
    _reap(block=True)


if __name__ == "__main__":
    main()
