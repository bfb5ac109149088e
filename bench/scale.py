"""`make bench-scale`: GET /order as the orders table grows from 1,000 to 1,000,000 orders.

One database per backend is grown in steps (1k, 10k, 100k, 1M orders by default) with bulk
inserts, not through the API: half of the orders are one busy customer's, the rest spread over
1,000 others; each has 1 to 3 lines and its creation in the history; 80% finished, 10% pending,
10% cancelled; created over a year in id order. At each step the app is started on it (one
uvicorn worker pinned to the first core, production settings, as `make bench` runs it) and wrk,
on the second core, measures each page with one connection: a request at a time, so p50 and
p99 are the latency of the query itself, not of a queue (wrk's percentiles count a stall for
the requests it held up, so a rare 50 ms pause can set a p99). Then GET /order/{id} is
measured again while two connections run an admin's heavy lists.

Targets: a cursor page deep in the list at the largest size costs at most twice what it costs
at the smallest (p50), and GET /order/{id}'s p99 under the heavy lists is at most 4 times its
idle p99 + 5 ms, at every size.

PostgreSQL is measured too when SCALE_DATABASE_URL (or TEST_DATABASE_URL) names one, in a schema
of its own that is dropped at the end; `--sqlite-only` skips it. The p50s are drawn against the
number of orders in docs/scale.png. Exit status 1 when a target fails.
"""

import argparse
import logging
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

import cursors
import security
from bench.run import (
    APP_CORE,
    LOAD_CORE,
    REPO,
    SECRET,
    Result,
    Server,
    ensure_wrk,
    python_load,
    wrk,
)
from database import upgrade_to_head
from models import Product, User
from order_queries import OrderFilter
from security import TokenType

SIZES = (1_000, 10_000, 100_000, 1_000_000)
OTHER_USERS = 1_000
PRODUCTS = 100
ADMIN_ID, BUSY_ID = 1, 2  # the other users follow
# Pages "deep in the list" start this far down the caller's orders.
DEPTH = 0.9
PAGE = 20
# Generated and inserted this many orders at a time; committed every TRANSACTION of them.
CHUNK, TRANSACTION = 10_000, 100_000
START = datetime(2025, 1, 1)  # naive UTC, as SQLite keeps it
YEAR = timedelta(days=365)


@dataclass(frozen=True)
class Query:
    key: str
    label: str
    listing: bool  # a page of GET /order: drawn on the plot


QUERIES = (
    Query("first", "first page (with total)", True),
    Query("cursor", f"cursor page at {DEPTH:.0%} depth", True),
    Query("pending", "status=pending, first page", True),
    Query("month", "a month (created_from/to), first page", True),
    Query("offset", f"offset page at {DEPTH:.0%} depth", True),
    Query("by_id", "GET /order/{id}", False),
)
ROLES = ("admin", "busy")
ROLE_LABEL = {"admin": "admin", "busy": "busy customer"}

