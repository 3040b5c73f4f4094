"""`upgrade`: creates tether's tables (and nothing else), is idempotent, matches
`tables.py`, and is safe when several processes open a fresh database at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import tether.store.migrate
from tests.processes import together
from tether.store import create_engine, upgrade
from tether.store.tables import metadata

TETHER_TABLES = {
    "tether_runs",
    "tether_ledger",
    "tether_budgets",
    "tether_budget_holds",
    "tether_workers",
    "tether_policy_states",
}
VERSION_TABLE = "tether_alembic_version"
HEAD = ScriptDirectory(
    str(Path(tether.store.migrate.__file__).parent / "migrations")
).get_current_head()


def _versions(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
        )


def test_upgrade_creates_tethers_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert not set(sa.inspect(engine).get_table_names()) & TETHER_TABLES
        upgrade(engine)
        tables = set(sa.inspect(engine).get_table_names())
        assert tables >= TETHER_TABLES | {VERSION_TABLE}
        assert {t for t in tables if t.startswith("tether_")} == TETHER_TABLES | {VERSION_TABLE}
        assert HEAD is not None
        assert _versions(engine) == [HEAD]
    finally:
        engine.dispose()


def test_migrated_schema_matches_tables_py(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(engine)
        inspector = sa.inspect(engine)
        for table in metadata.sorted_tables:
            columns = {c["name"]: c for c in inspector.get_columns(table.name)}
            assert set(columns) == set(table.columns.keys()), table.name
            for column in table.columns:
                assert columns[column.name]["nullable"] == column.nullable, column
            primary_key = inspector.get_pk_constraint(table.name)["constrained_columns"]
            assert primary_key == [c.name for c in table.primary_key.columns], table.name
            indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(table.name)}
            for index in table.indexes:
                assert indexes.get(index.name) == [c.name for c in index.columns], index.name
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "version_table": VERSION_TABLE,
                    "include_name": lambda name, type_, _parent: (
                        type_ != "table" or str(name).startswith("tether_")
                    ),
                },
            )
            assert compare_metadata(context, metadata) == []  # no migration is missing
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_keeps_data(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO tether_runs (run_id, agent, status, prompt, created_at) "
                    "VALUES ('r1', 'a', 'queued', 'p', 1.0)"
                )
            )
        upgrade(engine)
        upgrade(engine)
        assert _versions(engine) == [HEAD]
        with engine.connect() as connection:
            runs = connection.execute(sa.text("SELECT run_id FROM tether_runs")).scalars().all()
        assert runs == ["r1"]
    finally:
        engine.dispose()


def test_upgrade_leaves_other_tables_alone(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE user_things (id INTEGER PRIMARY KEY)"))
            connection.execute(sa.text("INSERT INTO user_things (id) VALUES (7)"))
        upgrade(engine)
        upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT id FROM user_things")).scalars().all()
        assert rows == [7]
    finally:
        engine.dispose()


def test_a_database_at_an_earlier_revision_is_migrated_with_its_rows(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        config = tether.store.migrate._config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")  # as the first release left it
            connection.execute(
                sa.text(
                    "INSERT INTO tether_runs (run_id, agent, status, prompt, created_at) "
                    "VALUES ('r-1', 'a', 'completed', 'hi', 1.0)"
                )
            )
        assert "tether_policy_states" not in sa.inspect(engine).get_table_names()
        upgrade(engine)
        assert _versions(engine) == [HEAD]
        assert "tether_policy_states" in sa.inspect(engine).get_table_names()
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT run_id, status FROM tether_runs")).all()
        assert [tuple(row) for row in rows] == [("r-1", "completed")]
    finally:
        engine.dispose()


# -- many processes at once --------------------------------------------------------------

PROCESSES = 4


def _migrate_in_process(url: str, index: int, ready: Callable[[], None]) -> None:
    """A process: open its own engine, wait for the others, migrate."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))  # connected before the race starts
        ready()
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO tether_workers "
                    "(executor_id, host, pid, kind, status, started_at, heartbeat_at) "
                    "VALUES (:id, 'h', 1, 'worker', 'alive', 1.0, 1.0)"
                ),
                {"id": f"w{index}"},
            )
    finally:
        engine.dispose()


def test_concurrent_processes_migrate_a_fresh_database_once(database_url: str) -> None:
    together(_migrate_in_process, database_url, PROCESSES)

    engine = create_engine(database_url)
    try:
        assert _versions(engine) == [HEAD]
        assert set(sa.inspect(engine).get_table_names()) >= TETHER_TABLES
        with engine.connect() as connection:
            workers = connection.execute(sa.text("SELECT count(*) FROM tether_workers")).scalar()
        assert workers == PROCESSES
    finally:
        engine.dispose()
