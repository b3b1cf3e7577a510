"""Hand-written statements for the hottest reads, without Django's query compiler on every call.

Compiling a queryset costs ~0.5 to 1 ms of Python per query on a small machine; executing the same
SQL on a cursor costs a few tens of µs. `Columns` is what a selector needs to write such a
statement and still get model instances: the column list of a model under a table alias, and
the conversion of a result row back into an instance through the same database and field
converters the ORM applies (JSON decoding, aware datetimes on SQLite, ...). The column list
comes from the model, so a column added to a model is selected without touching the statement.
Statements are built once per database alias and cached by the selectors that own them.

`fetchone` runs such a read. When it is the first statement of a request it also stands in for
Django's per-request health check (CONN_HEALTH_CHECKS: a `SELECT 1` round trip before the first
query, as costly as the statement itself here): the statement is the check, and if the persistent
connection turns out dead (database restarted) it is closed and the statement retried once on a
new connection. Same guarantee, no error from a stale connection, one round trip fewer.
"""
from collections.abc import Callable, Sequence
from typing import Any

from django.db import InterfaceError, OperationalError, connections
from django.db.models import Model

Converter = Callable[[Any, Any, Any], Any]


class Columns:
    """The concrete columns of `model` under the SQL alias `alias`, in `_meta.concrete_fields` order."""

    def __init__(self, model: type[Model], alias: str) -> None:
        self.model = model
        self.alias = alias
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self._converters: dict[str, list[tuple[int, list[Converter], Any]]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def table(self, using: str = "default") -> str:
        return connections[using].ops.quote_name(self.model._meta.db_table)

    def column(self, attname: str, using: str = "default") -> str:
        field = next(f for f in self.fields if f.attname == attname)
        return f"{self.alias}.{connections[using].ops.quote_name(field.column)}"

    def select(self, using: str = "default") -> str:
        quote = connections[using].ops.quote_name
        return ", ".join(f"{self.alias}.{quote(f.column)}" for f in self.fields)

    def _converters_for(self, using: str) -> list[tuple[int, list[Converter], Any]]:
        found = self._converters.get(using)
        if found is None:
            connection = connections[using]
            found = []
            for index, field in enumerate(self.fields):
                col = field.get_col(self.alias)
                converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                if converters:
                    found.append((index, converters, col))
            self._converters[using] = found
        return found

    def values(self, row: Sequence[Any], start: int, using: str = "default") -> list[Any]:
        """This model's slice of `row` (from `start`), converted as the ORM converts it."""
        values = list(row[start:start + len(self.fields)])
        connection = connections[using]
        for index, converters, col in self._converters_for(using):
            value = values[index]
            for converter in converters:
                value = converter(value, col, connection)
            values[index] = value
        return values

    def instance(self, row: Sequence[Any], start: int, using: str = "default") -> Model:
        """A model instance (as loaded from the database) from this model's slice of `row`."""
        return self.model.from_db(using, self.attnames, self.values(row, start, using))


def fetchone(sql: str, params: Sequence[Any], *, using: str = "default") -> tuple | None:
    """The first row of a read-only statement (see the module docstring for the health check it replaces)."""
    connection = connections[using]
    # Django would check the connection before this statement; the statement checks it instead.
    checking = (connection.health_check_enabled and not connection.health_check_done
                and connection.connection is not None and not connection.in_atomic_block)
    if checking:
        connection.health_check_done = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    except (OperationalError, InterfaceError):
        if not checking or connection.is_usable():
            raise  # a real error of the statement, not a dead connection
        connection.close()
    with connection.cursor() as cursor:  # a new connection (and Django's checks on it)
        cursor.execute(sql, params)
        return cursor.fetchone()
