"""`tether run`, driven in-process as a user would type it (typer's CliRunner)."""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.databases import sqlite_url
from tests.fakes.http_server import Reply, serving
from tether.cli import app
from tether.settings import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def _run_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `tether run` records every run in the store: each test gets its own SQLite file.
    monkeypatch.setenv("TETHER_DATABASE_URL", sqlite_url(tmp_path, "runs.db"))
    get_settings.cache_clear()


SCRIPTED_AGENT = """
from tether import Agent, Policy, tool
from tether.testing import ScriptedModel, call, reply

@tool
async def add(a: int, b: int) -> int:
    '''Add two numbers.'''
    return a + b

agent = Agent(
    model=ScriptedModel([call("add", a=2, b=3), reply("2 + 3 = 5")]),
    tools=[add],
)
looping = Agent(
    model=ScriptedModel([call("add", a=1, b=1)] * 5),
    tools=[add],
    policy=Policy(max_steps=2),
)
not_an_agent = 42
"""

OPENAI_AGENT = """
from tether import Agent
agent = Agent(model="openai:gpt-4.1-mini")
"""


@pytest.fixture
def agent_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_agents.py"
    path.write_text(textwrap.dedent(SCRIPTED_AGENT))
    return path


def test_runs_and_shows_each_step(agent_file: Path) -> None:
    result = runner.invoke(app, ["run", f"{agent_file}:agent", "What is 2 + 3?"])
    assert result.exit_code == 0, result.output
    assert "step 1" in result.output
    assert "step 2" in result.output
    assert 'add {"a":2,"b":3}' in result.output
    assert "ok" in result.output
    assert "2 + 3 = 5" in result.output
    assert "2 requests" in result.output
    assert "1 tool calls" in result.output


def test_json_prints_the_result_only(agent_file: Path) -> None:
    result = runner.invoke(app, ["run", f"{agent_file}:agent", "What is 2 + 3?", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "completed"
    assert data["output"] == "2 + 3 = 5"
    assert data["usage"]["tool_calls"] == 1
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "tool", "assistant"]


def test_a_stopped_run_exits_1_with_the_partial_result(agent_file: Path) -> None:
    result = runner.invoke(app, ["run", f"{agent_file}:looping", "loop", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["error"]["type"] == "MaxStepsExceeded"
    assert data["result"]["status"] == "max_steps"
    assert data["result"]["steps"] == 2


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing_file.py:agent", "does not exist"),
        ("{file}:nothing", "has no attribute 'nothing'"),
        ("{file}:not_an_agent", "is a int, not a tether Agent"),
        ("no_such_module_xyz:agent", "importing no_such_module_xyz failed"),
        (":agent", "names no module or file"),
    ],
)
def test_a_bad_target_is_explained(agent_file: Path, target: str, message: str) -> None:
    result = runner.invoke(app, ["run", target.format(file=agent_file), "hi"])
    assert result.exit_code == 2
    assert "cannot load the agent" in result.output
    assert message in " ".join(result.output.split())


def test_a_module_target_defaults_to_attribute_agent(
    agent_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(agent_file.parent))
    result = runner.invoke(app, ["run", "my_agents", "hi", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output"] == "2 + 3 = 5"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "remote.py"
    path.write_text(OPENAI_AGENT)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-unreachable")
    monkeypatch.setenv("TETHER_OPENAI_BASE_URL", f"http://127.0.0.1:{_closed_port()}/v1")
    result = runner.invoke(app, ["run", f"{path}:agent", "hi"])
    assert result.exit_code == 1
    assert "cannot reach the model server" in result.output
    assert "sk-test-unreachable" not in result.output


def test_a_rejected_key_is_explained_and_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "remote.py"
    path.write_text(OPENAI_AGENT)
    body = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
    with serving(lambda request: Reply(status=401, json=body)) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
        monkeypatch.setenv("TETHER_OPENAI_BASE_URL", f"{server.url}/v1")
        result = runner.invoke(app, ["run", f"{path}:agent", "hi", "--log-level", "INFO"])
        assert server.requests[0].headers["authorization"] == "Bearer sk-test-secret-123"
    assert result.exit_code == 1
    assert "rejected the API key" in result.output
    assert "sk-test-secret-123" not in result.output


def test_a_missing_model_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "remote.py"
    path.write_text(OPENAI_AGENT)
    result = runner.invoke(app, ["run", f"{path}:agent", "hi"])
    assert result.exit_code == 1
    assert "configuration error" in result.output
    assert "OPENAI_API_KEY" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == "0.1.0"
