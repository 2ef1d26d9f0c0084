"""Binder: an environment built from ``binder/`` alone runs every notebook and opens the lab.

The fixture does what repo2docker does, in tmp: a fresh venv, ``pip install -r
binder/requirements.txt``, then ``binder/postBuild`` run from a copy of the repo with that venv
first on PATH. Needs PyPI (pip's cache keeps it to about a minute).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from tests.browser.lab import isolated_env, run_lab

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
QUICKSTART = "notebooks/01-quickstart.ipynb"
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
# What a clone would not have: local state, build output, caches.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "*.egg-info",
    "build",
    "dist",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
    "artifacts",
    "*.sqlite3*",
)


@dataclass
class BinderEnv:
    """The repo copy, the venv built from binder/, and the environment to run things in."""

    repo: Path
    venv: Path
    env: dict[str, str]
    state: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def run(
        self, *args: str | Path, cwd: Path | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return run(args, cwd=cwd or self.repo, env=self.env, timeout=timeout)


def run(
    args: tuple[str | Path, ...] | list[str | Path],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with the tail of its output when it exits non-zero."""
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-4000:]
        pytest.fail(f"{' '.join(map(str, args))} exited with {proc.returncode}:\n{output}")
    return proc


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory: pytest.TempPathFactory) -> BinderEnv:
    root = tmp_path_factory.mktemp("binder")
    repo = root / "repo"
    shutil.copytree(REPO, repo, ignore=NOT_IN_A_CLONE, symlinks=True)
    venv = root / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=root, env=dict(os.environ), timeout=120)
    state = root / "state"
    env = isolated_env(state)
    env.pop("PYTHONNOUSERSITE", None)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    binder = BinderEnv(repo=repo, venv=venv, env=env, state=state)
    binder.run("python", "-m", "pip", "install", "--progress-bar", "off", "-r",
               "binder/requirements.txt")  # fmt: skip
    binder.run("binder/postBuild")  # executable, as repo2docker runs it
    return binder


def test_binder_files_are_complete() -> None:
    """requirements.txt and an executable postBuild; runtime.txt's Python fits the package."""
    assert (BINDER / "requirements.txt").is_file()
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    assert post_build.read_text().startswith("#!"), "binder/postBuild needs a shebang"
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", runtime)
    assert match, f"binder/runtime.txt should read python-X.Y, not {runtime!r}"
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(match.group(1)), (runtime, requires)


def test_notebooks_exist() -> None:
    """The quickstart Binder opens is committed (and so are the other notebooks run below)."""
    names = [nb.name for nb in NOTEBOOKS]
    assert (REPO / QUICKSTART).is_file(), names


def test_package_installed_from_the_repo(binder_env: BinderEnv) -> None:
    """postBuild installed the package (a regular install, not the repo's source) with the
    notebook surface, ipywidgets 8, the MCP SDK and the ``d365sync`` command."""
    code = (
        "import json, d365sync_nb, d365sync_nb.notebook.magics, ipywidgets, mcp, pandas; "
        "print(json.dumps({'file': d365sync_nb.__file__, 'widgets': ipywidgets.__version__}))"
    )
    out = binder_env.run("python", "-c", code, cwd=binder_env.state).stdout
    found = json.loads(out.strip().splitlines()[-1])
    assert Path(found["file"]).is_relative_to(binder_env.venv / "lib"), found
    assert int(found["widgets"].split(".")[0]) >= 8, found
    usage = binder_env.run("d365sync", "--help", cwd=binder_env.state).stdout
    assert "demo" in usage and "mcp" in usage, usage


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_in_the_binder_env(binder_env: BinderEnv, notebook: Path) -> None:
    """nbconvert executes the notebook top to bottom in the binder venv, without errors."""
    out_dir = binder_env.state / "executed"
    binder_env.run(
        "jupyter", "nbconvert", "--to", "notebook", "--execute",
        "--ExecutePreprocessor.timeout=300", "--ExecutePreprocessor.kernel_name=python3",
        "--output-dir", out_dir, notebook.name,
        cwd=binder_env.repo / "notebooks",
    )  # fmt: skip
    executed = json.loads((out_dir / notebook.name).read_text())
    code_cells = [c for c in executed["cells"] if c["cell_type"] == "code"]
    assert code_cells, f"{notebook.name} has no code cells"
    not_run = [i for i, c in enumerate(code_cells) if c["source"] and not c["execution_count"]]
    assert not not_run, f"code cells {not_run} did not run"

    def failed(cell: dict[str, Any]) -> list[str]:
        """Its errors: tracebacks, and the one red line of a magic's UsageError."""
        return [
            f"{o.get('ename')}: {o.get('evalue')}"
            if o["output_type"] == "error"
            else "".join(o["text"]).strip()
            for o in cell["outputs"]
            if o["output_type"] == "error"
            or (o.get("name") == "stderr" and "".join(o["text"]).startswith("UsageError"))
        ]

    expected = [c for c in code_cells if "raises-exception" in c["metadata"].get("tags", [])]
    errors = [e for c in code_cells if c not in expected for e in failed(c)]
    assert not errors, errors
    assert all(failed(c) for c in expected), "a cell tagged raises-exception did not fail"
    assert any(c["outputs"] for c in code_cells), f"{notebook.name} produced no output at all"


def test_lab_opens_the_quickstart_with_widgets(binder_env: BinderEnv) -> None:
    """The binder venv's JupyterLab (root: the repo, as on Binder) lands on the quickstart,
    which it can open, and its page loads the prebuilt ipywidgets extension."""
    with (
        run_lab(
            binder_env.bin, binder_env.repo, binder_env.state / "lab", env=binder_env.env
        ) as lab,
        lab.client() as client,
    ):
        landing = client.get("", follow_redirects=True)
        assert landing.status_code == 200, landing.status_code
        assert landing.url.path == f"/lab/tree/{QUICKSTART}", str(landing.url)
        assert WIDGETS_EXTENSION in landing.text, "the lab page does not load ipywidgets"
        model = client.get(f"api/contents/{QUICKSTART}", params={"content": 0})
        assert model.status_code == 200, model.text
        assert model.json()["type"] == "notebook"
