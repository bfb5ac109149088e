"""Request and response bodies. Input models forbid unknown fields: no mass assignment."""

import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from operator import methodcaller
from typing import Annotated, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    Strict,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

import passwords
import webhook_urls
from models import MAX_ID, MAX_QUANTITY, DeliveryStatus, EventType, OrderStatus, StockReason

MAX_PAGE_SIZE = 100
MAX_ORDER_LINES = 100
PASSWORD_MIN, PASSWORD_MAX = 8, 128


def _encodable(value: str) -> str:
    # JSON allows lone surrogates ("\ud800"); no database or hash function accepts them.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _no_control_chars(value: str, allowed: str = "") -> str:
    if any(unicodedata.category(c) == "Cc" and c not in allowed for c in value):
        raise ValueError("must not contain control characters")
    return value


def _single_line(value: str) -> str:
    value = _no_control_chars(_encodable(value))
    if any(unicodedata.category(c) in ("Zl", "Zp") for c in value):
        raise ValueError("must be a single line")
    # A name of only invisible characters (zero-width spaces, joiners) is an empty name.
    if all(c.isspace() or unicodedata.category(c) == "Cf" for c in value):
        raise ValueError("must contain visible characters")
    return value


def _multi_line(value: str) -> str:
    return _no_control_chars(_encodable(value), allowed="\n\r\t")


def _lower(value: str) -> str:
    return value.lower()


def OneLineText(max_length: int) -> type[str]:  # noqa: N802 - reads as a type in field annotations
    return Annotated[  # type: ignore[return-value]
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length),
        AfterValidator(_single_line),
    ]


Id = Annotated[int, Strict(), Field(gt=0, le=MAX_ID, examples=[1])]


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is a moment before the first UTC date
        raise ValueError("must be a moment from 0001-01-01 to 9999-12-31 in UTC") from None


# A moment written with any offset, as the one instant it names: in UTC.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]


def _nfkc(value: object) -> object:
    # Compatibility forms (a full-width W, U+FF37) become the plain letters they stand for, so
    # one address cannot be registered twice in two spellings.
    return unicodedata.normalize("NFKC", value) if isinstance(value, str) else value


# Stored and compared normalised: NFKC, then lower case.
Email = Annotated[
    EmailStr,
    BeforeValidator(_nfkc),
    AfterValidator(_lower),
    Field(examples=["ada@example.com"]),
]


def _not_common(value: str) -> str:
    if passwords.is_common(value):
        raise ValueError("is one of the most common passwords; choose another")
    return value


# A new password; a login password (below) is only bounded.
Password = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX),
    AfterValidator(_encodable),
    AfterValidator(_not_common),
    Field(examples=["correct horse battery"]),
]
# A login password is never checked for strength (old passwords stay valid), only bounded so
# that an oversized one is refused before it reaches the hash function.
LoginPassword = Annotated[
    str,
    StringConstraints(min_length=1, max_length=PASSWORD_MAX),
    AfterValidator(_encodable),
    Field(examples=["correct horse battery"]),
]
Quantity = Annotated[int, Strict(), Field(ge=1, le=MAX_QUANTITY, examples=[2])]
PRICE_PATTERN = r"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,7}(\.[0-9]{1,2})?)$"
Price = Annotated[
    Decimal,
    Field(gt=0, max_digits=10, decimal_places=2),
    AfterValidator(lambda d: d.quantize(Decimal("0.01"))),
    # What the validator accepts, stated exactly: above zero, at most 8 + 2 digits.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": PRICE_PATTERN},
                {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 99999999.99,
                    "multipleOf": 0.01,
                },
            ],
            "examples": ["12.50"],
        }
    ),
]
Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=2000),
    AfterValidator(_multi_line),
]
Money = Annotated[
    Decimal,
    # Two decimal places, as text. A C callable: pydantic calls it for every amount of every
    # line of a page, and a Python function's frame costs more than the formatting.
    PlainSerializer(methodcaller("__format__", ".2f"), return_type=str, when_used="json"),
    Field(examples=["12.50"]),
]


