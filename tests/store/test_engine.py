"""`create_engine` and `normalize_url`: the URLs tether accepts, and how each backend's
engine is tuned (SQLite: WAL, `synchronous=NORMAL`, writers lock at `BEGIN`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.databases import sqlite_url
from tether.errors import ConfigError
from tether.store import Store, create_engine, is_sqlite, normalize_url

# -- on both backends ------------------------------------------------------------------


def test_engine_connects_with_tethers_driver(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar() == 1
        if database_url.startswith("sqlite"):
            assert is_sqlite(engine)
            assert engine.dialect.driver == "pysqlite"
        else:
            assert not is_sqlite(engine)
            assert engine.dialect.name == "postgresql"
            assert engine.dialect.driver == "psycopg"
            assert engine.pool._pre_ping  # a server connection may have gone away
    finally:
        engine.dispose()


def test_store_opens_migrated_and_closes_its_engine(database_url: str) -> None:
    store = Store(database_url)
    assert store.runs.create(run_id="r", agent="a", prompt="p", status="queued")
    store.close()
    again = Store(database_url)
    try:
        record = again.runs.get("r")
        assert record is not None
        assert record.agent == "a"
    finally:
        again.close()


def test_store_leaves_an_engine_it_was_given_open(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        store = Store(engine=engine)
        assert store.engine is engine
        store.close()  # not the store's to dispose of
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM tether_runs")).scalar() == 0
    finally:
        engine.dispose()


def test_store_needs_a_url_or_an_engine() -> None:
    with pytest.raises(TypeError, match="url or an engine"):
        Store()


# -- SQLite tuning -----------------------------------------------------------------------


def _pragma(engine: sa.Engine, name: str) -> object:
    with engine.connect() as connection:
        return connection.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_runs_in_wal_with_synchronous_normal(tmp_path: Path) -> None:
    engine = create_engine(sqlite_url(tmp_path))
    try:
        assert _pragma(engine, "journal_mode") == "wal"
        assert _pragma(engine, "synchronous") == 1  # NORMAL (FULL is 2)
        assert _pragma(engine, "busy_timeout") == 30000
        assert _pragma(engine, "foreign_keys") == 1
    finally:
        engine.dispose()


def test_sqlite_pragmas_hold_on_every_pooled_connection(tmp_path: Path) -> None:
    engine = create_engine(sqlite_url(tmp_path))
    try:
        with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                dbapi = connection.connection.dbapi_connection
                assert dbapi is not None
                assert dbapi.isolation_level == "IMMEDIATE"  # writers lock at BEGIN
    finally:
        engine.dispose()


def test_sqlite_writers_wait_for_each_other_instead_of_failing(tmp_path: Path) -> None:
    engine = create_engine(sqlite_url(tmp_path))
    other = create_engine(sqlite_url(tmp_path))  # another process's engine, in effect
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        writing = threading.Event()
        errors: list[BaseException] = []

        def second_writer() -> None:
            writing.wait()
            try:
                with other.begin() as connection:
                    connection.exec_driver_sql("INSERT INTO t VALUES (2)")
            except BaseException as exc:  # reported below
                errors.append(exc)

        thread = threading.Thread(target=second_writer)
        thread.start()
        with engine.begin() as first:
            first.exec_driver_sql("INSERT INTO t VALUES (1)")  # BEGIN IMMEDIATE: locked
            writing.set()
            time.sleep(0.3)  # the second writer is now blocked on the lock
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert errors == []
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT x FROM t ORDER BY x").scalars().all()
        assert rows == [1, 2]
    finally:
        engine.dispose()
        other.dispose()


def test_sqlite_folder_is_created(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b" / "c"
    assert not folder.exists()
    engine = create_engine(f"sqlite:///{folder / 'tether.db'}")
    try:
        assert folder.is_dir()
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        assert (folder / "tether.db").exists()
    finally:
        engine.dispose()


def test_sqlite_home_relative_path_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    engine = create_engine("sqlite:///~/.tether/tether.db")
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    finally:
        engine.dispose()
    assert (tmp_path / ".tether" / "tether.db").is_file()
    assert engine.url.database == str(tmp_path / ".tether" / "tether.db")


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+pysqlite:///:memory:",
        "sqlite:///file::memory:?cache=shared",
    ],
)
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="in-memory"):
        create_engine(url)


# -- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@localhost/db",
        "mssql+pyodbc://u:p@dsn",
        "oracle://u:p@host/db",
        "redis://localhost:6379/0",
    ],
)
def test_other_databases_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"sqlite:///\.\.\. or postgresql://"):
        normalize_url(url)
    with pytest.raises(ConfigError):
        create_engine(url)


@pytest.mark.parametrize("url", ["", "not a url", "://nothing", "tether.db"])
def test_what_is_not_a_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        normalize_url(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql://u:secret@h/db", "postgresql+psycopg://u:secret@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        (
            "postgresql://u@h/db?sslmode=require",
            "postgresql+psycopg://u@h/db?sslmode=require",
        ),
        ("sqlite:///x/tether.db", "sqlite:///x/tether.db"),
        ("sqlite+pysqlite:////abs/tether.db", "sqlite:////abs/tether.db"),
    ],
)
def test_normalize_url_picks_tethers_drivers(url: str, expected: str) -> None:
    assert normalize_url(url) == expected
