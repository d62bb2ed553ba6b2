"""The first register: children, cases and their holding LAs, alerts, and deliveries."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "children",
        sa.Column("upn", sa.String(13), nullable=False),
        sa.Column("forename", sa.String(200), nullable=False),
        sa.Column("surname", sa.String(200), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("upn", name="pk_children"),
    )
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("upn", sa.String(13), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=True),
        sa.Column("opening_rule", sa.String(40), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("closing_reason", sa.Text(), nullable=True),
        sa.Column("closed_by", sa.String(200), nullable=True),
        sa.Column("closing_action_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("case_id", name="pk_cases"),
    )
    op.create_index("ix_cases_upn", "cases", ["upn"])
    op.create_index("ix_cases_opened_on", "cases", ["opened_on"])
    op.create_index("ix_cases_status", "cases", ["status"])
    op.create_table(
        "case_holders",
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("la_code", sa.String(3), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.case_id"], name="fk_case_holders_case_id_cases", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("case_id", "la_code", name="pk_case_holders"),
    )
    op.create_index("ix_case_holders_la_code", "case_holders", ["la_code"])
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("rule", sa.String(40), nullable=False),
        sa.Column("recipient", sa.String(20), nullable=False),
        sa.Column("la_code", sa.String(3), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("upn", sa.String(13), nullable=False),
        sa.Column("child_forename", sa.String(200), nullable=False),
        sa.Column("child_surname", sa.String(200), nullable=False),
        sa.Column("child_date_of_birth", sa.Date(), nullable=False),
        sa.Column("school_urn", sa.String(6), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=True),
        sa.Column("raised_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("trigger_event_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["upn"], ["children.upn"], name="fk_alerts_upn_children"),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.case_id"], name="fk_alerts_case_id_cases", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("alert_id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_la_code", "alerts", ["la_code"])
    op.create_index("ix_alerts_upn", "alerts", ["upn"])
    op.create_index("ix_alerts_case_id", "alerts", ["case_id"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.alert_id"], name="fk_deliveries_alert_id_alerts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_deliveries"),
        sa.UniqueConstraint("alert_id", "channel", name="uq_deliveries_alert_id_channel"),
    )
    op.create_index("ix_deliveries_outcome", "deliveries", ["outcome"])


def downgrade() -> None:
    op.drop_table("deliveries")
    op.drop_table("alerts")
    op.drop_table("case_holders")
    op.drop_table("cases")
    op.drop_table("children")
