"""Operator commands.

python manage.py create-admin --email E --name N   the first admin (password from stdin)
python manage.py seed-demo                        a demo catalogue, customer and admin
python manage.py openapi [FILE]                   the OpenAPI document (default stdout)
"""

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

import security
from database import Database, upgrade_to_head, write_session
from models import Product, User
from schemas import Email, Line, Password
from settings import Settings


def read_password(stdin=sys.stdin) -> str:  # noqa: ANN001 - a text stream
    """From the terminal without echo; from one line of standard input when it is piped."""
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            raise ValueError("passwords do not match")
        return first
    return stdin.readline().rstrip("\r\n")


def create_admin(settings: Settings, email: str, name: str, password_source=read_password) -> str:  # noqa: ANN001
    """Create an admin, or make an existing user one. Returns what was done, for the operator."""
    email = TypeAdapter(Email).validate_python(email)
    name = TypeAdapter(Line(100)).validate_python(name)
    upgrade_to_head(settings.database_url)
    db = Database(settings)
    try:
        with write_session(db) as session:
            user = session.scalar(select(User).where(User.email == email))
            if user is not None:
                user.is_admin = True
                return f"{email} is now an admin"
        password = TypeAdapter(Password).validate_python(password_source())
        password_hash = security.hash_password(password)
        with write_session(db) as session:
            session.add(User(email=email, name=name, password_hash=password_hash, is_admin=True))
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
    hashes = {email: security.hash_password(pw) for email, _, pw, _ in DEMO_ACCOUNTS}
    db = Database(settings)
    try:
        with write_session(db) as session:
            have = set(session.scalars(select(Product.name)))
            for name, price, description in DEMO_PRODUCTS:
                if name not in have:
                    session.add(Product(name=name, price=Decimal(price), description=description))
            have = set(session.scalars(select(User.email)))
            for email, name, _, admin in DEMO_ACCOUNTS:
                if email not in have:
                    session.add(
                        User(email=email, name=name, password_hash=hashes[email], is_admin=admin)
                    )
    finally:
        db.dispose()
    accounts = "\n".join(
        f"  {email} / {password}{' (admin)' if admin else ''}"
        for email, _, password, admin in DEMO_ACCOUNTS
    )
    return f"Demo catalogue of {len(DEMO_PRODUCTS)} products ready. Log in with:\n{accounts}"


def openapi_document() -> str:
    from main import create_app

    return json.dumps(create_app(Settings()).openapi(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="manage.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    admin = commands.add_parser("create-admin", help="create the first admin, or promote a user")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)
    commands.add_parser(
        "seed-demo", help="a demo catalogue, customer and admin (not in production)"
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
