"""GET /order at scale: keyset pages (`cursor`, `next_cursor`), date ranges, and the indexes
every filter uses (checked in the query plans, so a later change cannot silently lose them)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, update

from asgi_client import TestClient
from conftest import Account, query_plan
from models import Order
from test_orders import list_orders, place


def walk(client: TestClient, account: Account, **params: object) -> list[int]:
    """Every order of the list, following next_cursor from the first page."""
    seen: list[int] = []
    page = list_orders(client, account, **params).json()
    while True:
        seen += [order["id"] for order in page["items"]]
        if page["next_cursor"] is None:
            return seen
        page = list_orders(client, account, **params, cursor=page["next_cursor"]).json()
        assert page["total"] is None


def test_cursor_pages_walk_every_order_once_newest_first(
    client: TestClient, alice: Account, bob: Account
) -> None:
    ids = [place(client, alice)["id"] for _ in range(7)]
    place(client, bob)
    assert walk(client, alice, limit=3) == sorted(ids, reverse=True)
    offsets = [
        order["id"]
        for offset in range(0, 7, 3)
        for order in list_orders(client, alice, limit=3, offset=offset).json()["items"]
    ]
    assert offsets == sorted(ids, reverse=True)


def test_new_orders_neither_repeat_nor_shift_a_walk(client: TestClient, alice: Account) -> None:
    ids = [place(client, alice)["id"] for _ in range(6)]
    first = list_orders(client, alice, limit=2).json()
    newer = [place(client, alice)["id"] for _ in range(3)]  # arrive while the client pages
    seen = [order["id"] for order in first["items"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        page = list_orders(client, alice, limit=2, cursor=cursor).json()
        seen += [order["id"] for order in page["items"]]
        cursor = page["next_cursor"]
    assert seen == sorted(ids, reverse=True)
    assert not set(newer) & set(seen)


def test_the_last_page_has_no_cursor_and_an_exact_fit_needs_no_empty_page(
    client: TestClient, alice: Account
) -> None:
    for _ in range(4):
        place(client, alice)
    first = list_orders(client, alice, limit=2).json()
    second = list_orders(client, alice, limit=2, cursor=first["next_cursor"]).json()
    assert len(second["items"]) == 2
    assert second["next_cursor"] is None
    assert first["total"] == 4


def test_a_cursor_is_refused_with_an_offset_when_tampered_or_elsewhere(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    for _ in range(3):
        place(client, alice)
        place(client, bob)
    cursor = list_orders(client, alice, limit=1).json()["next_cursor"]
    assert list_orders(client, alice, limit=1, cursor=cursor).status_code == 200

    def refused(account: Account, **params: object) -> str:
        response = list_orders(client, account, **params)
        assert response.status_code == 422, response.text
        return response.json()["detail"][0]["loc"][-1]

    assert refused(alice, cursor=cursor, offset=1) == "offset"
    assert refused(bob, cursor=cursor) == "cursor"  # another user's list
    assert refused(alice, cursor=cursor, status="pending") == "cursor"  # other filters
    assert refused(admin, cursor=cursor) == "cursor"
    payload, _, signature = cursor.partition(".")
    assert refused(alice, cursor=f"OTk5.{signature}") == "cursor"  # another position
    assert refused(alice, cursor=f"{payload}.AAAA") == "cursor"
    for junk in ["", ".", "not-a-cursor", "%%%.%%%", "x" * 201]:
        assert refused(alice, cursor=junk) == "cursor"


def test_an_admin_pages_a_status_filter_and_a_user_filter(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    mine = [place(client, alice)["id"] for _ in range(3)]
    theirs = [place(client, bob)["id"] for _ in range(3)]
    client.post(f"/order/{mine[0]}/cancel", headers=alice.headers)
    pending = sorted(mine[1:] + theirs, reverse=True)
    assert walk(client, admin, status="pending", limit=2) == pending
    assert walk(client, admin, user_id=bob.id, limit=2) == sorted(theirs, reverse=True)


def test_orders_are_filtered_by_creation_time_inclusive(client: TestClient, alice: Account) -> None:
    ids = [place(client, alice)["id"] for _ in range(4)]
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for n, order_id in enumerate(ids):  # one a day
        day = base + timedelta(days=n)
        client.app.state.db.write_sync(
            lambda conn, i=order_id, at=day: conn.execute(
                update(Order).where(Order.id == i).values(created_at=at)
            )
        )
    start, end = (base + timedelta(days=1)).isoformat(), (base + timedelta(days=2)).isoformat()
    page = list_orders(client, alice, created_from=start, created_to=end).json()
    assert [o["id"] for o in page["items"]] == [ids[2], ids[1]]
    assert page["total"] == 2
    assert walk(client, alice, created_from=start, limit=1) == [ids[3], ids[2], ids[1]]
    # In another offset, the same instant.
    noon_before = (base + timedelta(days=1)).astimezone(tz=None).isoformat()
    assert len(list_orders(client, alice, created_from=noon_before).json()["items"]) == 3


@pytest.mark.parametrize("value", ["2026-01-01T00:00:00", "yesterday", "2026-13-01T00:00:00Z"])
def test_a_date_without_offset_or_unreadable_is_422(
    client: TestClient, alice: Account, value: str
) -> None:
    assert list_orders(client, alice, created_from=value).status_code == 422


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("created_from", "0001-01-01T00:00:00+01:00"),  # the last hour of year 0, in UTC
        ("created_to", "9999-12-31T23:30:00-01:00"),  # the first half hour of year 10000
    ],
)
def test_a_date_that_has_no_utc_moment_is_422_naming_it(
    client: TestClient, alice: Account, name: str, value: str
) -> None:
    response = list_orders(client, alice, **{name: value})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", name]
    assert "0001-01-01 to 9999-12-31 in UTC" in error["msg"]


# Any offset a client may write: whole minutes, up to a minute short of a day either way.
OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


# Moments anywhere in the years 1 to 9999, and on their first and last days, where an offset
# can carry a moment out of them.
MOMENTS = st.one_of(
    st.datetimes(timezones=OFFSETS),
    st.datetimes(max_value=datetime(1, 1, 2), timezones=OFFSETS),
    st.datetimes(min_value=datetime(9999, 12, 30), timezones=OFFSETS),
)


@given(moment=MOMENTS, name=st.sampled_from(["created_from", "created_to"]))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_date_with_an_offset_is_a_page_or_a_422_never_a_500(
    client: TestClient, alice: Account, moment: datetime, name: str
) -> None:
    """Either a page, or a 422 that names the parameter."""
    response = list_orders(client, alice, **{name: moment.isoformat()})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["detail"][0]["loc"] == ["query", name]


# --- the plans ------------------------------------------------------------------------------

# Every filter the list offers, as an admin (no user) and as a customer (their own orders).
FILTERS = [
    {},
    {"status": "pending"},
    {"user_id": 1},
    {"user_id": 1, "status": "pending"},
    {"created_from": "2026-01-01T00:00:00+00:00"},
    {"user_id": 1, "created_from": "2026-01-01T00:00:00+00:00"},
]


@pytest.mark.parametrize("params", FILTERS)
def test_every_filter_is_served_by_an_index(
    client: TestClient, database_url: str, params: dict
) -> None:
    """No list query reads the whole orders table: each uses the primary key or an index."""
    from order_queries import OrderFilter, _page_statements

    where = OrderFilter(
        user_id=params.get("user_id"),
        status=params.get("status"),
        created_from=(
            datetime.fromisoformat(params["created_from"]) if "created_from" in params else None
        ),
    )
    count, rows = _page_statements(
        where.user_id is not None,
        where.status is not None,
        where.created_from is not None,
        False,
        True,
    )
    plans = [plan(client, statement.statement) for statement in (count, rows)]
    for found in plans:
        assert "orders" in found
        assert not full_scan_of_orders(found, database_url), found


def plan(client: TestClient, statement: object) -> str:
    database = client.app.state.db
    compiled = statement.compile(dialect=database.engine.dialect)
    params = {key: _sample(key) for key in compiled.params}
    return query_plan(database, str(compiled), _driver(compiled, params))


def _sample(key: str) -> object:
    return {
        "user_id": 1,
        "status": "pending",
        "created_from": "2026-01-01 00:00:00.000000",
        "created_to": "2026-12-31 00:00:00.000000",
        "after": 1000,
        "limit": 21,
        "offset": 0,
    }.get(key, 1)


def _driver(compiled: object, params: dict) -> object:
    positions = getattr(compiled, "positiontup", None)
    if positions:
        return tuple(params[name] for name in positions)
    return params


def full_scan_of_orders(found: str, database_url: str) -> bool:
    if database_url.startswith("sqlite"):
        return any(
            line.split(" ", 3)[-1].startswith("SCAN orders") and "USING" not in line
            for line in found.splitlines()
        )
    return "Seq Scan on orders" in found


def test_the_indexes_exist(client: TestClient) -> None:
    names = client.app.state.db.read_sync(
        lambda conn: {index["name"] for index in inspect(conn).get_indexes("orders")}
    )
    assert {
        "ix_orders_user_id_id",
        "ix_orders_status_id",
        "ix_orders_user_id_status_id",
        "ix_orders_created_at",
        "ix_orders_user_id_created_at",
    } <= names


def test_offset_pages_of_a_large_table_run_off_the_event_loop(
    client: TestClient, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    import order_queries
    from database import Database

    place(client, alice)
    place(client, alice)
    heavy: list[str] = []
    original = Database.read_heavy

    async def recording(self: Database, query: object, *args: object, **kwargs: object) -> object:
        heavy.append(getattr(query, "__name__", ""))
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(Database, "read_heavy", recording)
    cursor = list_orders(client, alice, limit=1).json()["next_cursor"]
    assert heavy == ([] if client.app.state.db.inline else ["page"])
    monkeypatch.setattr(order_queries, "INLINE_ORDERS", 0)  # as if the table were large
    assert list_orders(client, alice, limit=1).status_code == 200
    assert heavy[-1] == "page"
    count = len(heavy)
    assert cursor is not None
    keyset = list_orders(client, alice, limit=1, cursor=cursor)  # stays inline
    assert keyset.status_code == 200
    assert len(heavy) == count


def test_a_cursor_holds_for_the_same_instant_written_with_another_offset(
    client: TestClient, alice: Account
) -> None:
    for _ in range(3):
        place(client, alice)
    since = "2020-01-01T00:00:00+00:00"
    cursor = list_orders(client, alice, limit=1, created_from=since).json()["next_cursor"]
    same = "2020-01-01T01:00:00+01:00"
    assert list_orders(client, alice, limit=1, created_from=same, cursor=cursor).status_code == 200
