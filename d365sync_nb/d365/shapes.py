"""Items of the service's answers validated into models, or refused in one line.

A payload the service should never send (a boolean ``"maybe"``, a ``null`` name, a string where
an object belongs) is a :class:`~d365sync_nb.errors.D365ResponseError` naming the endpoint, the
item and the field, e.g. ``DataEntities item 17 (Name 'X'): IsReadOnly must be a boolean, got
'maybe'``; never pydantic's multi-line text or an ``AttributeError`` from deeper in.

What is tolerated and what is refused (docs/ARCHITECTURE.md, "Service answers"): unknown fields
are ignored, optional fields may be missing or ``null``; a field of the wrong type, or a ``null``
where the service always sends a value (names, flags), is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import ValidationError

from d365sync_nb.errors import D365ResponseError
from d365sync_nb.text import service_text

T = TypeVar("T")

_EXPECTED = {
    "bool": "a boolean",
    "string": "a string",
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "list": "a list",
    "dict": "an object",
    "model": "an object",
}


def parse_items(
    endpoint: str, items: Iterable[Any], parse: Callable[[dict[str, Any]], T]
) -> list[T]:
    """``parse`` each item of ``endpoint``'s answer; the first bad item is a one-line error."""
    out: list[T] = []
    for index, item in enumerate(items):
        out.append(parse_item(endpoint, index, item, parse))
    return out


def parse_item(endpoint: str, index: int, item: Any, parse: Callable[[dict[str, Any]], T]) -> T:
    """One item, or a :class:`D365ResponseError` naming endpoint, item and field."""
    where = f"{endpoint} item {index}"
    if not isinstance(item, dict):
        raise D365ResponseError(
            f"{where}: must be an object, got {describe(item)}", transient=False
        )
    name = item.get("Name")
    if isinstance(name, str) and name:
        where += f" (Name {service_text(name, 80)!r})"
    try:
        return parse(item)
    except ValidationError as exc:
        raise D365ResponseError(f"{where}: {validation_text(exc)}", transient=False) from None
    except (TypeError, AttributeError, ValueError) as exc:  # a nested part of the wrong kind
        raise D365ResponseError(
            f"{where}: unexpected shape ({type(exc).__name__}: {service_text(exc, 120)})",
            transient=False,
        ) from None


def validation_text(exc: ValidationError) -> str:
    """The first problem of a pydantic error as ``Field must be X, got Y`` (one line)."""
    errors = exc.errors(include_url=False)
    if not errors:
        return "invalid"
    first = errors[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "the item"
    kind = str(first.get("type", ""))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    if kind == "missing":
        return f"{field} is missing{more}"
    expected = next((text for key, text in _EXPECTED.items() if kind.startswith(key)), None)
    got = describe(first.get("input"))
    if expected:
        return f"{field} must be {expected}, got {got}{more}"
    return f"{field}: {service_text(first.get('msg', 'invalid'), 120)}, got {got}{more}"


def describe(value: Any) -> str:
    """A short, safe description of a JSON value: short scalars as they are, else the kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)[:40]
    if isinstance(value, str):
        return repr(service_text(value, 40))
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
