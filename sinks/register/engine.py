"""The register's database: engines for SQLite or PostgreSQL, and the Alembic migrations that shape it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


class RegisterNotReady(Exception):
    """The database has no register yet, or an older schema than this release needs."""


def create_register_engine(url: str) -> Engine:
    """An engine for the register. SQLite gets foreign keys on (as PostgreSQL has them), a busy timeout and
    WAL, so `register sync`, `deliver` and `cases` can share one file."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:")
    if in_memory:
        # One shared connection, or every thread and session would see its own empty database.
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return engine


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine, revision: str = "head") -> str | None:
    """Brings the register's schema up to `revision` (all migrations by default); returns the revision now
    applied. Works from an installed package: no alembic.ini, the scripts ship as package data."""
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic import command

    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a column by copying its table; with foreign keys on, dropping the old copy would
            # delete (or cascade into) the rows that refer to it. Keys are off for the migration and checked
            # after it, before it commits. The pragma only takes effect outside a transaction.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                command.upgrade(_alembic_config(connection), revision)
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError("the register's references do not hold after the migration; nothing changed")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
    return current_revision(engine)


def head_revision() -> str | None:
    """The newest migration this release ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    # Reading the revision is routine for every command; alembic would announce its set-up at INFO each time.
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)
    try:
        from alembic.runtime.migration import MigrationContext

        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        alembic_log.setLevel(level)


def check_schema(engine: Engine, url: str) -> None:
    """Raises RegisterNotReady unless the database is at this release's schema; never creates or changes it."""
    applied = current_revision(engine)
    wanted = head_revision()
    if applied != wanted:
        where = make_url(url).render_as_string(hide_password=True)
        state = "has no register tables" if applied is None else f"is at schema revision {applied}"
        raise RegisterNotReady(f"{where} {state}, this release needs {wanted}: run `rollwatch register migrate`")


def migrate_url(url: str) -> tuple[str, str | None]:
    """Migrates the register at `url`; returns where it is (password hidden) and the revision now applied."""
    engine = create_register_engine(url)
    try:
        revision = migrate(engine)
    finally:
        engine.dispose()
    return make_url(url).render_as_string(hide_password=True), revision
