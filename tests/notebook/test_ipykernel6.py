"""The blocking wait under ipykernel 6 (the project's own tests run ipykernel 7): a throwaway
venv gets ipykernel<7 and this package, and a real kernel of it runs `start --wait`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from tests.notebook.kernel import Kernel, started_kernel, watch_cancel_button

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STATUS = "nb.get_session().status.value"


@pytest.fixture(scope="module")
def kernel6(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    base = tmp_path_factory.mktemp("ipykernel6")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "ipykernel>=6.29,<7", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        lines = install.stderr.strip().splitlines() or ["no output"]
        pytest.skip(f"cannot install ipykernel 6 from the package index here: {lines[-1]}")
    spec = base / "kernels" / "ipykernel6"
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "ipykernel 6", "language": "python"})
    )
    specs = KernelSpecManager(kernel_dirs=[str(base / "kernels")])
    km = KernelManager(kernel_name="ipykernel6", kernel_spec_manager=specs)
    yield from started_kernel(tmp_path_factory, km)


def test_it_really_is_ipykernel_6(kernel6: Kernel) -> None:
    assert kernel6.value("__import__('ipykernel').version_info[0]") == "6"


def test_wait_blocks_and_run_all_loses_no_cell(kernel6: Kernel) -> None:
    first = kernel6.send("%d365sync start --force --wait")
    second = kernel6.send("print('second cell ran')")
    reply = kernel6.collect(first)
    assert reply.status == "ok" and reply.stream("stdout").count(" ✓ ") == 8
    assert kernel6.collect(second).stream("stdout") == "second cell ran\n"
    assert kernel6.value(STATUS) == "completed"


def test_cancel_is_honest_during_a_wait_and_an_interrupt_cancels(kernel6: Kernel) -> None:
    """ipykernel 6 cannot deliver a click to a waiting cell: the button says so."""
    kernel6.run("%config D365Sync.display = 'widget'")
    kernel6.run("nb.get_connection().emulator.configure(latency_ms=40)")
    try:
        msg_id = kernel6.send("%d365sync start --force --wait")
        seen: dict[str, Any] = {}
        observe = watch_cancel_button(seen)

        def blocked(msg: dict[str, Any]) -> bool:
            observe(msg)
            return seen.get("disabled") is True

        kernel6.collect(msg_id, until=blocked)
        assert "interrupt the kernel" in seen.get("tooltip", "")
        kernel6.km.interrupt_kernel()
        reply = kernel6.collect(msg_id)
        assert reply.status == "error" and "was cancelled" in reply.stream("stderr")
        assert kernel6.value(STATUS) == "cancelled"
    finally:
        kernel6.run("nb.get_connection().emulator.configure(latency_ms=10)")
        kernel6.run("%config D365Sync.display = 'auto'")
