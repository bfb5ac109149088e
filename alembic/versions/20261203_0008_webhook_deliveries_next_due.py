"""A webhook's next delivery by (webhook_id, status, id), in place of the (status,
next_attempt_at) index: SQLite took that one for a webhook's next delivery too, and sorted
every webhook's backlog on every attempt

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:02:10.000000

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_status_next_attempt_at"))
        batch_op.create_index(
            "ix_webhook_deliveries_webhook_id_status_id",
            ["webhook_id", "status", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_webhook_id_status_id")
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_status_next_attempt_at"),
            ["status", "next_attempt_at"],
            unique=False,
        )
