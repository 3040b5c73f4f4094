"""The durable commands as a user types them: `tether run` records the run, then `runs`,
`trace`, `replay`, `gc`, `submit`, `resume` and `resolve` work on the store
(`TETHER_DATABASE_URL`, a SQLite file per test).

Most commands run in this process through typer's CliRunner; the crash (a run killed
inside a side effect) runs the real `tether` script in a subprocess and SIGKILLs it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.databases import sqlite_url
from tests.fakes.openai_server import Answer, openai_server
from tether.cli import app
from tether.settings import get_settings
from tether.store import Store

AGENTS = Path(__file__).parent / "agents"
CLIAGENT = f"{AGENTS / 'cliagent.py'}:agent"
SIDEEFFECTS = f"{AGENTS / 'sideeffects.py'}:agent"
TETHER = Path(sys.executable).parent / "tether"

runner = CliRunner()


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = sqlite_url(tmp_path, "t.db")
    monkeypatch.setenv("TETHER_DATABASE_URL", url)
    get_settings.cache_clear()
    return url


def tether(*args: str) -> Result:
    get_settings.cache_clear()
    return runner.invoke(app, list(args))


def flat(text: str) -> str:
    """Output with rich's wrapping undone (a line per word would match nothing)."""
    return " ".join(text.split())


def runs_json(*args: str) -> list[dict[str, Any]]:
    result = tether("runs", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
def recorded(database_url: str) -> str:
    """Run `cliagent` once as run r1."""
    result = tether("run", CLIAGENT, "Weather in Paris?", "--run-id", "r1", "--user", "alice")
    assert result.exit_code == 0, result.output
    assert "Sunny in Paris, 21 C." in result.output
    assert "run r1" in result.output
    return "r1"


# --- the history -------------------------------------------------------------------------------


def test_runs_lists_a_recorded_run(recorded: str) -> None:
    result = tether("runs")

    assert result.exit_code == 0, result.output
    header, row = (line.split() for line in result.stdout.splitlines()[:2])
    assert header == [
        "run",
        "started",
        "status",
        "agent",
        "user",
        "steps",
        "tokens",
        "cost",
        "time",
    ]
    # The start time is a date and a time (wrapped onto the next line when narrow).
    when = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}")
    row = [cell for cell in row if not when.fullmatch(cell)]
    assert row[:7] == ["r1", "completed", "cliagent", "alice", "2", "20/10", "$0.000040"]
    assert re.fullmatch(r"\d+\.\d\ds", row[7])


def test_runs_json_prints_one_record_a_line(recorded: str) -> None:
    (record,) = runs_json()

    assert record["run_id"] == "r1"
    assert record["agent"] == "cliagent"
    assert record["user"] == "alice"
    assert record["status"] == "completed"
    assert record["model"] == "cli-scripted"
    assert record["steps"] == 2
    assert (record["input_tokens"], record["output_tokens"]) == (20, 10)
    assert record["cost_usd"] == pytest.approx(4e-5)
    assert record["error"] is None
    assert record["duration_s"] >= 0
    assert runs_json("--status", "failed") == []
    assert [r["run_id"] for r in runs_json("--user", "alice")] == ["r1"]
    assert runs_json("--agent", "someone-else") == []


def test_runs_says_when_there_are_none(database_url: str) -> None:
    result = tether("runs")
    assert result.exit_code == 0, result.output
    assert "no runs recorded yet" in result.output


def test_trace_shows_each_step_with_tool_arguments_and_results(recorded: str) -> None:
    result = tether("trace", "r1")

    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert "run r1" in text
    assert "cliagent" in text
    assert "completed" in text
    assert "#1 model" in text
    assert "cli-scripted" in text
    assert "10 in / 5 out" in text
    assert '→ lookup({"city":"Paris"})' in text
    assert "#2 tool:lookup" in text
    assert 'args {"city":"Paris"}' in text
    assert "ok: Paris: sunny, 21 C" in text
    assert "#3 model" in text
    assert "Sunny in Paris, 21 C." in text


