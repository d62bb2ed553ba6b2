"""Alembic environment of the CME register: runs on the connection `sinks.register.engine.migrate` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from sinks.register.schema import Base

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # Plain `alembic -x url=...` use, for developers writing a new revision.
        url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("give the register's URL: alembic -x url=sqlite:///.rollwatch/register.db ...")
        with create_engine(url).begin() as own_connection:
            _run(own_connection)
        return
    _run(connection)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most constraints; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
