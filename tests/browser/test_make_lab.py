"""``make lab``, the README's main job: JupyterLab serving ``notebooks/``, opened on the quickstart.

The test runs the Makefile's own recipe (without reinstalling the venv) with a recording
``$BROWSER`` and a Jupyter config that keeps the server on 127.0.0.1 and a free port, then checks
where the browser was sent (through Jupyter's redirect page) and that the server opens it. No
kernel is started: nothing in ``notebooks/`` is changed.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.browser.lab import isolated_env, serve

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = "01-quickstart.ipynb"
STAMP = ".venv/.installed"  # the Makefile's install stamp: not remade here
OPEN_TIMEOUT = 30.0
# As the test needs it: loopback, a free port, and root allowed (CI and these machines run as
# root; see /tmp/core-requests.md).
TEST_SERVER_CONFIG = {
    "ServerApp": {
        "ip": "127.0.0.1",
        "port": 0,
        "port_retries": 0,
        "allow_root": True,
    }
}


def opened_url(url: str) -> str:
    """The URL a browser lands on: Jupyter hands it a local page that redirects there."""
    if not url.startswith("file:"):
        return url
    page = Path(unquote(urlsplit(url).path)).read_text()
    match = re.search(r'<a href="([^"]+)"', page)
    assert match, f"no link in the browser-open page:\n{page}"
    return html.unescape(match.group(1))


def test_make_lab_opens_the_quickstart(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    state = tmp_path / "state"
    env = isolated_env(state)
    token = secrets.token_hex(16)
    env["JUPYTER_TOKEN"] = token
    config = Path(env["JUPYTER_CONFIG_DIR"]) / "jupyter_server_config.json"
    config.write_text(json.dumps(TEST_SERVER_CONFIG))
    opened = tmp_path / "opened-url"
    recorder = tmp_path / "record-url"
    recorder.write_text(
        f'#!/bin/sh\nprintf "%s" "$1" > "{opened}.tmp"\nmv "{opened}.tmp" "{opened}"\n'
    )
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    env["BROWSER"] = str(recorder)

    with (
        serve(
            [make, "--no-print-directory", "-o", STAMP, "lab"],
            cwd=REPO,
            env=env,
            token=token,
            root_dir=REPO / "notebooks",
            state_dir=state,
            info_file=lambda _pid: "jpserver-*.json",  # make forks: any server in this runtime dir
        ) as lab,
        lab.client() as client,
    ):
        deadline = time.monotonic() + OPEN_TIMEOUT
        while not opened.exists():
            assert time.monotonic() < deadline, f"no browser was opened:\n{lab.log_tail()}"
            time.sleep(0.05)
        url = urlsplit(opened_url(opened.read_text()))
        assert url.path == f"/lab/tree/{QUICKSTART}", url
        assert f"token={token}" in url.query, "the opened URL does not log the browser in"

        page = client.get(url.path)
        assert page.status_code == 200, page.status_code
        model = client.get(f"api/contents/{QUICKSTART}", params={"content": 0})
        assert model.status_code == 200, f"the server's root is not notebooks/: {model.text}"
        assert model.json()["type"] == "notebook"
        listing = client.get("api/contents").json()["content"]
        names = {item["name"] for item in listing}
        assert QUICKSTART in names and "sanitize.cfg" in names, names
        assert os.fspath(REPO / "notebooks") in lab.log_path.read_text(), lab.log_tail()
