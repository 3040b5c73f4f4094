"""Crash recovery: runs SIGKILLed at seeded random points, then resumed, on SQLite and
PostgreSQL.

Each run is `tether run tests/durable/agents/crashy.py:agent "charge order R" --run-id R`
in a real process, against real parts only: the store's database (a SQLite file, or a
fresh PostgreSQL database), a local HTTP server speaking the OpenAI chat-completions
API (the model), and a local HTTP "downstream" that the tools call. The conversation is
always the same three steps: the model asks for `lookup(order)`, then for the side
effect `charge(order, amount)`, then answers with the receipt.

A trial kills its run 1 to 4 times, each time at a point drawn from a seeded RNG: an
anchor (the process's start; the run's first appearance in the store or the journal;
or the moment the model server or the downstream received one of the run's requests
that is not journaled yet) plus a random delay, so kills land before, inside and after
model calls and tool calls, and in the journal's and the ledger's writes around them.
Where each kill fell is then read from the journal, the ledger and the servers. After
each kill the test does what an operator would: `tether resume R` (or `tether run ...
--run-id R` again when the run's journal never began), and, when a run stopped with
`OutcomeUnknown`, it asks the downstream and answers with `tether resolve R --step N
--result RECEIPT` (the charge happened) or `--retry` (it did not). Resumes and resolves
are killed too. Several trials run at once against the same database.

What must hold, per run:
- it completes, with the answer the model gives for that run;
- the model server gets no request for a step after that step was journaled (each
  completed call is paid once), and each step's call is made at most once per attempt;
- `agent` (charge idempotent, keyed by `ctx.idempotency_key`): the downstream applies
  the charge exactly once, and the run never stops with `OutcomeUnknown`;
- `unsafe` (charge not idempotent): the downstream gets exactly one charge request (it
  is never sent again after a kill), and an attempt ends in `OutcomeUnknown` exactly
  when it starts from a kill that fell inside the charge (its ledger row `started`).

Processes come from a fork server (`agents/forkserver.py`) that has imported tether
once: a fresh interpreter spends seconds importing, while a run lasts well under one.
Each child runs the `tether` console script's entry point with its own arguments and
environment, as a separate process that the test SIGKILLs by pid.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.fakes.http_server import FakeHTTPServer, Reply, Request
from tests.fakes.openai_server import Answer, error, validate_request
from tether.durable import Runtime
from tether.durable.replay import recorded_steps
from tether.store import LedgerEntry

HERE = Path(__file__).resolve().parent
AGENTS = HERE / "agents" / "crashy.py"
FORKSERVER = HERE / "agents" / "forkserver.py"

SEED = 20_240_611
MIN_KILLS = 50
"""Kills per database, at least."""
PARALLEL = 4
"""Trials at once (each its own run, all on the same database)."""
MODEL_DELAY_S = 0.05
"""How long the model server holds each answer (so kills land inside model calls)."""
TOOL_DELAY_S = 0.05
"""How long the downstream holds each answer (so kills land inside tool calls)."""
ATTEMPT_TIMEOUT_S = 60.0

EFFECTS: tuple[tuple[str, int], ...] = (
    ("model", 0),
    ("lookup", 0),
    ("model", 1),
    ("charge", 0),
    ("model", 2),
)
"""The run's effects in order: (kind, model step); the journal's step names follow."""
STEP_NAMES = ("model", "tool:lookup", "model", "tool:charge", "model")


def _clean_environ() -> dict[str, str]:
    """This process's environment without tether's settings or provider keys."""
    prefixes = ("TETHER_", "OPENAI_", "ANTHROPIC_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


# -- the world the runs touch --------------------------------------------------------------


class Activity:
    """What the servers saw, per run: `(run_id, what)` counters that a test can wait on."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.counts: Counter[tuple[str, str]] = Counter()

    def note(self, run_id: str, what: str) -> None:
        with self.changed:
            self.counts[(run_id, what)] += 1
            self.changed.notify_all()

    def count(self, run_id: str, what: str) -> int:
        with self.changed:
            return self.counts[(run_id, what)]


