"""Text from outside (the service's messages, headers, exception texts) made safe to show or
store: terminal escape sequences removed, control characters replaced, one line, bounded.

Every error of the package passes through :func:`one_line` (see :mod:`.errors`), so a message
the service wrote with ``\\n`` or ANSI/OSC sequences cannot split a CLI line, a stored session
error, a ``diagnose`` report or an MCP answer, nor drive the terminal that shows it.
"""

from __future__ import annotations

import re

SERVICE_TEXT_LIMIT = 300  # characters of a service's message kept in an error
MESSAGE_LIMIT = 2000  # characters of any one-line message

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-character escapes, and the 8-bit
# CSI/OSC introducers with their parameters.
_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -~]?"
    r"|\x9b[0-?]*[ -/]*[@-~]?"
    r"|\x9d[^\x07\x1b\x9c]*[\x07\x9c]?"
)
# C0 and C1 controls, DEL, line/paragraph separators and bidirectional overrides.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def one_line(text: object, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` as one printable line of at most ``limit`` characters (an ellipsis when cut)."""
    value = text if isinstance(text, str) else str(text)
    if value.isprintable() and len(value) <= limit and "  " not in value:
        return value.strip()
    value = _CONTROL.sub(" ", _ESCAPE.sub("", value))
    value = " ".join(value.split())
    if len(value) > limit:
        value = value[: max(0, limit - 1)].rstrip() + "…"
    return value


def service_text(text: object, limit: int = SERVICE_TEXT_LIMIT) -> str:
    """A text the service sent (an error message, a header), safe to show: :func:`one_line`
    with the shorter service bound."""
    return one_line(text, limit)
