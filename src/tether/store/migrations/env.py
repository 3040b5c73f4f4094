"""Alembic environment: runs on the connection `tether.store.migrate` hands it."""

from __future__ import annotations

from alembic import context

from tether.store.tables import metadata

VERSION_TABLE = "tether_alembic_version"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
    include_name=lambda name, type_, _parent: type_ != "table" or str(name).startswith("tether_"),
)
with context.begin_transaction():
    context.run_migrations()