def example(**body: object) -> ConfigDict:
    """A request example for /docs (and Swagger's "Try it out")."""
    return ConfigDict(json_schema_extra={"examples": [body]})


# Unknown fields are refused one error each; past this many the body is refused as a whole,
# before pydantic builds an error (and echoes the body) per key.
MAX_UNKNOWN_FIELDS = 20


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _not_too_many_unknown_fields(cls, data: object) -> object:
        if isinstance(data, dict) and len(data) > len(cls.model_fields) + MAX_UNKNOWN_FIELDS:
            unknown = len(data.keys() - cls.model_fields.keys())
            if unknown > MAX_UNKNOWN_FIELDS:
                raise ValueError(
                    f"{unknown} unknown fields; accepted: {', '.join(cls.model_fields)}"
                )
        return data


class Patch(Input):
    """A partial update: omitted fields stay as they are; null is refused for required ones."""

    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_nulls(self) -> "Patch":
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in self.nullable:
                raise ValueError(f"{name} may not be null")
        return self

    def changes(self) -> dict[str, object]:
        return self.model_dump(include=self.model_fields_set)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The document says what the validator accepts: a field may be omitted, but null only
        where `nullable` allows it (the `| None` in the annotations is for omission)."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        for name, field in schema.get("properties", {}).items():
            if name in cls.nullable or "anyOf" not in field:
                continue
            variants = [v for v in field.pop("anyOf") if v.get("type") != "null"]
            field.update(variants[0] if len(variants) == 1 else {"anyOf": variants})
            if field.get("default", ...) is None:
                del field["default"]
        return schema


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Error(BaseModel):
    """Every refusal other than 422: a short, human explanation."""

    detail: str = Field(examples=["Order not found"])


# --- auth ---------------------------------------------------------------------------------


class UserCreate(Input):
    model_config = example(
        name="Ada Lovelace", email="ada@example.com", password="correct horse battery"
    )

    name: OneLineText(100) = Field(examples=["Ada Lovelace"])
    email: Email
    password: Password

    @model_validator(mode="after")
    def _password_is_not_the_email(self) -> "UserCreate":
        if passwords.is_personal(self.password, self.email):
            raise ValueError("the password must not be the email or its local part")
        return self


class UserPublic(Output):
    id: int
    name: str
    email: str
    is_active: bool
    is_admin: bool
    created_at: datetime


class UserUpdate(Patch):
    model_config = example(is_active=False)

    is_active: StrictBool | None = None
    is_admin: StrictBool | None = None


class LoginRequest(Input):
    model_config = example(email="ada@example.com", password="correct horse battery")

    email: Email
    password: LoginPassword


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires", examples=[1800])


class RefreshRequest(Input):
    model_config = example(refresh_token="eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...")

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class PasswordChange(Input):
    model_config = example(
        current_password="correct horse battery", new_password="a new long passphrase"
    )

    current_password: LoginPassword
    new_password: Password


class PasswordResetRequest(Input):
    model_config = example(email="ada@example.com")

    email: Email


class PasswordResetConfirm(Input):
    model_config = example(
        token="Jq3...the token from the email", new_password="a new long passphrase"
    )

    token: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="The token from the password reset email"
    )
    new_password: Password


class Notice(BaseModel):
    """An answer that is a sentence, such as "a message is on its way"."""

    detail: str


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


# --- catalogue ------------------------------------------------------------------------------


def _integral(value: object) -> object:
    # JSON Schema's "integer" includes 25.0; strings and booleans stay refused (Strict).
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _non_zero(value: int) -> int:
    if value == 0:
        raise ValueError("must not be zero")
    return value


MAX_STOCK = 1_000_000_000
MAX_STOCK_DELTA = 1_000_000
Stock = Annotated[
    int,
    Strict(),
    Field(ge=0, le=MAX_STOCK, description="Units on hand; null: not tracked", examples=[25]),
    BeforeValidator(_integral),
]


class ProductCreate(Input):
    model_config = example(
        name="Espresso beans 1 kg", price="12.50", description="Dark roast", stock=25
    )

    name: OneLineText(200) = Field(examples=["Espresso beans 1 kg"])
    price: Price
    description: Description | None = None
    stock: Stock | None = None


