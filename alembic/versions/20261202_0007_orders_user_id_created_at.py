"""An index for one customer's orders by creation time: without it, a date range of a
customer with many orders walks all of them

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 15:48:41.514002

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(
            "ix_orders_user_id_created_at", ["user_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_user_id_created_at")
