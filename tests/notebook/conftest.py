"""Fixtures: a real in-process IPython shell with the extension, and a real Jupyter kernel
(driven by tests/notebook/kernel.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from jupyter_client import KernelManager

from tests.notebook.kernel import Kernel, started_kernel
from tests.support import reset_notebook


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """The process's IPython shell with ``%load_ext d365sync_nb`` and no connection yet."""
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "d365sync_nb")
    ip.run_line_magic("config", "D365Sync.display = 'auto'")
    ip.run_line_magic("config", "D365Sync.default_strategy = 'full'")
    reset_notebook()
    yield ip
    reset_notebook()


@pytest.fixture
def connected(shell: InteractiveShell, tmp_path: Path) -> InteractiveShell:
    """The shell connected to a fresh emulator (5 ms latency) and an empty cache."""
    cache = tmp_path / "cache"
    result = shell.run_cell(f"%d365sync connect --demo --latency-ms 5 --cache-dir {cache}")
    assert result.success, result.error_in_exec
    return shell


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """A real ipykernel with the extension loaded and connected to a demo emulator."""
    yield from started_kernel(tmp_path_factory, KernelManager(kernel_name="python3"))