def _truncated(request: Request) -> bool:
    """Whether the client died while sending the request (a kill mid-write): a server
    answers that with an error, and nothing happens."""
    return len(request.body) < int(request.headers.get("content-length") or 0)


def _amount(order: str) -> int:
    return 10 + sum(map(ord, order)) % 90


class ModelServer:
    """OpenAI chat completions, answered from the conversation (a real HTTP server).

    The run id is the last word of the user's message; the step is the number of tool
    results so far: 0 asks for `lookup`, 1 for `charge` (with the amount looked up), 2
    answers with the receipt. Every request is counted as `model:<step>` before it is
    answered, and the answer is held `MODEL_DELAY_S`.
    """

    def __init__(self, activity: Activity) -> None:
        self.activity = activity
        self.invalid: list[str] = []
        self.truncated = 0
        self.server = FakeHTTPServer(self._handle)

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1"

    def _handle(self, request: Request) -> Reply:
        if _truncated(request):
            self.truncated += 1
            return error(400, "truncated request", type="invalid_request_error")
        body = request.json()
        why = validate_request(body)
        if why is not None or request.path != "/v1/chat/completions":
            self.invalid.append(why or f"unexpected path {request.path}")
            return error(400, why or "unexpected path", type="invalid_request_error")
        messages = body["messages"]
        run_id = next(m["content"] for m in messages if m["role"] == "user").split()[-1]
        results = [m["content"] for m in messages if m["role"] == "tool"]
        step = len(results)
        self.activity.note(run_id, f"model:{step}")
        if step == 0:
            answer = Answer(calls=[(f"call-{run_id}-0", "lookup", json.dumps({"order": run_id}))])
        elif step == 1:
            arguments = {"order": run_id, "amount": int(results[0])}
            answer = Answer(calls=[(f"call-{run_id}-1", "charge", json.dumps(arguments))])
        else:
            answer = Answer(text=f"charged {run_id}: {results[1]}")
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks: list[tuple[str | None, Any]] = [(None, c) for c in answer.chunks(usage)]
            return Reply(sse=[*chunks, (None, "[DONE]")], delay=MODEL_DELAY_S)
        return Reply(json=answer.completion(), delay=MODEL_DELAY_S)


@dataclass(frozen=True)
class Charge:
    """One charge request the downstream received."""

    order: str
    key: str | None
    receipt: str
    applied: bool
    """False when it was a repeat of a key already applied (deduped)."""


class Downstream:
    """The service the tools call: `GET /lookup?order=` and `POST /charge`.

    A charge is applied when its request arrives (before the held answer), so a kill
    while the tool waits leaves one that happened without the run knowing. A request
    with a `key` already applied is not applied again (it gets the same receipt).
    """

    def __init__(self, activity: Activity) -> None:
        self.activity = activity
        self.lock = threading.Lock()
        self.charges: list[Charge] = []
        self._by_key: dict[str, str] = {}
        self.server = FakeHTTPServer(self._handle)

    def _handle(self, request: Request) -> Reply:
        url = urlparse(request.path)
        if request.method == "GET" and url.path == "/lookup":
            order = parse_qs(url.query)["order"][0]
            self.activity.note(order, "lookup")
            return Reply(json={"amount": _amount(order)}, delay=TOOL_DELAY_S)
        if request.method == "POST" and url.path == "/charge":
            if _truncated(request):
                return Reply(status=400, json={"error": "truncated request"})
            body = request.json()
            order, key = body["order"], body["key"]
            with self.lock:
                receipt = self._by_key.get(key) if key is not None else None
                applied = receipt is None
                if receipt is None:
                    receipt = f"rcpt-{order}-{len(self.charges)}"
                    if key is not None:
                        self._by_key[key] = receipt
                self.charges.append(Charge(order, key, receipt, applied))
            self.activity.note(order, "charge")
            return Reply(json={"receipt": receipt}, delay=TOOL_DELAY_S)
        return Reply(status=404, json={"error": f"no {request.method} {request.path}"})

    def of(self, order: str) -> list[Charge]:
        with self.lock:
            return [c for c in self.charges if c.order == order]


# -- processes -----------------------------------------------------------------------------


