"""Operator commands.

examples:
  python manage.py create-admin --email E --name N   the first admin (password from stdin)
  python manage.py seed-demo                         a demo catalogue, customer and admin
  python manage.py deliver-webhooks                  send webhook deliveries until SIGTERM
  python manage.py openapi [FILE]                    the OpenAPI document (default stdout)
"""

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import InterfaceError, OperationalError

import auth_service
import passwords
import security
import webhook_delivery
from database import Database, upgrade_to_head
from models import Product, User
from schemas import Email, OneLineText, Password
from settings import Settings


def read_password(stdin: TextIO | None = None) -> str:
    """From the terminal without echo; from one line of standard input when it is piped."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            raise ValueError("passwords do not match")
        return first
    return stdin.readline().rstrip("\r\n")


def create_admin(settings: Settings, email: str, name: str, password_source=read_password) -> str:  # noqa: ANN001
    """Create an admin, or make an existing user one. Returns what was done, for the operator."""
    email = TypeAdapter(Email).validate_python(email)
    name = TypeAdapter(OneLineText(100)).validate_python(name)
    upgrade_to_head(settings.database_url)
    return asyncio.run(_create_admin(Database(settings), email, name, password_source))


async def _create_admin(db: Database, email: str, name: str, password_source) -> str:  # noqa: ANN001
    try:
        if await db.write(auth_service.make_admin, email):
            return f"{email} is now an admin"
        password = TypeAdapter(Password).validate_python(password_source())
        if passwords.is_personal(password, email):
            raise ValueError("the password must not be the email or its local part")
        password_hash = await security.hash_password(password)
        await db.write(auth_service.add_admin, name, email, password_hash)
        return f"Created admin {email}"
    finally:
        db.dispose()


DEMO_PRODUCTS = [
    ("Espresso beans 1 kg", "12.50", "Dark roast, whole beans"),
    ("Green tea 100 g", "3.99", "Loose leaf sencha"),
    ("Brown sugar 500 g", "2.10", None),
    ("Ceramic mug", "8.00", "350 ml, dishwasher safe"),
]
DEMO_ACCOUNTS = [
    # email, name, password, admin
    ("demo@example.com", "Demo Customer", "demo password", False),
    ("demo-admin@example.com", "Demo Admin", "demo admin password", True),
]


def seed_demo(settings: Settings) -> str:
    """Add the demo catalogue and accounts that are missing; running it twice changes nothing."""
    if settings.environment == "production":
        raise ValueError("seed-demo creates accounts with published passwords: not in production")
    upgrade_to_head(settings.database_url)
    asyncio.run(_seed_demo(Database(settings)))
    accounts = "\n".join(
        f"  {email} / {password}{' (admin)' if admin else ''}"
        for email, _, password, admin in DEMO_ACCOUNTS
    )
    return f"Demo catalogue of {len(DEMO_PRODUCTS)} products ready. Log in with:\n{accounts}"


async def _seed_demo(db: Database) -> None:
    try:
        hashes = {email: await security.hash_password(pw) for email, _, pw, _ in DEMO_ACCOUNTS}
        await db.write(_add_missing_demo_rows, hashes)
    finally:
        db.dispose()


def _add_missing_demo_rows(conn: Connection, hashes: dict[str, str]) -> None:
    have = set(conn.scalars(select(Product.name)))
    products = [
        {"name": name, "price": Decimal(price), "description": description}
        for name, price, description in DEMO_PRODUCTS
        if name not in have
    ]
    if products:
        conn.execute(insert(Product), products)
    have = set(conn.scalars(select(User.email)))
    users = [
        {"email": email, "name": name, "password_hash": hashes[email], "is_admin": admin}
        for email, name, _, admin in DEMO_ACCOUNTS
        if email not in have
    ]
    if users:
        conn.execute(insert(User), users)


def openapi_document() -> str:
    from main import create_app

    return json.dumps(create_app(Settings()).openapi(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="manage.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    admin = commands.add_parser("create-admin", help="create the first admin, or promote a user")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)
    commands.add_parser(
        "seed-demo", help="a demo catalogue, customer and admin (not in production)"
    )
    commands.add_parser(
        "deliver-webhooks",
        help="send webhook deliveries until stopped (SIGTERM), beside or instead of the app",
    )
    spec = commands.add_parser("openapi", help="write the OpenAPI document")
    spec.add_argument("file", nargs="?", help="where to write it (default: standard output)")
    args = parser.parse_args(argv)

    try:
        if args.command == "openapi":
            document = openapi_document()
            if args.file:
                Path(args.file).write_text(document)
            else:
                sys.stdout.write(document)
        elif args.command == "deliver-webhooks":
            asyncio.run(webhook_delivery.serve(Settings()))
        elif args.command == "seed-demo":
            print(seed_demo(Settings()))
        else:
            print(create_admin(Settings(), args.email, args.name))
    except ValidationError as exc:
        for error in exc.errors():
            print(f"error: {error['msg']}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OperationalError, InterfaceError) as exc:  # an operator needs the line, not the trace
        reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
        print(f"error: the database cannot be reached: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
