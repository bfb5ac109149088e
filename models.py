"""The database schema. Alembic migrations are generated from, and checked against, this file."""

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy_utils import ChoiceType

MONEY = Numeric(10, 2)
MAX_QUANTITY = 100
# Ids are 32-bit integers on PostgreSQL; anything larger cannot name a row.
MAX_ID = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite keeps no offset of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given for a UTC column")
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[str | None], datetime | None] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return _sqlite_utc


def _sqlite_utc(value: str | None) -> datetime | None:
    """Read the naive UTC text SQLite keeps as an aware datetime.

    Parsing it with its offset appended is much cheaper than parsing it and then setting
    tzinfo (datetime.replace is slow), which shows on a page of orders: two timestamps a row.
    """
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value + "+00:00")
    except ValueError:  # text that carries its own offset; nothing this app writes
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class StockReason(StrEnum):
    order = "order"  # taken by an order or an added line
    release = "release"  # given back by a removed line or a cancelled order
    adjustment = "adjustment"  # an admin's change


class EventType(StrEnum):
    order_created = "order.created"
    order_updated = "order.updated"  # items added or removed
    order_cancelled = "order.cancelled"
    order_finished = "order.finished"


class DeliveryStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class OrderStatus(StrEnum):
    pending = "pending"
    cancelled = "cancelled"
    finished = "finished"


def status_type() -> ChoiceType:
    return ChoiceType(OrderStatus, impl=String(20))


def one_of(column: str, values: Iterable[StrEnum]) -> str:
    """A CHECK's test that `column` holds one of `values`, as comparisons joined by OR: SQLite
    tests an IN list of three or more values by building a temporary b-tree, again for every
    row it checks, which costs more than inserting the row."""
    return " OR ".join(f"{column} = '{value.value}'" for value in values)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        # The database refuses what no request may cause: stock below zero.
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(MONEY)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Units on hand; None: not tracked (never limits an order).
    stock: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(one_of("status", OrderStatus), name="status_valid"),
        # One for each filter of GET /order, each ending in the key the pages run down.
        Index("ix_orders_user_id_id", "user_id", "id"),
        Index("ix_orders_status_id", "status", "id"),
        Index("ix_orders_user_id_status_id", "user_id", "status", "id"),
        Index("ix_orders_created_at", "created_at"),
        Index("ix_orders_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    status: Mapped[OrderStatus] = mapped_column(status_type(), default=OrderStatus.pending)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    items: Mapped[list["OrderItem"]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderItem.id"
    )


class OrderItem(Base):
    __tablename__ = "order_items"
    __table_args__ = (
        UniqueConstraint("order_id", "product_id", name="uq_order_items_order_id_product_id"),
        CheckConstraint(f"quantity BETWEEN 1 AND {MAX_QUANTITY}", name="quantity_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    quantity: Mapped[int]
    # Copied from the catalogue when the line is created: later price changes never reach it.
    unit_price: Mapped[Decimal] = mapped_column(MONEY)

    order: Mapped[Order] = relationship(back_populates="items")
    product: Mapped[Product] = relationship(lazy="joined", innerjoin=True)


class OrderStatusChange(Base):
    __tablename__ = "order_status_changes"
    __table_args__ = (
        CheckConstraint(
            "from_status IS NULL OR " + one_of("from_status", OrderStatus),
            name="from_status_valid",
        ),
        CheckConstraint(one_of("to_status", OrderStatus), name="to_status_valid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[OrderStatus | None] = mapped_column(status_type())
    to_status: Mapped[OrderStatus] = mapped_column(status_type())
    changed_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StockMovement(Base):
    """One change of a product's stock, written in the transaction that made it: a product's
    movements add up to its stock (None counting as 0)."""

    __tablename__ = "stock_movements"
    __table_args__ = (
        CheckConstraint("delta <> 0", name="delta_not_zero"),
        CheckConstraint(one_of("reason", StockReason), name="reason_valid"),
        Index("ix_stock_movements_product_id_id", "product_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    delta: Mapped[int]
    reason: Mapped[StockReason] = mapped_column(ChoiceType(StockReason, impl=String(20)))
    # What an order reserved is read back from its movements when it gives units back.
    order_id: Mapped[int | None] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    changed_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefreshToken(Base):
    """One row per refresh token issued; rotation links a token to the family it came from."""

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Each token issued deletes a few expired ones, found by this index (auth_service).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    spent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PasswordResetToken(Base):
    """The one live password reset token of a user: a new request replaces it (so the older
    token stops working), using it deletes it. Only its SHA-256 is kept."""

    __tablename__ = "password_reset_tokens"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Webhook(Base):
    """A receiver of order events. While a process sends its deliveries it holds the lease
    (`lease_owner` until `lease_until`), so one process at a time sends them, in order."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(500))
    # Kept as given ("whsec_" + base64): the key every message is signed with.
    secret: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookEvent(Base):
    """An order change, as the outbox keeps it: written in the change's own transaction, with
    the body every webhook gets, byte for byte, on every attempt."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The webhook-id header: 96 random bits. Nothing looks events up by it or by order, so
    # neither has an index: an order change writes no more index pages than it must.
    uid: Mapped[str] = mapped_column(String(40))
    type: Mapped[EventType] = mapped_column(ChoiceType(EventType, impl=String(30)))
    order_id: Mapped[int]
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook, until it succeeds or runs out of attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # A webhook's deliveries, newest first (its delivery log).
        Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
        # What is due, webhook by webhook, oldest first: found without walking the deliveries
        # already made. (An index on (status, next_attempt_at) served "any webhook with
        # something due" too, but SQLite, without statistics, took it for one webhook's next
        # delivery as well, and sorted every webhook's backlog on every attempt.)
        Index("ix_webhook_deliveries_webhook_id_status_id", "webhook_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[DeliveryStatus] = mapped_column(ChoiceType(DeliveryStatus, impl=String(20)))
    attempts: Mapped[int] = mapped_column(default=0)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class WebhookAttempt(Base):
    """The delivery log: every attempt, its answer (or error) and how long it took."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int]


class RateLimitWindow(Base):
    """Attempts counted against a rate limit (throttle.py) for one key, until the window ends;
    shared by every worker process."""

    __tablename__ = "rate_limit_windows"

    bucket: Mapped[str] = mapped_column(String(300), primary_key=True)  # "login:ada@example.com"
    attempts: Mapped[int]
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class IdempotencyRecord(Base):
    """A used Idempotency-Key: which order it made, and a hash of the request that made it."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_id_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
