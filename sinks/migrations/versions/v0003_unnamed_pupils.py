"""Alerts about pupils known only from registers: no name on the child or the alert, and alerts without a school."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CHILD = (("forename", sa.String(200)), ("surname", sa.String(200)), ("date_of_birth", sa.Date()))
_ALERT = (
    ("child_forename", sa.String(200)),
    ("child_surname", sa.String(200)),
    ("child_date_of_birth", sa.Date()),
    ("school_urn", sa.String(6)),
)


def _nullable(table: str, columns: tuple[tuple[str, Any], ...], nullable: bool) -> None:
    # Batch mode: SQLite alters a column only by copying its table, which alembic does for it.
    with op.batch_alter_table(table) as batch:
        for name, kind in columns:
            batch.alter_column(name, existing_type=kind, nullable=nullable)


def upgrade() -> None:
    _nullable("children", _CHILD, True)
    _nullable("alerts", _ALERT, True)


def downgrade() -> None:
    _nullable("alerts", _ALERT, False)
    _nullable("children", _CHILD, False)
