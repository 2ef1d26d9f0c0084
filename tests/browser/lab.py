"""A real JupyterLab server on loopback for tests: free port, known token, isolated state.

``run_lab`` starts ``jupyter lab`` (from any environment's ``bin/``); ``serve`` runs any command
that starts a Jupyter server. Both wait until its REST API answers, and always stop it and every
process it started (kernels run in their own sessions, so they are found with psutil and ended
by pid).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "browser"  # screenshots and traces of failed browser tests
FAILED = pytest.StashKey[bool]()  # set on a browser test's item when it failed
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
# JupyterLab asks whether to fetch Jupyter news (a toast, and requests to the internet): off.
PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


@dataclass
class LabServer:
    """A running server: its base URL, token, root directory and log."""

    base_url: str
    token: str
    root_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def url(self, path: str) -> str:
        """``base_url`` + ``path`` with the token as query (a browser's first request)."""
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path.lstrip('/')}{sep}token={self.token}"

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"token {self.token}"},
            timeout=10.0,
            trust_env=False,
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def isolated_env(state_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment whose Jupyter/IPython user state and d365sync cache live in ``state_dir``."""
    env = dict(os.environ if base is None else base)
    for key in (
        "PYTHONPATH",
        "PYTHONHOME",
        "JUPYTER_PATH",
        "JUPYTER_TOKEN",
        "JPY_SESSION_NAME",
        "D365SYNC_DISPLAY",  # the panel test needs the auto (widget) display
    ):
        env.pop(key, None)
    dirs = {
        "JUPYTER_CONFIG_DIR": "jupyter-config",
        "JUPYTER_DATA_DIR": "jupyter-data",
        "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
        "IPYTHONDIR": "ipython",
        "MPLCONFIGDIR": "matplotlib",
        "D365SYNC_CACHE_DIR": "d365sync-cache",
    }
    for key, name in dirs.items():
        path = state_dir / name
        path.mkdir(parents=True, exist_ok=True)
        env[key] = str(path)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _stop(process: subprocess.Popen[bytes], server: LabServer | None) -> None:
    """Shut the server down through its API, then end whatever is left of its process tree."""
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
    except psutil.NoSuchProcess:
        family = []
    if server is not None and process.poll() is None:
        with contextlib.suppress(httpx.HTTPError), server.client() as client:
            client.post("api/shutdown")  # stops kernels too
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
    alive = [p for p in family if p.is_running()]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(alive, timeout=STOP_TIMEOUT)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT)
    if process.poll() is None:
        process.kill()
    process.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def run_lab(
    bin_dir: Path,
    root_dir: Path,
    state_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    timeout: float = START_TIMEOUT,
) -> Iterator[LabServer]:
    """Run ``bin_dir/jupyter lab`` on 127.0.0.1 (a free port) serving ``root_dir``."""
    state_dir.mkdir(parents=True, exist_ok=True)
    run_env = dict(env) if env is not None else isolated_env(state_dir)
    run_env["PATH"] = f"{bin_dir}{os.pathsep}{run_env.get('PATH', '')}"
    labconfig = Path(run_env["JUPYTER_CONFIG_DIR"]) / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
    token = secrets.token_hex(16)
    command = [
        str(bin_dir / "jupyter"),
        "lab",
        "--no-browser",
        "--ServerApp.allow_root=True",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",  # the OS picks a free port; the runtime file tells which
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        *args,
    ]
    with serve(
        command, cwd=root_dir, env=run_env, token=token, root_dir=root_dir,
        state_dir=state_dir, info_file=lambda pid: f"jpserver-{pid}.json", timeout=timeout,
    ) as server:  # fmt: skip
        yield server


@contextlib.contextmanager
def serve(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    token: str,
    root_dir: Path,
    state_dir: Path,
    info_file: Callable[[int], str],
    timeout: float = START_TIMEOUT,
) -> Iterator[LabServer]:
    """Start a command that runs a Jupyter server, wait until its API answers, always stop it.

    ``info_file(pid)`` names the server's ``jpserver-*.json`` in ``$JUPYTER_RUNTIME_DIR``
    (``jupyter lab`` execs, so the pid is the command's own; a glob for commands that fork).
    """
    log_path = state_dir / "jupyter-lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server: LabServer | None = None
    try:
        runtime_dir = Path(env["JUPYTER_RUNTIME_DIR"])
        pattern = info_file(process.pid)
        server = _wait_ready(process, runtime_dir, pattern, token, root_dir, log_path, timeout)
        yield server
    finally:
        _stop(process, server)


def _wait_ready(
    process: subprocess.Popen[bytes],
    runtime_dir: Path,
    pattern: str,
    token: str,
    root_dir: Path,
    log_path: Path,
    timeout: float,
) -> LabServer:
    deadline = time.monotonic() + timeout
    server: LabServer | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"jupyter lab exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        if server is None:
            for path in runtime_dir.glob(pattern):  # written once the server listens
                with contextlib.suppress(OSError, ValueError, KeyError):
                    info = json.loads(path.read_text())
                    base_url = f"http://127.0.0.1:{int(info['port'])}{info['base_url']}"
                    server = LabServer(base_url, token, root_dir, log_path, process)
        if server is not None:
            with contextlib.suppress(httpx.HTTPError), server.client() as client:
                if client.get("api/status").status_code == 200:
                    return server
        time.sleep(0.1)
    raise TimeoutError(
        f"jupyter lab did not answer within {timeout:.0f} s:\n{log_path.read_text()[-3000:]}"
    )
