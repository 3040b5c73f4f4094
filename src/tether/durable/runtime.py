"""`Runtime`: durable runs on DBOS, in this process or on workers.

One runtime per process (DBOS is process-wide). It opens the store, launches DBOS on
the same database, and knows the agents this process can run, by name: a run
enqueued anywhere is picked up by any process that registered its agent.

    runtime = Runtime()                     # TETHER_DATABASE_URL, SQLite by default
    runtime.register(agent, target="app.agents:support")
    runtime.launch()
    result = await runtime.run("support", "Refund order 42", user="u-17")

Upgrades: a run is resumed only by processes of the application version it started
under (`TETHER_APP_VERSION`). Keep the version while a deploy leaves what runs do
step by step unchanged; bump it when tools, their order or the loop change, and keep
a worker of the old version up until its runs have drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from dbos import DBOS, DBOSClient, DBOSConfig, SetWorkflowID, WorkflowHandleAsync
from dbos._error import DBOSNonExistentWorkflowError

from tether.durable import recovery, workflow
from tether.durable.budget import SharedBudget, Tiers
from tether.durable.dbos_logs import dbos_logs_to_current_stderr
from tether.durable.heartbeat import Heartbeat
from tether.durable.side_effects import SideEffects
from tether.durable.steps import Journal
from tether.errors import ConfigError
from tether.loop import RunSpec, Sink
from tether.messages import EffectPolicy, RunResult
from tether.models import price_of
from tether.policy import Policy, SharedBreakerStore, SharedRateLimitStore
from tether.settings import Settings, get_settings
from tether.store import LedgerEntry, Store, create_engine
from tether.tools import ToolSet

__all__ = ["QUEUE_NAME", "DurableAgent", "Runtime"]

QUEUE_NAME = workflow.QUEUE_NAME


class DurableAgent(Protocol):
    """What the runtime needs of an agent (`tether.Agent` is one)."""

    name: str
    tools: ToolSet
    policy: Policy

    def spec(self, model: Any = None, *, outer: Any = (), policy: Any = None) -> RunSpec: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Entry:
    agent: DurableAgent
    target: str | None
    deps: Any
    policy: Policy
    outer: dict[Hashable, tuple[EffectPolicy, ...]] = field(default_factory=dict)


class Runtime:
    """The durable runtime of this process.

    Args:
        database_url: Defaults to `TETHER_DATABASE_URL` (`sqlite:///.tether/tether.db`).
        app_version: Defaults to `TETHER_APP_VERSION`; see the module docs on upgrades.
        executor_id: This process's name in the journal; a fresh one by default, so a
            process never takes over another's runs except through the reaper.
        settings: Instead of the process settings (tiers, heartbeat intervals).
        shared_policy_state: Keep the agents' circuit breakers and rate-limit buckets
            in the database, shared by every process on it (`TETHER_SHARED_POLICY_STATE`,
            on by default); a store an agent's policy names itself stays its own.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        app_version: str | None = None,
        executor_id: str | None = None,
        settings: Settings | None = None,
        shared_policy_state: bool | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.database_url = database_url or self.settings.database_url
        self.app_version = app_version or self.settings.app_version
        self.executor_id = (
            executor_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        self.store = Store(self.database_url)
        self.tiers = Tiers(self.settings)
        if shared_policy_state is None:
            shared_policy_state = self.settings.shared_policy_state
        self._shared: tuple[SharedBreakerStore, SharedRateLimitStore] | None = None
        if shared_policy_state:
            states = self.store.policy_states
            self._shared = (SharedBreakerStore(states), SharedRateLimitStore(states))
        self._agents: dict[str, _Entry] = {}
        self._launched = False
        self._here = f"tether-here-{self.executor_id}"
        self._here_registered = False
        self._client: DBOSClient | None = None
        self._heartbeat: Heartbeat | None = None
        self._sinks: dict[str, Sink] = {}

    # -- agents ---------------------------------------------------------------------------

    def register(self, agent: DurableAgent, *, target: str | None = None, deps: Any = None) -> None:
        """Let this process run `agent`'s runs (by `agent.name`).

        Args:
            target: Where its code is (`module:attr` or `path.py:attr`), recorded with
                each run so `tether resume` and workers can load it.
            deps: What its tools get as `ctx.deps` in this process.
        """
        found = self._agents.get(agent.name)
        if found is not None and found.agent is not agent:
            raise ConfigError(
                f"another agent is already registered as {agent.name!r}; give each a "
                "distinct Agent(name=...)"
            )
        policy = agent.policy
        if self._shared is not None:
            policy = policy.with_shared_state(*self._shared)
        self._agents[agent.name] = _Entry(agent, target, deps, policy)

    def _entry(self, name: str) -> _Entry:
        found = self._agents.get(name)
        if found is None:
            raise ConfigError(
                f"no agent named {name!r} is registered in this process (registered: "
                f"{', '.join(sorted(self._agents)) or 'none'}); start the worker with its "
                "target, e.g. `tether worker app/agents.py:agent`"
            )
        return found

    def durable_spec(self, name: str, model: str | None = None) -> RunSpec:
        """The run spec of agent `name` with the journal and shared budget outermost."""
        entry = self._entry(name)
        outer = entry.outer.get(model)
        if outer is None:
            plain = entry.agent.spec(model, policy=entry.policy)
            budget = SharedBudget(
                self.store.budgets, self.tiers.budget_of, plain.effects.model_names, price_of
            )
            outer = (Journal(entry.agent.tools, SideEffects(self.store.ledger)), budget)
            entry.outer[model] = outer
        return entry.agent.spec(model, outer=outer, policy=entry.policy)

    async def aclose_agents(self) -> None:
        """Close the registered agents' model connections (they belong to this loop)."""
        for entry in self._agents.values():
            await entry.agent.aclose()
            entry.outer.clear()

    def deps_of(self, name: str) -> Any:
        """What agent `name`'s tools get as `ctx.deps` here."""
        return self._entry(name).deps

    # -- lifecycle --------------------------------------------------------------------------

    def launch(self, *, queues: list[str] | None = None, kind: str = "cli") -> None:
        """Start DBOS on the store's database; this process then runs the workflows it
        starts or resumes (and, with `queues`, those it pulls from them)."""
        if self._launched:
            return
        config: DBOSConfig = {
            "name": "tether",
            "system_database_url": self.store.engine.url.render_as_string(hide_password=False),
            "system_database_engine": create_engine(self.database_url),
            "application_version": self.app_version,
            "executor_id": self.executor_id,
            "log_level": "WARNING",
        }
        dbos_logs_to_current_stderr()
        DBOS(config=config)
        # This process's own queue (see `queue_here`) too, and no other process's.
        DBOS.listen_queues([*(queues or []), self._here])
        workflow.bind(self)
        DBOS.launch()
        self._launched = True
        self._heartbeat = Heartbeat(
            self.store.workers, self.executor_id, kind, self.settings.worker_heartbeat_s
        )
        self._heartbeat.start()

    def halt(self) -> None:
        """Stop DBOS: no run goes on in this process; those in flight stay pending."""
        if self._launched:
            if self._here_registered:
                self._here_registered = False
                with contextlib.suppress(Exception):  # a leftover row is harmless
                    DBOS.delete_queue(self._here)
            DBOS.destroy(destroy_registry=False)
            workflow.bind(None)
            self._launched = False
            if self._heartbeat is not None:
                self._heartbeat.stop()  # after DBOS stopped: nothing of ours still runs
                self._heartbeat = None

    def shutdown(self) -> None:
        """`halt`, and close the store; runs in flight stay pending, to be resumed."""
        self.halt()
        if self._client is not None:
            self._client.destroy()
            self._client = None
        self.store.close()

    @property
    def queue_here(self) -> str | None:
        """The queue that only this process pulls from, where `reopen` puts a run that
        `resume` runs here: DBOS's internal queue (its default, None) is pulled from by
        every launched process, so a `tether run` of another agent would take the run
        and fail it. None until `resume` registered it."""
        return self._here if self._here_registered else None

    async def _register_queue_here(self) -> None:
        if not self._here_registered:
            await DBOS.register_queue_async(
                self._here, polling_interval_sec=0.05, on_conflict="always_update"
            )
            self._here_registered = True

    def _require_launched(self) -> None:
        if not self._launched:
            raise ConfigError("call Runtime.launch() before running or resuming runs")

    @property
    def client(self) -> DBOSClient:
        """A DBOS client on the store's database (enqueues and reads; runs nothing)."""
        if self._client is None:
            if not self._launched:
                # A client never creates the journal's tables: `tether submit` (or
                # `trace`) may be the first thing to touch a fresh database.
                DBOS.migrate(self.store.engine.url.render_as_string(hide_password=False))
            self._client = DBOSClient(
                system_database_engine=create_engine(self.database_url),
                application_name="tether",
            )
        return self._client

    # -- runs -------------------------------------------------------------------------------

    def _options(
        self, name: str, user: str | None, tenant: str | None, model: str | None
    ) -> dict[str, Any]:
        entry = self._agents.get(name)
        return {
            "user": user,
            "tenant": tenant,
            "model": model,
            "target": entry.target if entry is not None else None,
        }

    async def run(
        self,
        agent: str,
        prompt: str,
        *,
        user: str | None = None,
        tenant: str | None = None,
        run_id: str | None = None,
        model: str | None = None,
        sink: Sink | None = None,
    ) -> RunResult:
        """Run agent `agent` on `prompt` in this process, durably, to its result.

        With the `run_id` of a run already recorded, attaches to it (its result, or its
        run going on) instead of starting another. `sink` gets the run's events as they
        happen (as `Agent.stream` yields them), replayed steps included.
        """
        self._require_launched()
        self._entry(agent)
        run_id = run_id or uuid.uuid4().hex
        options = self._options(agent, user, tenant, model)
        # Recorded before its journal starts (as `submit` does): a crash in between must
        # not leave a journal without a record, which `resume` could not find and which
        # another `run` with this id would wait on forever.
        created = await asyncio.to_thread(
            self.store.runs.create,
            run_id=run_id,
            agent=agent,
            prompt=prompt,
            status="queued",
            user_id=user,
            tenant=tenant,
            tier=self.tiers.name_of(tenant),
            model=self.durable_spec(agent, model).model_name,
            target=options["target"],
        )
        if not created and await asyncio.to_thread(self.status, run_id) is not None:
            return await self._attach(run_id)
        if sink is not None:
            self._sinks[run_id] = sink
        try:
            with SetWorkflowID(run_id):
                handle: WorkflowHandleAsync[RunResult] = await DBOS.start_workflow_async(
                    workflow.run_workflow, agent, prompt, options
                )
            result: RunResult = await handle.get_result()
        finally:
            self._sinks.pop(run_id, None)
        return result

    async def _attach(self, run_id: str) -> RunResult:
        """The result of a run recorded already: waited for while a live process runs
        it, resumed here once the process holding it is gone."""
        while True:
            if await asyncio.to_thread(self._stranded, run_id):
                return await self.resume(run_id, force=True)
            try:
                return await asyncio.wait_for(self.result(run_id), self.settings.worker_stale_s)
            except TimeoutError:
                continue

    def _stranded(self, run_id: str) -> bool:
        """Whether a recorded run is pending in a process that is gone."""
        record = self.store.runs.get(run_id)
        if record is None or record.status not in ("queued", "running"):
            return False
        if self.status(run_id) != "PENDING":
            return False
        return record.executor_id not in recovery.live_executors(self)

    def sink_of(self, run_id: str) -> Sink | None:
        """Where the events of `run_id` go, when it runs in this process for a caller."""
        return self._sinks.get(run_id)

    def submit(
        self,
        agent: str,
        prompt: str,
        *,
        user: str | None = None,
        tenant: str | None = None,
        run_id: str | None = None,
        model: str | None = None,
        target: str | None = None,
    ) -> str:
        """Put a run on the queue for a worker; returns its run id at once."""
        run_id = run_id or uuid.uuid4().hex
        options = self._options(agent, user, tenant, model)
        if target is not None:
            options["target"] = target
        self.store.runs.create(
            run_id=run_id,
            agent=agent,
            prompt=prompt,
            status="queued",
            user_id=user,
            tenant=tenant,
            tier=self.tiers.name_of(tenant),
            target=options["target"],
        )
        try:
            self.client.enqueue(
                {
                    "queue_name": QUEUE_NAME,
                    "workflow_name": workflow.WORKFLOW_NAME,
                    "workflow_id": run_id,
                    "app_version": self.app_version,
                },
                agent,
                prompt,
                options,
            )
        except Exception as exc:  # not queued: the record must not say it is
            self.store.runs.finished(run_id, "failed", error=f"not enqueued: {exc}")
            raise
        return run_id

    async def result(self, run_id: str) -> RunResult:
        """Wait for a run's result (it may run in any process)."""
        handle: WorkflowHandleAsync[RunResult] = await self.client.retrieve_workflow_async(run_id)
        result: RunResult = await handle.get_result()
        return result

    def status(self, run_id: str) -> str | None:
        """The journal's status of a run (`PENDING`, `ENQUEUED`, `SUCCESS`, `ERROR`, ...)."""
        try:
            return self.client.retrieve_workflow(run_id).get_status().status
        except DBOSNonExistentWorkflowError:
            return None

    # -- recovery (see `recovery`) ----------------------------------------------------------

    def reopen(self, run_id: str, *, queue: bool = False, force: bool = False) -> str:
        """Make an interrupted or failed run runnable again; see `recovery.reopen`."""
        return recovery.reopen(self, run_id, queue=queue, force=force)

    async def resume(self, run_id: str, *, force: bool = False) -> RunResult:
        """Resume an interrupted or failed run in this process, to its result."""
        self._require_launched()
        record = self.store.runs.get(run_id)
        if record is not None:
            self._entry(record.agent)
        await self._register_queue_here()
        self.reopen(run_id, force=force)
        return await self.result(run_id)

    def resolve(
        self, run_id: str, step_id: int, *, result: str | None, by: str = "cli"
    ) -> LedgerEntry:
        """A human's verdict on an interrupted side effect; see `recovery.resolve`."""
        return recovery.resolve(self.store, run_id, step_id, result=result, by=by)

    def recover(self, executor_ids: list[str]) -> int:
        """Resume the pending runs of dead processes (the reaper's job); how many."""
        self._require_launched()
        return len(DBOS._recover_pending_workflows(executor_ids))

    def forget(self, older_than_s: float, *, dry_run: bool = False) -> list[str]:
        """Retention: delete every trace of runs that ended more than `older_than_s`
        seconds ago (journal, record, ledger entries); returns their ids."""
        return recovery.forget(self, older_than_s, dry_run=dry_run)

    @property
    def where(self) -> str:
        """The database, for messages (without its password)."""
        return self.store.engine.url.render_as_string(hide_password=True)
