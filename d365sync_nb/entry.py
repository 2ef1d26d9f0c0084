"""The ``d365sync`` command's entry point: an interrupt while the command is still starting
(importing its modules) is one line and exit code 130, like one during a command."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from d365sync_nb.cli import main as run
    except KeyboardInterrupt:
        print("d365sync: interrupted", file=sys.stderr)
        return 130
    return run()
