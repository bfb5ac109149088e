"""Indexes for every filter of GET /order: status, user and status, creation time

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 14:55:22.485102

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_orders_status_id", ["status", "id"], unique=False)
        batch_op.create_index(
            "ix_orders_user_id_status_id", ["user_id", "status", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_user_id_status_id")
        batch_op.drop_index("ix_orders_status_id")
        batch_op.drop_index("ix_orders_created_at")
