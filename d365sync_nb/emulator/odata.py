"""OData protocol pieces of the emulator, free of any request object: ``$filter`` compilation,
key segments, integer query options, collection bodies with ``$top/$skip/$select/$count`` and
server-driven paging, ``@odata.context`` URLs, and :class:`ODataError`, which they raise for
anything the service answers with an OData error body."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson

__all__ = ["ODataError", "context_url", "int_param", "parse_filter", "parse_key", "query_body"]

_KEY_PAIR_RE = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*'((?:[^']|'')*)'\s*(?:,|$)", re.S)
_KEY_LITERAL_RE = re.compile(r"\s*'((?:[^']|'')*)'\s*$", re.S)
_LITERAL = r"'(?:[^']|'')*'|true|false|null|-?\d+(?:\.\d+)?"
_CLAUSE_RE = re.compile(
    rf"\s*(?:(?P<field>[A-Za-z_]\w*)\s+(?P<op>eq|ne)\s+(?P<value>{_LITERAL})"
    r"|(?P<fn>startswith|endswith|contains)\(\s*(?P<ffield>[A-Za-z_]\w*)\s*,\s*"
    r"(?P<fvalue>'(?:[^']|'')*')\s*\))\s*",
    re.S,
)
_AND_RE = re.compile(r"and\s+")


def _equals(item: dict[str, Any], *, field: str, value: Any, negate: bool) -> bool:
    """``field eq value`` (``ne`` when ``negate``) on one item."""
    return (item.get(field) == value) != negate


class ODataError(Exception):
    """An error the service answers with an OData error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Iterable[tuple[bytes, bytes]] = (),
        inner: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)
        self.inner = inner  # the service's ``innererror.message``: the detail behind a message

    def body(self) -> dict[str, Any]:
        """The OData error body, with ``innererror`` as the service shapes it when there is one."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner is not None:
            error["innererror"] = {
                "message": self.inner,
                "type": "Microsoft.OData.ODataException",
                "stacktrace": "",
            }
        return {"error": error}


def context_url(base: str, fragment: str) -> str:
    """The ``@odata.context`` URL of a metadata response."""
    return f"{base}/Metadata/$metadata#{fragment}"


def _odata_literal(raw: str) -> Any:
    if raw.startswith("'"):
        return raw[1:-1].replace("''", "'")
    if raw in ("true", "false"):
        return raw == "true"
    if raw == "null":
        return None
    return float(raw) if "." in raw else int(raw)


def parse_filter(text: str, fields: frozenset[str]) -> Callable[[dict[str, Any]], bool]:
    """Compile a ``$filter`` expression (eq/ne, startswith/endswith/contains, joined by and)."""
    preds: list[Callable[[dict[str, Any]], bool]] = []
    pos, end = 0, len(text)
    while True:
        m = _CLAUSE_RE.match(text, pos)
        if not m:
            raise ODataError(
                400,
                "BadRequest",
                f"The query specified in the URI is not valid: unsupported $filter "
                f"near position {pos}: {text[pos : pos + 40]!r}",
            )
        name = m["field"] or m["ffield"]
        if name not in fields:
            raise ODataError(
                400, "BadRequest", f"Could not find a property named '{name}' in $filter."
            )
        if m["op"]:
            value, neg = _odata_literal(m["value"]), m["op"] == "ne"
            preds.append(functools.partial(_equals, field=name, value=value, negate=neg))
        else:
            value, fn = _odata_literal(m["fvalue"]), m["fn"]
            method = {"startswith": "startswith", "endswith": "endswith"}.get(fn)

            def pred(
                item: dict[str, Any], n: str = name, v: str = value, meth: str | None = method
            ) -> bool:
                got = item.get(n)
                if not isinstance(got, str):
                    return False
                return getattr(got, meth)(v) if meth else v in got

            preds.append(pred)
        pos = m.end()
        if pos >= end:
            break
        m_and = _AND_RE.match(text, pos)
        if not m_and:
            raise ODataError(
                400,
                "BadRequest",
                f"The query specified in the URI is not valid: unsupported $filter "
                f"near position {pos}: {text[pos : pos + 40]!r}",
            )
        pos = m_and.end()
    return lambda item: all(p(item) for p in preds)


def parse_key(text: str) -> dict[str, str] | str:
    """Parse an OData key ``('x')`` or ``(A='x',B='y')``; doubled quotes are unescaped."""
    inner = text[1:-1]
    m = _KEY_LITERAL_RE.match(inner)
    if m:
        return m[1].replace("''", "'")
    pairs: dict[str, str] = {}
    pos = 0
    while pos < len(inner):
        m = _KEY_PAIR_RE.match(inner, pos)
        if not m or m.end() == pos:
            raise ODataError(400, "BadRequest", f"Bad key segment: {text!r}")
        pairs[m[1]] = m[2].replace("''", "'")
        pos = m.end()
    if not pairs:
        raise ODataError(400, "BadRequest", f"Bad key segment: {text!r}")
    return pairs


def int_param(params: dict[str, str], name: str) -> int | None:
    """A non-negative integer query option (``$top``, ``$skip``, ...), None when absent."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ODataError(400, "BadRequest", f"Invalid value for {name}: {raw!r}")
    return value


def query_body(
    entity_set: str,
    items: list[dict[str, Any]],
    fields: frozenset[str],
    query: str,
    page_size: int | None,
    base: str,
    path: str,
) -> bytes:
    """JSON body for ``GET {base}{path}?{query}`` on the collection ``entity_set`` of ``items``
    (whose properties are ``fields``): ``$filter``, ``$skip``, ``$top``, ``$select``, ``$count``,
    and with ``page_size`` a page starting at ``$skiptoken`` plus ``@odata.nextLink``."""
    pairs = parse_qsl(query, keep_blank_values=True)
    params = dict(pairs)
    flt = params.get("$filter")
    if flt:
        pred = parse_filter(flt, fields)
        items = [item for item in items if pred(item)]
    skip = int_param(params, "$skip")
    top = int_param(params, "$top")
    if skip:
        items = items[skip:]
    if top is not None:
        items = items[:top]
    total = len(items)
    selected: list[str] | None = None
    if params.get("$select"):
        selected = [f.strip() for f in params["$select"].split(",") if f.strip()]
        bad = [f for f in selected if f not in fields]
        if bad:
            raise ODataError(
                400,
                "BadRequest",
                f"Could not find a property named '{bad[0]}' on type "
                f"'Microsoft.Dynamics.Metadata.{entity_set[:-1]}'.",
            )
    next_link = None
    if page_size is not None:
        start = int_param(params, "$skiptoken") or 0
        items = items[start : start + page_size]
        if start + page_size < total:
            keep = [(k, v) for k, v in pairs if k != "$skiptoken"]
            keep.append(("$skiptoken", str(start + page_size)))
            next_link = f"{base}{path}?{urlencode(keep, quote_via=quote, safe='$,()')}"
    if selected is not None:
        items = [{f: item[f] for f in selected} for item in items]
        fragment = f"{entity_set}({','.join(selected)})"
    else:
        fragment = entity_set
    out: dict[str, Any] = {"@odata.context": context_url(base, fragment)}
    if params.get("$count") == "true":
        out["@odata.count"] = total
    out["value"] = items
    if next_link:
        out["@odata.nextLink"] = next_link
    return orjson.dumps(out)