BY_ID_LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/order/" .. ((counter * 7919) % {count} * {step} + {first}))
end
"""

CYCLE_LUA = """
paths = {{{paths}}}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[counter % #paths + 1])
end
"""


# --- seeding ------------------------------------------------------------------------------


@dataclass
class Rows:
    orders: list[tuple[Any, ...]]
    items: list[tuple[Any, ...]]
    changes: list[tuple[Any, ...]]


class Generator:
    """The orders, in id order, the same whatever the steps: ids are dealt out in sequence
    and the random choices come from one seeded stream."""

    def __init__(self, spacing: timedelta, item_id: int, seed: int = 42) -> None:
        self.spacing = spacing
        self.item_id = item_id
        self.rng = random.Random(seed)  # noqa: S311 - made-up data, the same every run
        self.prices = {p: f"{p % 50 + 1}.25" for p in range(1, PRODUCTS + 1)}

    def created_at(self, order_id: int) -> datetime:
        return START + self.spacing * (order_id - 1)

    def rows(self, first: int, last: int, tz: str) -> Rows:
        """Orders first..last; `tz` is appended to timestamps (PostgreSQL's COPY wants it)."""
        rng, products = self.rng, range(1, PRODUCTS + 1)
        rows = Rows([], [], [])
        for order_id in range(first, last + 1):
            # Every other order is the busy customer's: exactly half, spread evenly.
            user_id = BUSY_ID if order_id % 2 == 0 else BUSY_ID + 1 + rng.randrange(OTHER_USERS)
            roll = rng.random()
            status = "pending" if roll < 0.1 else "cancelled" if roll < 0.2 else "finished"
            created = self.created_at(order_id)
            updated = created if status == "pending" else created + timedelta(hours=2)
            created_text = created.isoformat(" ", "microseconds") + tz
            rows.orders.append(
                (
                    order_id,
                    user_id,
                    status,
                    created_text,
                    updated.isoformat(" ", "microseconds") + tz,
                )
            )
            for product_id in rng.sample(products, rng.randint(1, 3)):
                self.item_id += 1
                rows.items.append(
                    (self.item_id, order_id, product_id, rng.randint(1, 5), self.prices[product_id])
                )
            # Its creation: one change per order, so it shares the order's id.
            rows.changes.append((order_id, order_id, None, "pending", user_id, created_text))
        return rows


class Store:
    """A database the bench grows: migrated, its users and products, then orders in bulk."""

    name = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url)

    def prepare(self) -> None:
        upgrade_to_head(self.url)
        password_hash = security.pwd_context.hash("scale bench password")
        users = [
            {"id": ADMIN_ID, "name": "Admin", "email": "admin@example.com", "is_admin": True},
            {"id": BUSY_ID, "name": "Busy", "email": "busy@example.com", "is_admin": False},
        ] + [
            {"id": BUSY_ID + n, "name": f"User {n}", "email": f"user{n}@example.com"}
            for n in range(1, OTHER_USERS + 1)
        ]
        with self.engine.begin() as conn:
            conn.execute(
                insert(User),
                [{"is_admin": False, "password_hash": password_hash, **u} for u in users],
            )
            conn.execute(
                insert(Product),
                [
                    {"id": p, "name": f"Product {p}", "price": f"{p % 50 + 1}.25"}
                    for p in range(1, PRODUCTS + 1)
                ],
            )

    def scalar(self, sql: str, **params: object) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    @contextmanager
    def bulk(self) -> Iterator["Bulk"]:
        raise NotImplementedError

    def after_growth(self) -> None:
        """What a step needs once its rows are in."""

    def close(self) -> None:
        self.engine.dispose()


class Bulk:
    def write(self, rows: Rows) -> None:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The writes inside it, committed together at its end."""
        raise NotImplementedError


ORDER_COLUMNS = "orders (id, user_id, status, created_at, updated_at)"
ITEM_COLUMNS = "order_items (id, order_id, product_id, quantity, unit_price)"
CHANGE_COLUMNS = (
    "order_status_changes (id, order_id, from_status, to_status, changed_by, changed_at)"
)
INSERTS = (
    "INSERT INTO orders (id, user_id, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
    "INSERT INTO order_items (id, order_id, product_id, quantity, unit_price) "
    "VALUES (?, ?, ?, ?, ?)",
    "INSERT INTO order_status_changes "
    "(id, order_id, from_status, to_status, changed_by, changed_at) VALUES (?, ?, ?, ?, ?, ?)",
)


class SQLiteBulk(Bulk):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def write(self, rows: Rows) -> None:
        for sql, table in zip(INSERTS, (rows.orders, rows.items, rows.changes), strict=True):
            self.conn.executemany(sql, table)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN")
        yield
        self.conn.execute("COMMIT")


class SQLiteStore(Store):
    name = "SQLite"

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"sqlite:///{path}")

    @contextmanager
    def bulk(self) -> Iterator[Bulk]:
        # The app's own connections cannot write outside its unit of work; a plain one can.
        # Nothing else runs meanwhile, so durability is not worth an fsync.
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in (
                "journal_mode=WAL",
                "synchronous=OFF",
                "cache_size=-262144",  # 256 MiB: the indexes' pages stay in memory
                "temp_store=MEMORY",
            ):
                conn.execute(f"PRAGMA {pragma}")
            yield SQLiteBulk(conn)
            # The app then reads the database file, not a WAL as large as the step.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()


class PostgresBulk(Bulk):
    def __init__(self, conn: Any) -> None:
        self.conn = conn  # psycopg's

    def write(self, rows: Rows) -> None:
        with self.conn.cursor() as cursor:
            for columns, table in (
                (ORDER_COLUMNS, rows.orders),
                (ITEM_COLUMNS, rows.items),
                (CHANGE_COLUMNS, rows.changes),
            ):
                # COPY's text format, built here: several times faster than write_row.
                lines = "".join(
                    "\t".join("\\N" if v is None else str(v) for v in row) + "\n" for row in table
                )
                with cursor.copy(f"COPY {columns} FROM STDIN") as copy:
                    copy.write(lines)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield


class PostgresStore(Store):
    name = "PostgreSQL"

    def __init__(self, server_url: str) -> None:
        # A schema of its own (as the tests' postgres_url does), dropped by close().
        self.server_url = server_url
        self.schema = f"scale_{uuid.uuid4().hex[:8]}"
        self.admin = create_engine(server_url)
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        url = make_url(server_url).update_query_dict({"options": f"-csearch_path={self.schema}"})
        super().__init__(url.render_as_string(hide_password=False))

    @contextmanager
    def bulk(self) -> Iterator[Bulk]:
        raw = self.engine.raw_connection()
        try:
            yield PostgresBulk(raw.driver_connection)
        finally:
            raw.close()

    def after_growth(self) -> None:
        # The ids were given, so the sequences lag behind: harmless, as nothing here creates
        # a row through the app and the schema is dropped at the end.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # What autovacuum would do a little later, but before the measurements rather than
            # in the middle of them: statistics for the planner, the visibility map for
            # index-only scans.
            conn.execute(text("VACUUM (ANALYZE) orders, order_items, order_status_changes"))

    def close(self) -> None:
        super().close()
        with self.admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        self.admin.dispose()


def grow(store: Store, generator: Generator, start: int, end: int, progress: Progress) -> float:
    """Orders start+1..end into the store; the seconds it took."""
    task = progress.add_task(f"seeding {store.name} to {end:,} orders", total=end - start)
    began = time.perf_counter()
    tz = "+00" if isinstance(store, PostgresStore) else ""
    with store.bulk() as bulk:
        for begin in range(start + 1, end + 1, TRANSACTION):
            with bulk.transaction():
                for first in range(begin, min(begin + TRANSACTION, end + 1), CHUNK):
                    last = min(first + CHUNK - 1, end)
                    bulk.write(generator.rows(first, last, tz))
                    progress.advance(task, last - first + 1)
    progress.update(task, description=f"vacuum/checkpoint {store.name} at {end:,}")
    store.after_growth()
    progress.update(task, description=f"seeded {store.name} to {end:,} orders")
    return time.perf_counter() - began


# --- measuring ----------------------------------------------------------------------------


# The order at a depth of the admin's list, or of one customer's.
DEEPEST_OF_ALL = "SELECT id FROM orders ORDER BY id DESC LIMIT 1 OFFSET :depth"
DEEPEST_OF_ONE = (
    "SELECT id FROM orders WHERE user_id = :owner ORDER BY id DESC LIMIT 1 OFFSET :depth"
)


@dataclass
class Caller:
    role: str
    user_id: int
    owner: int | None  # the list's user_id filter: None for the admin's list of everyone's
    orders: int  # how many the caller sees
    headers: dict[str, str]
    paths: dict[str, str]  # query key -> path (by_id: its first path; wrk cycles ids)
    by_id_paths: list[str]
    by_id_script: Path


@dataclass
class Measured:
    """Everything one run measured, for the table, the targets and the plot."""

    rows: dict[tuple[str, int, str, str], Result]  # (database, size, query, role)
    hello: dict[tuple[str, int], Result]
    loaded: dict[tuple[str, int], tuple[Result, Result]]  # (reader, heavy lists)
    seeding: dict[tuple[str, int], float]


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def token_for(user_id: int) -> dict[str, str]:
    # Minted with the app's key, as bench/run.py does: a login would only add argon2's cost.
    token, _ = security.create_token(
        user_id=user_id, type=TokenType.access, lifetime=timedelta(hours=3), secret_key=SECRET
    )
    return {"Authorization": f"Bearer {token}"}


def callers(store: Store, generator: Generator, size: int, workdir: Path) -> list[Caller]:
    month_first = size // 2 + 1
    month_last = size // 2 + max(size // 12, 1)
    month = (
        f"created_from={stamp(generator.created_at(month_first))}"
        f"&created_to={stamp(generator.created_at(month_last))}"
    )
    result = []
    for role, user_id, owner, count, step, first in (
        ("admin", ADMIN_ID, None, size, 1, 1),
        ("busy", BUSY_ID, BUSY_ID, size // 2, 2, 2),
    ):
        depth = int(count * DEPTH)
        # The cursor a client would hold after walking down to that depth: the id of the
        # order there (found once with an offset), signed as the app signs it.
        after = store.scalar(
            DEEPEST_OF_ALL if owner is None else DEEPEST_OF_ONE, owner=owner, depth=depth
        )
        cursor = cursors.make(SECRET, f"{user_id}|{OrderFilter(user_id=owner)}", after)
        script = workdir / f"by_id_{role}.lua"
        script.write_text(BY_ID_LUA.format(count=count, step=step, first=first))
        result.append(
            Caller(
                role=role,
                user_id=user_id,
                owner=owner,
                orders=count,
                headers=token_for(user_id),
                paths={
                    "first": f"/order?limit={PAGE}",
                    "cursor": f"/order?limit={PAGE}&cursor={cursor}",
                    "pending": f"/order?limit={PAGE}&status=pending",
                    "month": f"/order?limit={PAGE}&{month}",
                    "offset": f"/order?limit={PAGE}&offset={depth}",
                    "by_id": f"/order/{first}",
                },
                by_id_paths=[f"/order/{(n * 7919) % count * step + first}" for n in range(1000)],
                by_id_script=script,
            )
        )
    return result


def check(app: Server, caller: Caller) -> None:
    """Every path answers as the seeding says it must, and each runs once before it is timed
    (the statements' first compilation, the pages' first read)."""
    with httpx2.Client(base_url=app.url, headers=caller.headers, timeout=60) as client:
        for key, path in caller.paths.items():
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{caller.role} {path}: {response.status_code} {response.text}")
            body = response.json()
            if key != "by_id" and len(body["items"]) != PAGE:
                raise RuntimeError(f"{caller.role} {path}: {len(body['items'])} orders, not {PAGE}")
            if key == "first" and body["total"] != caller.orders:
                raise RuntimeError(f"{caller.role}: total {body['total']}, not {caller.orders}")
            if key == "first":
                # The minted cursor is only a stand-in for a walked one if the app makes the
                # same: check it against the one this page gave.
                scope = f"{caller.user_id}|{OrderFilter(user_id=caller.owner)}"
                if body["next_cursor"] != cursors.make(SECRET, scope, body["items"][-1]["id"]):
                    raise RuntimeError(
                        "the app's cursors changed: update callers() in bench/scale.py"
                    )


class Loader:
    """wrk when there is one (bench/run.py's), else its Python fallback."""

    def __init__(self, use_wrk: bool, seconds: float) -> None:
        self.use_wrk, self.seconds = use_wrk, seconds

    def run(
        self,
        name: str,
        base: str,
        path: str,
        *,
        headers: dict[str, str],
        connections: int = 1,
        script: Path | None = None,
        paths: list[str] | None = None,
        seconds: float | None = None,
    ) -> Result:
        seconds = seconds or self.seconds
        if self.use_wrk:
            return wrk(
                name,
                base + path,
                seconds=seconds,
                connections=connections,
                headers=headers,
                script=str(script) if script else None,
            )
        return python_load(
            name,
            base,
            seconds=seconds,
            connections=connections,
            headers=headers,
            paths=paths or [path],
        )

    def orders_by_id(self, name: str, base: str, caller: Caller, **options: Any) -> Result:
        """GET /order/{id} over the caller's orders, in turn (wrk's script picks the ids)."""
        return self.run(
            name,
            base,
            "/order" if self.use_wrk else caller.paths["by_id"],
            headers=caller.headers,
            script=caller.by_id_script,
            paths=caller.by_id_paths,
            **options,
        )


def measure_size(
    store: Store,
    generator: Generator,
    size: int,
    *,
    loader: Loader,
    hello: Server,
    workdir: Path,
    hammers: int,
    measured: Measured,
    progress: Progress,
) -> None:
    env = {
        "DATABASE_URL": store.url,
        "SECRET_KEY": SECRET,
        "ENVIRONMENT": "production",
        # Production needs mail settings to start; nothing here sends an email.
        "SMTP_HOST": "127.0.0.1",
        "EMAIL_FROM": "bench@example.com",
        "PASSWORD_RESET_URL": "https://shop.example.com/reset?token={token}",
        # No webhooks here: the worker's delivery loop would only poll.
        "WEBHOOK_DELIVER_IN_APP": "false",
    }
    who = callers(store, generator, size, workdir)
    steps = 1 + len(ROLES) * len(QUERIES) + 1
    task = progress.add_task(f"measuring {store.name} at {size:,} orders", total=steps)
    db = store.name
    app = Server("main:app", REPO, env, workdir / f"app-{db}-{size}.log")
    try:
        for caller in who:
            check(app, caller)
        # A fresh worker's first second is slower (the collector's first full passes over
        # the app's objects, new connections): measured, it lands in the first row's p99.
        admin = who[0]
        loader.orders_by_id("warm-up", app.url, admin, seconds=2)
        measured.hello[db, size] = loader.run(
            "GET /hello (bare FastAPI)", hello.url, "/hello", headers={}
        )
        progress.advance(task)
        for caller in who:
            for query in QUERIES:
                measured.rows[db, size, query.key, caller.role] = (
                    loader.orders_by_id(query.label, app.url, caller)
                    if query.key == "by_id"
                    else loader.run(
                        query.label,
                        app.url,
                        caller.paths[query.key],
                        headers=caller.headers,
                    )
                )
                progress.advance(task)

        # GET /order/{id} for the busy customer while an admin's heavy lists run beside it:
        # the first page (a count of every order), status=finished (a count of 80% of
        # them) and the deep offset page, in turn.
        busy = who[1]
        heavy = [
            admin.paths["first"],
            f"/order?limit={PAGE}&status=finished",
            admin.paths["offset"],
        ]
        script = workdir / "heavy.lua"
        script.write_text(CYCLE_LUA.format(paths=", ".join(f'"{p}"' for p in heavy)))
        hammered: dict[str, Result] = {}
        hammer = threading.Thread(
            target=lambda: hammered.__setitem__(
                "heavy",
                loader.run(
                    f"heavy admin lists, {hammers} connections",
                    app.url,
                    "/order" if loader.use_wrk else heavy[0],
                    headers=admin.headers,
                    connections=hammers,
                    script=script,
                    paths=heavy,
                    seconds=loader.seconds + 2,
                ),
            )
        )
        hammer.start()
        time.sleep(1)  # the heavy lists are running before the reader starts
        reader = loader.orders_by_id("GET /order/{id} under heavy lists", app.url, busy)
        hammer.join()
        measured.loaded[db, size] = (reader, hammered["heavy"])
        progress.advance(task)
    except BaseException:
        progress.console.print(f"the app's last log lines:\n{app.log_tail()}")
        raise
    finally:
        app.stop()


# --- reporting ----------------------------------------------------------------------------


def size_label(size: int) -> str:
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{name}"
    return f"{size:,}"


def cell(r: Result, hello: Result | None) -> str:
    text_ = f"{r.p50_ms:.2f} / {r.p99_ms:.1f}"
    if hello is not None:
        text_ += f" ({r.p50_ms / hello.p50_ms:.1f}x)"
    if r.errors:
        text_ += f" **{r.errors} errors**"
    return text_


def table(measured: Measured, databases: list[str], sizes: list[int]) -> list[str]:
    lines = []
    for db in databases:
        lines += [
            "",
            f"**{db}** — p50 / p99 ms (p50 as a multiple of the bare hello's), one connection",
            "",
            "| query | as | " + " | ".join(f"{size_label(s)} orders" for s in sizes) + " |",
            "|---|---|" + "---:|" * len(sizes),
        ]
        hello = [measured.hello[db, s] for s in sizes]
        lines.append(
            "| GET /hello (bare FastAPI) | | " + " | ".join(cell(h, None) for h in hello) + " |"
        )
        for query in QUERIES:
            for role in ROLES:
                cells = [
                    cell(measured.rows[db, s, query.key, role], measured.hello[db, s])
                    for s in sizes
                ]
                lines.append(f"| {query.label} | {ROLE_LABEL[role]} | " + " | ".join(cells) + " |")
        readers = [measured.loaded[db, s][0] for s in sizes]
        lines.append(
            "| GET /order/{id} under heavy admin lists | busy customer | "
            + " | ".join(
                cell(r, measured.hello[db, s]) for r, s in zip(readers, sizes, strict=True)
            )
            + " |"
        )
        heavy = [measured.loaded[db, s][1] for s in sizes]
        lines.append(
            "| heavy admin lists (count, status=finished, deep offset): req/s | admin | "
            + " | ".join(
                f"{h.rps:,.1f} req/s" + (f" **{h.errors} errors**" if h.errors else "")
                for h in heavy
            )
            + " |"
        )
    return lines


def targets(
    measured: Measured, databases: list[str], sizes: list[int]
) -> list[tuple[str, str, str, str, bool]]:
    """(target, database, measured, limit, ok) rows."""
    rows = []
    small, large = sizes[0], sizes[-1]
    for db in databases:
        for role in ROLES:
            at_small = measured.rows[db, small, "cursor", role]
            at_large = measured.rows[db, large, "cursor", role]
            # p50: one connection's p99 over a few seconds is a handful of samples on a shared
            # machine; the median is the query's cost.
            rows.append(
                (
                    f"cursor page at {DEPTH:.0%} depth ({ROLE_LABEL[role]}), p50 at "
                    f"{size_label(large)} vs {size_label(small)}",
                    db,
                    f"{at_large.p50_ms:.2f} ms vs {at_small.p50_ms:.2f} ms "
                    f"({at_large.p50_ms / at_small.p50_ms:.2f}x)",
                    "<= 2x",
                    at_large.p50_ms <= 2 * at_small.p50_ms,
                )
            )
        for size in sizes:
            idle = measured.rows[db, size, "by_id", "busy"]
            reader, _ = measured.loaded[db, size]
            limit = 4 * idle.p99_ms + 5
            rows.append(
                (
                    f"GET /order/{{id}} p99 under heavy admin lists, {size_label(size)} orders",
                    db,
                    f"{reader.p99_ms:.1f} ms (idle {idle.p99_ms:.1f} ms)",
                    f"<= 4 x {idle.p99_ms:.1f} + 5 = {limit:.1f} ms",
                    reader.p99_ms <= limit,
                )
            )
        errors = sum(r.errors for k, r in measured.rows.items() if k[0] == db) + sum(
            reader.errors + heavy.errors
            for k, (reader, heavy) in measured.loaded.items()
            if k[0] == db
        )
        rows.append(("every request answered 2xx", db, f"{errors} errors", "0", errors == 0))
    return rows


def plot(measured: Measured, databases: list[str], sizes: list[int], path: Path) -> None:
    # Imported here: only the plot needs it, and only with Agg (no display here).
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    figure, axes = plt.subplots(
        1, len(databases), figsize=(max(9, 6 * len(databases)), 7), sharey=True, squeeze=False
    )
    colours = plt.get_cmap("tab10")
    for ax, db in zip(axes[0], databases, strict=True):
        for n, query in enumerate(q for q in QUERIES if q.listing):
            for role, style, marker in (("admin", "-", "o"), ("busy", "--", "^")):
                ax.plot(
                    sizes,
                    [measured.rows[db, s, query.key, role].p50_ms for s in sizes],
                    style,
                    marker=marker,
                    color=colours(n),
                    label=f"{query.label}, {ROLE_LABEL[role]}",
                )
        ax.plot(
            sizes,
            [measured.rows[db, s, "by_id", "busy"].p50_ms for s in sizes],
            ":",
            marker=".",
            color="grey",
            label="GET /order/{id}, for reference",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [size_label(s) for s in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        # Plain milliseconds (0.5, 1, 2, 50) rather than powers of ten.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(
            FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
        )
        ax.set_title(db)
        ax.set_xlabel("orders in the database")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("p50 latency (ms), one request at a time")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize="small", frameon=False)
    figure.suptitle(
        "GET /order, a page of 20, as the orders table grows\n"
        "half of the orders are one busy customer's; solid: as the admin, dashed: as that customer",
        fontsize="medium",
    )
    figure.tight_layout(rect=(0, 0.2, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# --- the run ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in SIZES),
        help="orders at each step, comma separated (default: %(default)s)",
    )
    parser.add_argument("--seconds", type=float, default=3, help="per measurement")
    parser.add_argument("--hammers", type=int, default=2, help="connections of the heavy lists")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SCALE_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL"),
        help="a PostgreSQL server's URL (default: $SCALE_DATABASE_URL or $TEST_DATABASE_URL)",
    )
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "scale.png")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite database")
    args = parser.parse_args()
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",")})
    if sizes[0] < 2 * PAGE * 12:
        parser.error(f"the smallest size must be at least {2 * PAGE * 12} orders")

    # A handler on the root logger keeps Alembic's env.py from logging each migration.
    logging.basicConfig(level=logging.WARNING)
    console = Console(stderr=True)  # progress on stderr, the table alone on stdout
    use_wrk = ensure_wrk() is not None
    loader = Loader(use_wrk, args.seconds)
    workdir = Path(tempfile.mkdtemp(prefix="orders-scale-"))
    backends: list[tuple[str, Callable[[], Store]]] = [
        ("SQLite", lambda: SQLiteStore(workdir / "scale.db"))
    ]
    if args.postgres and not args.sqlite_only:
        backends.append(("PostgreSQL", lambda: PostgresStore(args.postgres)))
    measured = Measured({}, {}, {}, {})
    began = time.perf_counter()
    hello = Server("bench.hello:app", REPO, {}, workdir / "hello.log")
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            for _, make_store in backends:
                store = make_store()
                try:
                    store.prepare()
                    # Spread so that the largest step spans the year.
                    generator = Generator(YEAR / sizes[-1], item_id=0)
                    seeded = 0
                    for size in sizes:
                        measured.seeding[store.name, size] = grow(
                            store, generator, seeded, size, progress
                        )
                        seeded = size
                        measure_size(
                            store,
                            generator,
                            size,
                            loader=loader,
                            hello=hello,
                            workdir=workdir,
                            hammers=args.hammers,
                            measured=measured,
                            progress=progress,
                        )
                finally:
                    store.close()
    finally:
        hello.stop()
        if args.keep:
            console.print(f"kept {workdir / 'scale.db'}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - began

    databases = [name for name, _ in backends]
    plot(measured, databases, sizes, args.plot)
    for line in table(measured, databases, sizes):
        print(line)
    checks = targets(measured, databases, sizes)
    print("\n| target | database | measured | limit | |")
    print("|---|---|---|---|---|")
    for target, db, value, limit, ok in checks:
        print(f"| {target} | {db} | {value} | {limit} | {'pass' if ok else 'FAIL'} |")
    seeding = ", ".join(
        f"{db} {sum(t for (d, _), t in measured.seeding.items() if d == db):.0f} s"
        for db in databases
    )
    print(
        f"\nload generator: {'wrk' if use_wrk else 'python'}, 1 connection per row "
        f"({args.hammers} for the heavy lists), {args.seconds:.0f} s per row; app pinned to "
        f"core {APP_CORE}, load on core {LOAD_CORE}; seeding {seeding}; whole run "
        f"{elapsed / 60:.1f} min; plot: {args.plot}"
    )
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
