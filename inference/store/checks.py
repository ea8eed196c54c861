"""Checks on values before they are written, so SQLite and PostgreSQL accept and refuse the
same things: what PostgreSQL would reject, SQLite would otherwise keep silently."""

from __future__ import annotations

import functools
import math
from typing import Any

from sqlalchemy import String, Table, inspect

from defectlens.errors import InputError
from defectlens.inference.store.tables import Base

INT32_MAX = 2**31 - 1
MAX_IMAGE_PATH = 512
"""The longest image path stored: it is indexed, and PostgreSQL's index entries are bounded."""


def check_instance(instance: str) -> None:
    """A service instance name as the image rows hold it."""
    if not instance or not instance.strip():
        raise InputError("service instance name is empty; give each service on the database one")
    check_values(Base.metadata.tables["images"], {"instance": instance})


def check_image_path(path: str) -> None:
    if len(path) > MAX_IMAGE_PATH:
        raise InputError(
            f"image path {path[:40]}...: {len(path)} characters, at most {MAX_IMAGE_PATH}"
        )


def check_row(row: Base) -> None:
    """`check_values` for an ORM row."""
    table = Base.metadata.tables[row.__tablename__]
    mapper = inspect(row).mapper
    check_values(table, {a.columns[0].name: getattr(row, a.key) for a in mapper.column_attrs})


def check_values(table: Table, values: dict[str, Any]) -> None:
    """Refuse, on every database alike, text over the column's length or with NUL characters,
    integers beyond 32 bits and non-finite numbers (`InputError` naming the column). `values`
    maps column names to the values about to be written."""
    lengths = _text_lengths(table)
    for name, value in values.items():
        where = f"{table.name}.{name}"
        if isinstance(value, str):
            if "\x00" in value:
                raise InputError(f"{where}: text contains a NUL character")
            length = lengths.get(name)
            if length is not None and len(value) > length:
                raise InputError(f"{where}: {len(value)} characters, at most {length} allowed")
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and not -INT32_MAX <= value <= INT32_MAX:
            raise InputError(f"{where}: {value} is out of range")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{where}: {value} is not a finite number")
        elif isinstance(value, dict) and not _json_finite(value):
            raise InputError(f"{where}: holds a number that is not finite")


@functools.cache
def _text_lengths(table: Table) -> dict[str, int | None]:
    """Column name → the longest text it holds (None: unlimited), for `check_values`."""
    return {
        column.name: column.type.length if isinstance(column.type, String) else None
        for column in table.columns
    }


def _json_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_json_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_json_finite(item) for item in value)
    return True