@dataclass
class Child:
    pid: int
    stdout: Path
    stderr: Path
    argv: list[str]

    def output(self) -> str:
        return (
            f"$ tether {' '.join(self.argv)}\n"
            f"--- stdout\n{self.stdout.read_text()[-3000:]}\n"
            f"--- stderr\n{self.stderr.read_text()[-3000:]}"
        )


class Launcher:
    """Starts `tether` commands as processes forked from `agents/forkserver.py`."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(FORKSERVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_clean_environ(),
            text=True,
            bufsize=1,
        )
        self._changed = threading.Condition()
        self._pids: dict[int, int] = {}
        self._ended: dict[int, int] = {}
        self._next = 0
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            message = json.loads(line)
            with self._changed:
                if "id" in message:
                    self._pids[message["id"]] = message["pid"]
                else:
                    self._ended[message["pid"]] = message["returncode"]
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def start(self, argv: list[str], env: dict[str, str], cwd: Path, tag: str) -> Child:
        with self._changed:
            self._next += 1
            request_id = self._next
        request: dict[str, Any] = {
            "id": request_id,
            "argv": argv,
            "env": env,
            "cwd": str(cwd),
            "stdout": str(cwd / f"{tag}.out"),
            "stderr": str(cwd / f"{tag}.err"),
        }
        assert self._process.stdin is not None
        with self._changed:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            # The first waits for the server's imports.
            if not self._changed.wait_for(lambda: request_id in self._pids or self._closed, 120):
                raise TimeoutError("the fork server did not answer")
            if request_id not in self._pids:
                raise RuntimeError("the fork server exited")
            pid = self._pids.pop(request_id)
        return Child(pid, Path(request["stdout"]), Path(request["stderr"]), argv)

    def returncode(self, child: Child) -> int | None:
        with self._changed:
            return self._ended.get(child.pid)

    def wait(self, child: Child, timeout: float) -> int:
        with self._changed:
            if not self._changed.wait_for(lambda: child.pid in self._ended, timeout):
                os.kill(child.pid, signal.SIGKILL)
                self._changed.wait_for(lambda: child.pid in self._ended, 10)
                raise AssertionError(f"hung for {timeout:.0f}s (killed):\n{child.output()}")
            return self._ended.pop(child.pid)

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(30)


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    launcher = Launcher()
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Activity, ModelServer, Downstream]]:
    activity = Activity()
    model, downstream = ModelServer(activity), Downstream(activity)
    model.server.start()
    downstream.server.start()
    try:
        yield activity, model, downstream
    finally:
        model.server.stop()
        downstream.server.stop()


# -- trials --------------------------------------------------------------------------------


@dataclass
class Kill:
    """One SIGKILL: where it was aimed, and where it fell (read from the record after)."""

    command: str
    anchor: str
    delay_s: float
    fell: str
    """One of `FELL`."""
    ledger: str | None
    """The charge's ledger row status after the kill (None: no row)."""


FELL = (
    "before the run",
    "between steps",
    "inside a model call",
    "inside lookup",
    "inside charge, before it was sent",
    "inside charge, after it was sent",
    "inside charge, after its ledger finished",
    "after the last step",
)
"""Where a kill can fall: before the run's journal began, between two effects (or
before the first, or while a resumed run replays its journal), inside an effect (its
request seen by the server, or its ledger row written, and its step not journaled), or
after the last effect was journaled."""


@dataclass
class Trial:
    index: int
    run_id: str
    unsafe: bool
    planned_kills: int
    kills: list[Kill] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    outcome_unknown: int = 0
    resolutions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    journaled_at: dict[int, int] = field(default_factory=dict)
    """Per model step: the server's request count when the step was first seen journaled."""
    reaching: Counter[int] = field(default_factory=Counter)
    """Per model step: the attempts that started with the step not journaled yet."""