def test_trace_json_has_every_step(recorded: str) -> None:
    result = tether("trace", "r1", "--json")

    assert result.exit_code == 0, result.output
    trace = json.loads(result.stdout)
    assert trace["run_id"] == "r1"
    assert trace["status"] == "completed"
    assert [(s["step"], s["name"]) for s in trace["steps"]] == [
        (1, "model"),
        (2, "tool:lookup"),
        (3, "model"),
    ]
    model, lookup, last = trace["steps"]
    assert model["output"]["message"]["parts"][0]["name"] == "lookup"
    assert model["output"]["message"]["parts"][0]["arguments"] == {"city": "Paris"}
    assert lookup["output"]["content"] == "Paris: sunny, 21 C"
    assert lookup["output"]["status"] == "ok"
    assert lookup["ledger"] is None  # not a side effect
    assert last["output"]["message"]["parts"][0]["text"] == "Sunny in Paris, 21 C."
    assert all(s["error"] is None for s in trace["steps"])


def test_trace_of_an_unknown_run_exits_2(database_url: str) -> None:
    result = tether("trace", "nope")
    assert result.exit_code == 2
    assert "no run 'nope' recorded" in result.output


# --- replay ------------------------------------------------------------------------------------


def test_replay_gives_the_same_answer_with_nothing_live(recorded: str) -> None:
    result = tether("replay", "r1")

    assert result.exit_code == 0, result.output
    assert "Sunny in Paris, 21 C." in result.stdout
    assert "replayed 3 recorded steps; 0 live" in flat(result.stdout)


def test_replay_from_a_step_goes_live_on_another_model(
    recorded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with openai_server(Answer(text="Cloudy, says the other model.")) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-replay")
        monkeypatch.setenv("TETHER_OPENAI_BASE_URL", server.base_url)
        result = tether("replay", "r1", "--from-step", "3", "--model", "openai:gpt-test")

    assert result.exit_code == 0, result.output
    assert "Cloudy, says the other model." in result.stdout
    assert "replayed 2 recorded steps; 1 live" in flat(result.stdout)
    assert server.invalid == []
    (body,) = server.bodies  # only the live step reached the model
    assert body["model"] == "gpt-test"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool"]
    assert body["messages"][2]["content"] == "Paris: sunny, 21 C"
    # The replay is not a run: the history still has only r1, as it was.
    assert [(r["run_id"], r["status"]) for r in runs_json()] == [("r1", "completed")]


# --- retention -----------------------------------------------------------------------------------


def test_gc_deletes_ended_runs(recorded: str) -> None:
    kept = tether("gc", "--older-than", "30d")
    assert kept.exit_code == 0, kept.output
    assert "deleted 0 runs older than 30d" in kept.output

    dry = tether("gc", "--older-than", "0s", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 run older than 0s" in dry.output
    assert [r["run_id"] for r in runs_json()] == ["r1"]

    gone = tether("gc", "--older-than", "0s")
    assert gone.exit_code == 0, gone.output
    assert "deleted 1 run older than 0s" in gone.output
    assert "no runs recorded yet" in tether("runs").output
    assert tether("trace", "r1").exit_code == 2


def test_gc_refuses_an_age_it_cannot_read(database_url: str) -> None:
    result = tether("gc", "--older-than", "soon")
    assert result.exit_code == 2
    assert "not an age like 30d" in flat(result.output)


# --- the queue and the commands' refusals ------------------------------------------------------


def test_submit_prints_a_run_id_that_runs_lists_as_queued(database_url: str) -> None:
    result = tether("submit", CLIAGENT, "Weather in Paris?", "--user", "bob")

    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    assert run_id
    assert " " not in run_id
    (queued,) = runs_json("--status", "queued")
    assert (queued["run_id"], queued["agent"], queued["user"]) == (run_id, "cliagent", "bob")

    named = tether("submit", CLIAGENT, "again", "--run-id", "mine-1")
    assert named.exit_code == 0, named.output
    assert named.stdout.strip() == "mine-1"
    assert {r["run_id"] for r in runs_json("--status", "queued")} == {run_id, "mine-1"}


def test_resume_of_an_unknown_run_exits_2(database_url: str) -> None:
    result = tether("resume", "no-such-run")
    assert result.exit_code == 2
    assert "no run 'no-such-run' recorded" in result.output


def test_resume_of_a_completed_run_shows_its_answer(recorded: str) -> None:
    result = tether("resume", "r1")
    assert result.exit_code == 0, result.output
    assert "Sunny in Paris, 21 C." in result.stdout


@pytest.mark.parametrize(
    "options", [[], ["--result", "charged", "--retry"]], ids=["neither", "both"]
)
def test_resolve_needs_exactly_one_verdict(database_url: str, options: list[str]) -> None:
    result = tether("resolve", "r1", "--step", "2", *options)
    assert result.exit_code == 2
    assert "give exactly one of --result '...' and --retry" in result.output


def test_resolve_of_a_step_without_a_side_effect_exits_2(recorded: str) -> None:
    result = tether("resolve", "r1", "--step", "2", "--result", "x")
    assert result.exit_code == 2
    assert "has no side effect at step 2" in flat(result.output)


# --- a crash inside a side effect, end to end (real processes) --------------------------------


def _cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TETHER), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TETHER_", "OPENAI_", "ANTHROPIC_"))
    }
    env.update(
        TETHER_DATABASE_URL=database_url,
        SIDEEFFECTS_DIR=str(tmp_path),
        COLUMNS="200",
        NO_COLOR="1",
    )
    return env