class ProductUpdate(Patch):
    model_config = example(price="13.90")

    nullable: ClassVar[frozenset[str]] = frozenset({"description", "stock"})

    name: OneLineText(200) | None = None
    price: Price | None = None
    description: Description | None = None
    is_active: StrictBool | None = None
    stock: Stock | None = None


class ProductPublic(Output):
    id: int
    name: str
    description: str | None
    price: Money
    is_active: bool
    stock: int | None


class StockAdjustment(Input):
    model_config = example(delta=-3, note="three bags damaged in transit")

    delta: Annotated[
        int,
        Strict(),
        Field(
            ge=-MAX_STOCK_DELTA,
            le=MAX_STOCK_DELTA,
            description="Units to add (or remove); not 0",
            json_schema_extra={"not": {"const": 0}},
        ),
        BeforeValidator(_integral),
        AfterValidator(_non_zero),
    ]
    note: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, max_length=500),
            AfterValidator(_multi_line),
        ]
        | None
    ) = None


class StockMovementPublic(Output):
    id: int
    delta: int
    reason: StockReason
    order_id: int | None
    changed_by: int
    note: str | None
    created_at: datetime


# --- orders ---------------------------------------------------------------------------------


class OrderItemIn(Input):
    model_config = example(product_id=1, quantity=2)

    product_id: Id
    quantity: Quantity


class OrderCreate(Input):
    model_config = example(
        items=[{"product_id": 1, "quantity": 2}, {"product_id": 2, "quantity": 1}]
    )

    items: list[OrderItemIn] = Field(default_factory=list, max_length=MAX_ORDER_LINES)


class OrderItemPublic(Output):
    id: int
    product_id: int
    product_name: str
    quantity: int
    unit_price: Money
    line_total: Money


class OrderPublic(Output):
    id: int
    user_id: int
    status: OrderStatus
    items: list[OrderItemPublic]
    total: Money
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    items: list[OrderPublic]
    total: int | None = Field(description="Every match; null on a page fetched with `cursor`")
    limit: int
    offset: int
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the page after this one; null on the last page"
    )


class StatusChangePublic(Output):
    from_status: OrderStatus | None
    to_status: OrderStatus
    changed_by: int
    changed_at: datetime


# --- system ---------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"


class Readiness(Health):
    schema_revision: str = Field(description="The migration the database is at", examples=["0005"])


# --- webhooks -------------------------------------------------------------------------------


def _safe_shape(url: str) -> str:
    webhook_urls.check_shape(url)
    return url


def _distinct(events: list[EventType]) -> list[EventType]:
    return list(dict.fromkeys(events))


WebhookURL = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2000, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://"),
    AfterValidator(_safe_shape),
    Field(examples=["https://hooks.example.com/orders"]),
]
EventTypes = Annotated[
    list[EventType],
    Field(min_length=1, max_length=20, examples=[["order.created", "order.finished"]]),
    AfterValidator(_distinct),
]


class WebhookCreate(Input):
    model_config = example(
        url="https://hooks.example.com/orders",
        events=["order.created", "order.cancelled", "order.finished"],
        description="Kitchen display",
    )

    url: WebhookURL
    events: EventTypes
    description: OneLineText(500) | None = None


class WebhookUpdate(Patch):
    model_config = example(is_active=False)
    nullable: ClassVar[frozenset[str]] = frozenset({"description"})

    url: WebhookURL | None = None
    events: EventTypes | None = None
    description: OneLineText(500) | None = None
    is_active: StrictBool | None = None
    rotate_secret: Literal[True] | None = Field(
        default=None, description="true: replace the signing secret (the answer shows it)"
    )


class WebhookPublic(Output):
    id: int
    url: str
    events: list[EventType]
    description: str | None
    is_active: bool
    created_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(
        description="The signing secret, shown only in this answer", examples=["whsec_..."]
    )


class WebhookChanged(WebhookPublic):
    secret: str | None = Field(
        description="The new signing secret when `rotate_secret` was sent (shown only in this "
        "answer); otherwise null"
    )


class DeliveryPublic(Output):
    id: int
    event_id: str
    event_type: EventType
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