class Harness:
    """Runs trials against one database: the operator, the killer and the auditor."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        launcher: Launcher,
        world: tuple[Activity, ModelServer, Downstream],
    ) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.launcher = launcher
        self.activity, self.model, self.downstream = world
        self.env = _clean_environ()
        self.env.update(
            TETHER_DATABASE_URL=database_url,
            TETHER_OPENAI_BASE_URL=self.model.base_url,
            TETHER_OPENAI_API_KEY="sk-test",
            CRASHY_DOWNSTREAM_URL=self.downstream.server.url,
        )
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

    # -- what the store and the journal say

    @property
    def runtime(self) -> Runtime:
        """Reads the store and the journal (never launched: it runs nothing)."""
        with self._lock:
            if self._runtime is None:
                self._runtime = Runtime(self.database_url)
            return self._runtime

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.shutdown()

    def journaled(self, run_id: str) -> list[str]:
        """The names of the run's effects that completed and were journaled, in order."""
        if self.runtime.status(run_id) is None:
            return []
        steps = recorded_steps(self.runtime.client, run_id)
        return [s.name for s in steps if s.error is None]

    def charge_entry(self, run_id: str) -> LedgerEntry | None:
        entries = [e for e in self.runtime.store.ledger.of_run(run_id) if e.tool == "charge"]
        assert len(entries) <= 1, entries
        return entries[0] if entries else None

    def seen(self, run_id: str) -> Counter[str]:
        """What the servers have seen of a run so far."""
        whats = ["lookup", "charge", *(f"model:{s}" for s in range(3))]
        return Counter({w: self.activity.count(run_id, w) for w in whats})

    # -- the operator

    def command(self, trial: Trial) -> tuple[list[str], str]:
        """What an operator runs next for this run, and a name for it."""
        run_id = trial.run_id
        record = self.runtime.store.runs.get(run_id)
        if record is None or self.runtime.status(run_id) is None:
            # It never started (killed before its journal began): start it again.
            target = f"{AGENTS}:{'unsafe' if trial.unsafe else 'agent'}"
            return ["run", target, f"charge order {run_id}", "--run-id", run_id, "--json"], "run"
        entry = self.charge_entry(run_id)
        if record.status == "outcome_unknown" and entry is not None and entry.status == "started":
            # Did the charge happen? The downstream knows; the operator asks it.
            step = str(entry.step_id)
            charged = self.downstream.of(run_id)
            if charged:
                trial.resolutions.append("result")
                return [
                    "resolve",
                    run_id,
                    "--step",
                    step,
                    "--result",
                    charged[-1].receipt,
                ], "resolve"
            trial.resolutions.append("retry")
            return ["resolve", run_id, "--step", step, "--retry"], "resolve"
        return ["resume", run_id, "--force"], "resume"  # it killed the process itself

    # -- the killer

    def aim(
        self, rng: random.Random, trial: Trial, command: str, journaled: list[str]
    ) -> tuple[str, float]:
        """A kill point: an anchor (`start`; `recorded`, the run in the store or its
        journal; or a server's `what` for this run) and a delay after it."""
        choices: list[tuple[str, float]] = [("start", rng.uniform(0.0, 0.3))]
        if command == "run":
            choices.append(("recorded", rng.uniform(0.0, 0.03)))
        pending = EFFECTS[len(journaled) :]
        for kind, step in pending:
            if kind == "model":
                choices.append((f"model:{step}", rng.uniform(0.0, 2 * MODEL_DELAY_S)))
            else:
                choices.append((kind, rng.uniform(0.0, 2 * TOOL_DELAY_S)))
        if ("charge", 0) in pending and trial.unsafe:
            # Around the non-idempotent charge, more often: before it is sent (it
            # prepares after the model's answer), and while the downstream holds it.
            preparing = MODEL_DELAY_S + rng.uniform(0.0, 0.06)
            choices += [("model:1", preparing), ("charge", rng.uniform(0.0, TOOL_DELAY_S))]
        return rng.choice(choices)

    def wait_for(self, child: Child, run_id: str, anchor: str, before: Counter[str]) -> bool:
        """Wait for the anchor; False if the child ended first."""
        deadline = time.monotonic() + ATTEMPT_TIMEOUT_S
        if anchor == "start":
            return True
        if anchor == "recorded":  # in the store or in the journal, whichever is first
            runtime = self.runtime
            while runtime.store.runs.get(run_id) is None and runtime.status(run_id) is None:
                if self.launcher.returncode(child) is not None or time.monotonic() > deadline:
                    return False
                time.sleep(0.002)
            return True
        with self.activity.changed:
            while self.activity.counts[(run_id, anchor)] <= before[anchor]:
                if self.launcher.returncode(child) is not None or time.monotonic() > deadline:
                    return False
                self.activity.changed.wait(0.01)
        return True

    def fell(self, trial: Trial, before: Counter[str]) -> tuple[str, str | None]:
        """Where a kill fell, from the journal, the ledger and the servers."""
        run_id = trial.run_id
        entry = self.charge_entry(run_id)
        ledger = None if entry is None else entry.status
        if self.runtime.status(run_id) is None:
            return "before the run", ledger
        done = self.journaled(run_id)
        if len(done) >= len(EFFECTS):
            return "after the last step", ledger
        kind, step = EFFECTS[len(done)]
        sent = self.activity.count(run_id, kind if kind != "model" else f"model:{step}")
        sent_now = sent > before[kind if kind != "model" else f"model:{step}"]
        if kind == "charge":
            if ledger == "finished":
                return "inside charge, after its ledger finished", ledger
            if ledger == "started":
                if sent_now:
                    return "inside charge, after it was sent", ledger
                return "inside charge, before it was sent", ledger
            if sent_now:
                trial.problems.append("the charge was sent with no ledger row")
            return "between steps", ledger
        if sent_now:
            return "inside a model call" if kind == "model" else f"inside {kind}", ledger
        return "between steps", ledger

    # -- a trial

    def note_journaled(self, trial: Trial) -> list[str]:
        done = self.journaled(trial.run_id)
        if done != list(STEP_NAMES[: len(done)]):
            trial.problems.append(f"the journal is {done}")
        for kind, step in EFFECTS[: len(done)]:
            if kind == "model" and step not in trial.journaled_at:
                trial.journaled_at[step] = self.activity.count(trial.run_id, f"model:{step}")
        return done

    def run_trial(self, trial: Trial) -> None:
        """Start, kill and resume the run until it completes (or goes wrong)."""
        rng = random.Random(f"{SEED}:{trial.run_id}")
        for attempt in range(1, trial.planned_kills + 8):
            done = self.note_journaled(trial)
            for step in range(3):
                if step not in trial.journaled_at:
                    trial.reaching[step] += 1
            argv, command = self.command(trial)
            entry = self.charge_entry(trial.run_id)
            # The charge's outcome is unknown: the last kill fell inside it.
            unknown = entry is not None and entry.status == "started"
            trial.commands.append(command)
            before = self.seen(trial.run_id)
            child = self.launcher.start(argv, self.env, self.workdir, f"{trial.run_id}-{attempt}")
            aimed: tuple[str, float] | None = None
            if len(trial.kills) < trial.planned_kills:
                anchor, delay = self.aim(rng, trial, command, done)
                if self.wait_for(child, trial.run_id, anchor, before):
                    time.sleep(delay)
                    if self.launcher.returncode(child) is None:
                        os.kill(child.pid, signal.SIGKILL)
                        aimed = (anchor, delay)
            code = self.launcher.wait(child, ATTEMPT_TIMEOUT_S)
            if code == -signal.SIGKILL and aimed is not None:
                where, ledger = self.fell(trial, before)
                trial.kills.append(Kill(command, aimed[0], aimed[1], where, ledger))
                continue
            record = self.runtime.store.runs.get(trial.run_id)
            status = None if record is None else record.status
            # OutcomeUnknown exactly when a non-idempotent charge was interrupted.
            expected = "outcome_unknown" if trial.unsafe and unknown else "completed"
            if command == "resolve":
                expected = "completed"
            if status != expected or code != (1 if expected == "outcome_unknown" else 0):
                trial.problems.append(
                    f"attempt {attempt} ({command}) exited {code}, the run is {status}; "
                    f"expected {expected}:\n{child.output()}"
                )
                return
            if status == "outcome_unknown":
                trial.outcome_unknown += 1
                continue
            self.note_journaled(trial)
            return
        trial.problems.append(f"not completed after {len(trial.commands)} attempts")

    # -- the auditor

    def check(self, trial: Trial) -> None:
        run_id = trial.run_id
        problems = trial.problems
        record = self.runtime.store.runs.get(run_id)
        if record is None or record.status != "completed":
            problems.append(f"it ended {None if record is None else record.status}")
            return
        charges = self.downstream.of(run_id)
        applied = [c for c in charges if c.applied]
        receipt = applied[0].receipt if applied else None
        if record.output is None or json.loads(record.output) != f"charged {run_id}: {receipt}":
            problems.append(f"its output is {record.output}; the downstream's receipt {receipt}")
        if self.journaled(run_id) != list(STEP_NAMES):
            problems.append(f"its journal is {self.journaled(run_id)}")
        for step in range(3):
            # A journaled call is never made again; any call, at most once an attempt.
            count = self.activity.count(run_id, f"model:{step}")
            if count != trial.journaled_at.get(step):
                problems.append(
                    f"model step {step}: {count} requests, {trial.journaled_at.get(step)} "
                    "when it was journaled"
                )
            if not 1 <= count <= trial.reaching[step]:
                problems.append(
                    f"model step {step}: {count} requests in {trial.reaching[step]} attempts"
                )
        if trial.unsafe:
            if len(charges) != 1:
                problems.append(f"the non-idempotent charge was sent {len(charges)} times")
        elif len(applied) != 1 or len({c.key for c in charges}) != 1:
            problems.append(f"the idempotent charge: {charges}")


