"""The few SELECTs that run on every request, compiled once and run on SQLite's own cursor.

On SQLite, SQLAlchemy's `Connection.execute` costs three to four times what the query costs
SQLite: an execution context, events, a compiled-cache lookup, a Result and its Rows
(measured: 24 us for the user check, of which SQLite's part is 6). A `Prepared` statement is
compiled once, its parameters are passed in the driver's order, and each column goes
through the result processor SQLAlchemy itself would apply, so the rows hold exactly the
values Core returns. It begins no transaction: it reads in whatever the connection is in.

Other databases keep Core: behind a network round trip the difference does not show, and
their drivers' type handling depends on what the server reports.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # name, the value the statement itself gives it (if any), how the driver wants it
    binds: tuple[tuple[str, Any, Processor | None], ...]
    columns: tuple[tuple[int, Processor], ...]


class Prepared:
    def __init__(self, statement: Select) -> None:
        self.statement = statement
        self.keys = tuple(column.key for column in statement.selected_columns)
        self._sqlite: _Compiled | None = None

    def all(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, params).all()
        compiled = self._sqlite or self._compile(conn.dialect)
        args = []
        for name, default, to_driver in compiled.binds:
            value = params.get(name, default)
            args.append(value if to_driver is None else to_driver(value))
        rows = conn.connection.dbapi_connection.execute(compiled.sql, args).fetchall()
        if not compiled.columns:
            return rows
        processed = []
        for row in rows:
            values = list(row)
            for index, process in compiled.columns:
                values[index] = process(values[index])
            processed.append(values)
        return processed

    def one_or_none(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Any] | None:
        rows = self.all(conn, params)
        if len(rows) > 1:
            raise ValueError("more than one row where at most one was expected")
        return rows[0] if rows else None

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        if (
            not compiled.positional
            or compiled.literal_execute_params
            or compiled.post_compile_params
        ):
            raise ValueError("only plain positional statements can be prepared")
        defaults = compiled.params
        binds = tuple(
            (
                name,
                defaults.get(name),
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in compiled.positiontup or ()
        )
        processors = (
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in self.statement.selected_columns
        )
        columns = tuple((i, process) for i, process in enumerate(processors) if process)
        self._sqlite = _Compiled(compiled.string, binds, columns)
        return self._sqlite