def _wait_for(condition: Any, what: str, process: subprocess.Popen[str], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the run exited ({process.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_a_run_killed_inside_a_side_effect_waits_for_a_human(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    charges = tmp_path / "charges"
    process = subprocess.Popen(
        [str(TETHER), "run", SIDEEFFECTS, "Charge 30 to card 4242", "--run-id", "pay-1"],
        env=cli_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = Store(database_url)
    try:

        def started() -> bool:
            entries = store.ledger.of_run("pay-1")
            return bool(entries) and entries[0].status == "started" and charges.exists()

        _wait_for(started, "the side effect started", process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        (entry,) = store.ledger.of_run("pay-1")
        step = entry.step_id
        assert entry.status == "started"
        assert charges.read_text() == "4242 30\n"
        (tmp_path / "gate").touch()  # from now on the charge would return at once

        # Resuming cannot know whether the card was charged: it stops for a human.
        # Its heartbeat is still fresh: resume will not take a run a live process may hold.
        held = _cli("resume", "pay-1", env=cli_env, cwd=tmp_path)
        assert held.returncode == 2, held.stdout + held.stderr
        assert "live process" in flat(held.stderr)
        assert charges.read_text() == "4242 30\n"
        # The operator knows it was killed.
        resumed = _cli("resume", "pay-1", "--force", env=cli_env, cwd=tmp_path)
        assert resumed.returncode == 1, resumed.stdout + resumed.stderr
        said = flat(resumed.stderr)
        assert "OutcomeUnknown" in said
        assert f"tether resolve pay-1 --step {step}" in said
        assert charges.read_text() == "4242 30\n"  # not charged twice
        record = store.runs.get("pay-1")
        assert record is not None
        assert record.status == "outcome_unknown"

        # Resuming again is refused until a verdict is given.
        again = _cli("resume", "pay-1", env=cli_env, cwd=tmp_path)
        assert again.returncode == 2  # a refusal, not a failed run
        assert "waits for a human" in flat(again.stderr)

        # The human checked with the bank: it was charged.
        resolved = _cli(
            "resolve",
            "pay-1",
            "--step",
            str(step),
            "--result",
            "charged",
            env=cli_env,
            cwd=tmp_path,
        )
        assert resolved.returncode == 0, resolved.stdout + resolved.stderr
        assert "The charge says: charged" in resolved.stdout
        assert charges.read_text() == "4242 30\n"

        listed = _cli("runs", "--json", env=cli_env, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        (record_json,) = [json.loads(line) for line in listed.stdout.splitlines() if line]
        assert (record_json["run_id"], record_json["status"]) == ("pay-1", "completed")
        (entry,) = store.ledger.of_run("pay-1")
        assert (entry.status, entry.resolved_by) == ("finished", "cli")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        store.close()