def _summary(trials: list[Trial], activity: Activity, downstream: Downstream) -> dict[str, Any]:
    fell = Counter(k.fell for t in trials for k in t.kills)
    repeats = sum(activity.count(t.run_id, f"model:{s}") - 1 for t in trials for s in range(3))
    return {
        "trials": len(trials),
        "attempts": sum(len(t.commands) for t in trials),
        "kills": sum(len(t.kills) for t in trials),
        "fell": {where: fell[where] for where in FELL},
        "model calls made again (in flight at a kill)": repeats,
        "idempotent charges sent again (deduped downstream)": sum(
            len(downstream.of(t.run_id)) - 1 for t in trials if not t.unsafe
        ),
        "outcome_unknown": sum(t.outcome_unknown for t in trials),
        "resolutions": dict(Counter(r for t in trials for r in t.resolutions)),
    }


def test_runs_killed_at_random_points_complete_once_resumed(
    database_url: str,
    tmp_path: Path,
    launcher: Launcher,
    world: tuple[Activity, ModelServer, Downstream],
) -> None:
    backend = database_url.split(":", 1)[0]
    rng = random.Random(f"{SEED}:{backend}")
    trials: list[Trial] = []
    while sum(t.planned_kills for t in trials) < MIN_KILLS + 16:
        index = len(trials)
        trials.append(
            Trial(
                index=index,
                run_id=f"{backend[:2]}{index:03d}x{rng.randrange(16**6):06x}",
                unsafe=index % 2 == 1,
                planned_kills=0 if index == 0 else rng.randint(1, 4),
            )
        )
    harness = Harness(database_url, tmp_path, launcher, world)
    try:
        # The first run is not killed, and runs alone: it creates the schema.
        harness.run_trial(trials[0])
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(harness.run_trial, trials[1:]))
        for trial in trials:
            harness.check(trial)
    finally:
        harness.close()
    summary = _summary(trials, world[0], world[2])
    print(f"\n{backend}: {json.dumps(summary, indent=1)}")

    problems = [f"run {t.run_id} (kills: {t.kills}): {p}" for t in trials for p in t.problems]
    assert not problems, "\n\n".join(problems)
    assert world[1].invalid == []
    assert summary["kills"] >= MIN_KILLS, summary
    # The kills did land everywhere (a harness that only ever killed idle processes
    # would pass the checks above vacuously).
    fell = summary["fell"]
    assert fell["inside a model call"] >= 1, fell
    assert fell["between steps"] >= 1, fell
    inside_tools = [
        n for where, n in fell.items() if where.startswith(("inside lookup", "inside charge"))
    ]
    assert sum(inside_tools) >= 1, fell
    assert summary["outcome_unknown"] >= 1, summary
