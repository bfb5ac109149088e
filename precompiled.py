"""The statements that run on every request, compiled to SQL once and run on SQLite's cursor.

On SQLite, SQLAlchemy's `Connection.execute` costs several times what the statement costs
SQLite (an execution context, a compiled-cache lookup, a Result and its Rows; the figures are
in the README's performance section). A `Precompiled` statement is compiled once; its
parameters go through the bind processors of their columns' types and are passed in the
driver's order, and each column of a result goes through the result processor SQLAlchemy
itself would apply, so what is stored and what is read are exactly what Core would store and
return.

It is still a statement of the connection it runs on: the engine's `before_cursor_execute`
and `after_cursor_execute` listeners, when there are any, see it like any other (tracing,
metrics), and it runs on the connection's guarded cursor, which refuses a write outside
`Database.write`. It begins no transaction: it runs in whatever the connection is in.

Other databases keep Core: behind a network round trip the difference does not show, and
their drivers' type handling depends on what the server reports.
"""

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, Connection, Select, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import UpdateBase

from database import driver_error

Processor = Callable[[Any], Any]
Params = Mapping[str, Any]
_UNSEEN = object()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # name, the value the statement itself gives it (if any), how the driver wants it
    binds: tuple[tuple[str, Any, Processor | None], ...]
    columns: tuple[tuple[int, Processor], ...]
    # Columns whose values repeat across rows: each distinct value is converted once a result.
    repeated: tuple[tuple[int, Processor], ...]

    def args(self, params: Params) -> tuple[Any, ...]:
        """The driver's positional parameters, a tuple as Core passes them (and so as the
        cursor listeners see them)."""
        args = []
        for name, default, to_driver in self.binds:
            value = params.get(name, default)
            args.append(value if to_driver is None else to_driver(value))
        return tuple(args)


def bound(*columns: str, **renamed: str) -> dict[str, BindParameter[Any]]:
    """VALUES for a precompiled write: each column from the parameter of its own name, or of
    the name given (precompiled statements get no Python-side defaults, so every value is a
    parameter)."""
    return {column: bindparam(column) for column in columns} | {
        column: bindparam(name) for column, name in renamed.items()
    }


class Precompiled:
    """A SELECT, or an INSERT/UPDATE/DELETE whose values are all bound parameters."""

    def __init__(self, statement: Select | UpdateBase, *, repeated: Sequence[str] = ()) -> None:
        """`repeated` names the columns a join repeats row after row (an order's, beside each
        of its lines): their result processors run once for each distinct value of a result,
        not once a row. Their values are shared between rows, so they must be immutable."""
        self.statement = statement
        self.repeated = frozenset(repeated)
        self._columns = (
            statement.selected_columns
            if isinstance(statement, Select)
            else statement.exported_columns  # what RETURNING returns
        )
        self.keys = tuple(column.key for column in self._columns)
        self._sqlite: _Compiled | None = None

    def all(self, conn: Connection, params: Params) -> Sequence[Sequence[Any]]:
        """The rows of a SELECT, or of a write's RETURNING (none without one)."""
        if conn.dialect.name != "sqlite":
            result = conn.execute(self.statement, params)
            return result.all() if result.returns_rows else []
        compiled = self._compiled(conn)
        rows = _run(conn, compiled.sql, compiled.args(params), many=False).fetchall()
        if not compiled.columns and not compiled.repeated:
            return rows
        processed = [list(row) for row in rows]
        for index, process in compiled.columns:
            for values in processed:
                values[index] = process(values[index])
        for index, process in compiled.repeated:
            seen: dict[Any, Any] = {}
            for values in processed:
                raw = values[index]
                value = seen.get(raw, _UNSEEN)
                if value is _UNSEEN:
                    value = seen[raw] = process(raw)
                values[index] = value
        return processed

    def one_or_none(self, conn: Connection, params: Params) -> Sequence[Any] | None:
        rows = self.all(conn, params)
        if len(rows) > 1:
            raise ValueError("more than one row where at most one was expected")
        return rows[0] if rows else None

    def execute(self, conn: Connection, params: Params) -> int:
        """A write without RETURNING, once; the number of rows it matched."""
        if conn.dialect.name != "sqlite":
            return conn.execute(self.statement, params).rowcount
        compiled = self._compiled(conn)
        return _run(conn, compiled.sql, compiled.args(params), many=False).rowcount

    def execute_many(self, conn: Connection, many: Sequence[Params]) -> None:
        """A write without RETURNING, once for each set of parameters."""
        if conn.dialect.name != "sqlite":
            conn.execute(self.statement, list(many))
            return
        compiled = self._compiled(conn)
        _run(conn, compiled.sql, [compiled.args(params) for params in many], many=True)

    def _compiled(self, conn: Connection) -> _Compiled:
        if self._sqlite is None:
            self._sqlite = self._compile(conn.dialect)
        return self._sqlite

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise ValueError("statements with parameters rendered late cannot be prepared")
        defaults = compiled.params
        binds = tuple(
            (
                name,
                defaults.get(name),
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name in compiled.positiontup or ()
        )
        processors = [
            (i, column.type.dialect_impl(dialect).result_processor(dialect, None), column.key)
            for i, column in enumerate(self._columns)
        ]
        columns = tuple((i, p) for i, p, key in processors if p and key not in self.repeated)
        repeated = tuple((i, p) for i, p, key in processors if p and key in self.repeated)
        return _Compiled(compiled.string, binds, columns, repeated)


def _run(
    conn: Connection, sql: str, args: tuple[Any, ...] | list[tuple[Any, ...]], *, many: bool
) -> Any:
    """Execute on the driver's cursor, telling the engine's cursor listeners as Core would
    (without an execution context, which is what this module saves)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    dispatch = conn.dispatch
    if dispatch.before_cursor_execute:
        dispatch.before_cursor_execute(conn, cursor, sql, args, None, many)
    try:
        if many:
            cursor.executemany(sql, args)
        else:
            cursor.execute(sql, args)
    except sqlite3.Error as exc:
        raise driver_error(sql, args, exc) from exc
    if dispatch.after_cursor_execute:
        dispatch.after_cursor_execute(conn, cursor, sql, args, None, many)
    return cursor
