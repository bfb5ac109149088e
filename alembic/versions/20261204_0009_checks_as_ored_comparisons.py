"""CHECKs of enumerated values as comparisons joined by OR, not IN: SQLite builds a temporary
b-tree for every row it tests against an IN list of three or more values

Autogenerate does not compare CHECK constraints, so it generated an empty revision; the
constraints below are written by hand. The values allowed are the same before and after.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 19:49:04.375073

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# For each table: (constraint, its test before, its test after)
CHECKS = {
    "orders": [
        (
            "ck_orders_status_valid",
            "status IN ('pending', 'cancelled', 'finished')",
            "status = 'pending' OR status = 'cancelled' OR status = 'finished'",
        ),
    ],
    "order_status_changes": [
        (
            "ck_order_status_changes_from_status_valid",
            "from_status IS NULL OR from_status IN ('pending', 'cancelled', 'finished')",
            "from_status IS NULL OR from_status = 'pending' OR from_status = 'cancelled'"
            " OR from_status = 'finished'",
        ),
        (
            "ck_order_status_changes_to_status_valid",
            "to_status IN ('pending', 'cancelled', 'finished')",
            "to_status = 'pending' OR to_status = 'cancelled' OR to_status = 'finished'",
        ),
    ],
    "stock_movements": [
        (
            "ck_stock_movements_reason_valid",
            "reason IN ('order', 'release', 'adjustment')",
            "reason = 'order' OR reason = 'release' OR reason = 'adjustment'",
        ),
    ],
}


def upgrade() -> None:
    _replace(as_ors=True)


def downgrade() -> None:
    _replace(as_ors=False)


def _replace(*, as_ors: bool) -> None:
    # SQLite cannot alter a constraint: each batch copies its table once, with the new ones.
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, before, after in checks:
                batch_op.drop_constraint(op.f(name), type_="check")
                batch_op.create_check_constraint(op.f(name), after if as_ors else before)
