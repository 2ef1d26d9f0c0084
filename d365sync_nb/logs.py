"""The package's log: one line per record, never a traceback unless debugging.

:func:`install` puts :class:`OneLineHandler` on the ``d365sync_nb`` logger and stops plain
propagation. The handler passes each record on to the root logger's handlers (so an
application's logging configuration, pytest's ``caplog`` or ``--debug``'s ``basicConfig`` still
see every record), or, when the root has none, writes WARNING and above to stderr itself: the
job Python's last-resort handler did, which printed a full traceback into a terminal or a
notebook cell. Unless the package logs at DEBUG (``--debug``), a record's exception becomes
``(TypeError: ...)`` at the end of its one line.
"""

from __future__ import annotations

import copy
import logging
import sys

from d365sync_nb.errors import clean_message

LOGGER = "d365sync_nb"


class OneLineHandler(logging.Handler):
    """Forwards the package's records without tracebacks (unless debugging); see the module."""

    def emit(self, record: logging.LogRecord) -> None:
        package = logging.getLogger(LOGGER)
        debugging = package.isEnabledFor(logging.DEBUG)
        if not debugging:
            record = one_line_record(record)
        root = logging.getLogger()
        if root.handlers:
            for handler in root.handlers:
                if handler in package.handlers:  # also on ours (pytest does it): had it
                    continue
                if record.levelno >= handler.level:
                    handler.handle(record)
        elif record.levelno >= logging.WARNING or debugging:
            try:
                stream = sys.stderr
                if stream is not None:
                    stream.write(f"d365sync: {record.levelname.lower()}: {record.getMessage()}\n")
            except Exception:  # a closed stderr must not break the caller
                self.handleError(record)


def one_line_record(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` whose message is one clean line and whose exception (if any) is a
    short ``(Type: text)`` suffix instead of a traceback."""
    line = copy.copy(record)
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: show what there is
        message = str(record.msg)
    exc = record.exc_info[1] if record.exc_info else None
    if exc is not None:
        message = f"{message} ({type(exc).__name__}: {clean_message(exc)})"
    line.msg, line.args = clean_message(message), None
    line.exc_info, line.exc_text, line.stack_info = None, None, None
    return line


def install() -> None:
    """Put the one-line handler on the package's logger (once)."""
    package = logging.getLogger(LOGGER)
    if not any(isinstance(h, OneLineHandler) for h in package.handlers):
        package.addHandler(OneLineHandler())
    package.propagate = False
