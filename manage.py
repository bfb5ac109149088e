"""Operator commands: `python manage.py create-admin --email E --name N`."""

import argparse
import getpass
import sys
from collections.abc import Sequence

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import select

import security
from database import Database, upgrade_to_head, write_session
from models import User
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="manage.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    admin = commands.add_parser("create-admin", help="create the first admin, or promote a user")
    admin.add_argument("--email", required=True)
    admin.add_argument("--name", required=True)
    args = parser.parse_args(argv)

    try:
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
