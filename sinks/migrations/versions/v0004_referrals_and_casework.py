"""Referrals and case work: cases and alerts without a UPN, referrals as received, enquiries, assignment, links."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite alters a column only by copying its table, which alembic does for it.
    with op.batch_alter_table("alerts") as batch:
        batch.alter_column("upn", existing_type=sa.String(13), nullable=True)
        batch.add_column(sa.Column("referral_id", sa.String(36), nullable=True))
        batch.create_index("ix_alerts_referral_id", ["referral_id"])
    with op.batch_alter_table("cases") as batch:
        batch.alter_column("upn", existing_type=sa.String(13), nullable=True)
        batch.add_column(sa.Column("referral_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("close_reason", sa.String(40), nullable=True))
        batch.add_column(sa.Column("assignee", sa.String(200), nullable=True))
        batch.add_column(sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("assigned_by", sa.String(200), nullable=True))
        batch.create_index("ix_cases_referral_id", ["referral_id"])
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("detail", sa.String(200), nullable=True))
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(36), nullable=False),
        sa.Column("la_code", sa.String(3), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("upn", sa.String(13), nullable=True),
        sa.Column("forename", sa.String(200), nullable=False),
        sa.Column("surname", sa.String(200), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("postcode", sa.String(20), nullable=True),
        sa.Column("concern", sa.String(30), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("agency", sa.String(30), nullable=False),
        sa.Column("referrer_name", sa.String(200), nullable=True),
        sa.Column("referrer_contact", sa.String(254), nullable=True),
        sa.PrimaryKeyConstraint("referral_id", name="pk_referrals"),
    )
    op.create_index("ix_referrals_la_code", "referrals", ["la_code"])
    op.create_index("ix_referrals_upn", "referrals", ["upn"])
    for table, extra in (
        ("case_enquiries", [
            sa.Column("kind", sa.String(40), nullable=False),
            sa.Column("outcome", sa.Text(), nullable=False),
        ]),
        ("case_links", [sa.Column("upn", sa.String(13), nullable=False)]),
    ):
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("action_id", sa.String(36), nullable=False),
            sa.Column("case_id", sa.String(36), nullable=False),
            *extra,
            sa.Column("note", sa.Text(), nullable=False),
            sa.Column("by", sa.String(200), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("la_code", sa.String(3), nullable=True),
            sa.ForeignKeyConstraint(
                ["case_id"], ["cases.case_id"], name=f"fk_{table}_case_id_cases", ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
            sa.UniqueConstraint("action_id", name=f"uq_{table}_action_id"),
        )
        op.create_index(f"ix_{table}_case_id", table, ["case_id"])


def downgrade() -> None:
    op.drop_table("case_links")
    op.drop_table("case_enquiries")
    op.drop_table("referrals")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("detail")
    # Rows without a UPN have no place in the older schema.
    op.execute("DELETE FROM alerts WHERE upn IS NULL")
    op.execute("DELETE FROM cases WHERE upn IS NULL")
    with op.batch_alter_table("cases") as batch:
        batch.drop_index("ix_cases_referral_id")
        for column in ("assigned_by", "assigned_at", "assignee", "close_reason", "referral_id"):
            batch.drop_column(column)
        batch.alter_column("upn", existing_type=sa.String(13), nullable=False)
    with op.batch_alter_table("alerts") as batch:
        batch.drop_index("ix_alerts_referral_id")
        batch.drop_column("referral_id")
        batch.alter_column("upn", existing_type=sa.String(13), nullable=False)
