"""Alembic's environment for the catalog (cardmetry.store.database). `Catalog.open` runs it with a connection of
its own (config.attributes["connection"]); without one, it connects to the configured sqlalchemy.url."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from cardmetry.store.database import metadata


def run_migrations(connection: sa.Connection) -> None:
    # render_as_batch: SQLite alters a table by copying it, which later migrations need for column changes;
    # target_metadata: the tables as the code defines them, what `alembic revision --autogenerate` and the test
    # that compares them with the migrated schema read
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        run_migrations(connection)
    engine.dispose()
