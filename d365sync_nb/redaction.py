"""Keeping secrets out of every message: URL passwords and known secret strings become ``***``.

Surfaces pass whatever they are about to show (a string, or a JSON-ready dict/list) through
:func:`redact` with the secrets of the connections involved; :func:`redact_url` hides the
password of a URL that is echoed in an error. Collecting secrets fails closed: a caller that
cannot learn them (an unreadable profiles file) withholds its answer instead of guessing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter strings would mask ordinary words
SECRET_VARIABLES = ("D365FO_CLIENT_SECRET", "AZURE_CLIENT_SECRET")
# scheme://user:password@ where the password runs to the *last* '@' before the URL ends (a
# space, a quote or a parenthesis): a password may itself hold '@', '/' or ':'. A path with an
# '@' and no parenthesis may be masked too: failing safe.
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/:\s'\"()<>]*:)(?P<password>[^\s'\"()<>]*)@"
)


def redact_url(text: str) -> str:
    """``https://user:pw@host`` -> ``https://user:***@host`` wherever a URL appears in ``text``
    (the one place every message's URL passwords are masked)."""
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)


def environment_secrets() -> set[str]:
    """Secrets the process environment holds for azure-identity and this package."""
    return {os.environ.get(name, "") for name in SECRET_VARIABLES}


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every known secret (and URL password) replaced by ``***``, recursively."""
    known = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
    return _redact(value, known)


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return redact_url(value)
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, secrets) for v in value]
    return value
