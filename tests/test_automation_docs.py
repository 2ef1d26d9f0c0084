"""Every template of docs/automation.md parses (YAML with PyYAML, units with configparser), has
a valid schedule, and its `d365sync watch` command runs against the emulator: a sync, then a
notification to a local webhook receiver."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from d365sync_nb.automation import Schedule
from tests.webhooks import Receiver

DOC = Path(__file__).resolve().parent.parent / "docs" / "automation.md"
TEMPLATE = re.compile(r"<!-- template: (?P<name>[\w-]+) -->\n```\w+\n(?P<body>.*?)```", re.S)
BIN = str(Path(sys.executable).parent)


def templates() -> dict[str, str]:
    found = {m["name"]: m["body"] for m in TEMPLATE.finditer(DOC.read_text(encoding="utf-8"))}
    assert set(found) == {"cron", "systemd-service", "systemd-timer", "github-actions",
                          "azure-devops"}  # fmt: skip
    return found


@pytest.fixture
def world(emulator, tmp_path):
    """A profiles file naming the emulator 'prod', a webhook receiver, a scratch directory."""
    with Receiver() as hooks:
        profiles = tmp_path / "profiles.toml"
        profiles.write_text(f'[profiles.prod]\nbase_url = "{emulator.base_url}"\n')
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "D365SYNC_PROFILES": str(profiles),
            "TEAMS_WEBHOOK": hooks.url("teams"),
            "D365_PROD_SECRET": "not-used-by-a-loopback-emulator",
        }
        yield {"hooks": hooks, "env": env, "dir": tmp_path, "profiles": profiles}


def run(command: str, world: dict, **extra: str) -> subprocess.CompletedProcess[str]:
    assert "d365sync watch" in command and "--once" in command
    return subprocess.run(
        ["bash", "-c", command],
        cwd=world["dir"],
        env={**world["env"], **extra},
        capture_output=True,
        text=True,
        timeout=120,
    )


def local(command: str, world: dict) -> str:
    """The template's command with its installation paths pointed at this checkout."""
    return (
        command.replace("/opt/d365sync/bin/d365sync", f"{BIN}/d365sync")
        .replace("/var/cache/d365sync", str(world["dir"] / "cache"))
        .replace("/var/log/d365sync", str(world["dir"]))
        .replace("/etc/d365sync/profiles.toml", str(world["profiles"]))
    )


def assert_synced_and_notified(world: dict, done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    bodies = world["hooks"].bodies("teams")
    assert [b["attachments"][0]["content"]["type"] for b in bodies] == ["AdaptiveCard"]


def test_cron_line(world):
    line = templates()["cron"].strip()
    assert len(line.splitlines()) == 1
    fields = line.split(maxsplit=5)
    Schedule.parse(cron=" ".join(fields[:5]))  # a valid schedule
    profiles = world["profiles"]  # the cron line relies on the profile's notify list
    profiles.write_text(
        profiles.read_text() + f'notify = ["teams:{world["env"]["TEAMS_WEBHOOK"]}"]\n'
    )
    done = run(local(fields[5], world), world)
    assert_synced_and_notified(world, done)
    log = (world["dir"] / "prod.log").read_text()
    assert ": sync started version 1" in log and "check version 1" in log
    assert "notified teams:http://127.0.0.1:" in log and "sig=" not in log


def test_systemd_service_and_timer(world):
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read_string(templates()["systemd-service"])
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read_string(templates()["systemd-timer"])
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["SuccessExitStatus"] == "130"
    assert timer["Timer"]["OnCalendar"] == "*:0/15" and timer["Install"]["WantedBy"]
    environment = dict(
        item.split("=", 1) for item in shlex.split(service["Service"]["Environment"])
    )
    command = local(service["Service"]["ExecStart"].replace("%i", "prod"), world)
    done = run(command + ' --notify "teams:$TEAMS_WEBHOOK"', world,
               D365SYNC_PROFILES=local(environment["D365SYNC_PROFILES"], world))  # fmt: skip
    assert_synced_and_notified(world, done)


def _expand(text: str, matrix: dict[str, str], secrets: dict[str, str]) -> str:
    """GitHub's and Azure's expressions as the runner would expand them."""
    text = re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: matrix[m[1]], text)
    text = re.sub(r"\$\{\{\s*secrets\.(\w+)\s*\}\}", lambda m: secrets[m[1]], text)
    return re.sub(r"\$\((\w+)\)", lambda m: {**matrix, **secrets}[m[1]], text)


def test_github_actions_workflow(world):
    workflow = yaml.safe_load(templates()["github-actions"])
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads on: as True
    for schedule in triggers["schedule"]:
        Schedule.parse(cron=schedule["cron"])
    job = workflow["jobs"]["watch"]
    profiles = job["strategy"]["matrix"]["profile"]
    assert profiles == ["prod", "test"]
    secrets = {"D365_PROD_SECRET": "x", "D365_TEST_SECRET": "y",
               "TEAMS_WEBHOOK": world["env"]["TEAMS_WEBHOOK"]}  # fmt: skip
    env = {k: _expand(str(v), {"profile": "prod"}, secrets) for k, v in job["env"].items()}
    assert set(re.findall(r"secrets\.(\w+)", templates()["github-actions"])) <= set(secrets)
    (world["dir"] / "d365sync").mkdir()
    (world["dir"] / "d365sync" / "profiles.toml").write_text(world["profiles"].read_text())
    step = next(s for s in job["steps"] if "d365sync watch" in s.get("run", ""))
    cache_step = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/cache"))
    assert cache_step["with"]["path"] in step["run"]
    done = run(_expand(step["run"], {"profile": "prod"}, secrets), world, **env)
    assert_synced_and_notified(world, done)
    assert '"event": "check"' in done.stdout


def test_azure_devops_pipeline(world):
    pipeline = yaml.safe_load(templates()["azure-devops"])
    for schedule in pipeline["schedules"]:
        Schedule.parse(cron=schedule["cron"])
    job = pipeline["jobs"][0]
    matrix = job["strategy"]["matrix"]
    assert {name: row["profile"] for name, row in matrix.items()} == {
        "prod": "prod",
        "test": "test",
    }
    step = next(s for s in job["steps"] if "d365sync watch" in s.get("script", ""))
    secrets = {"D365_PROD_SECRET": "x", "D365_TEST_SECRET": "y",
               "TEAMS_WEBHOOK": world["env"]["TEAMS_WEBHOOK"]}  # fmt: skip
    env = {k: _expand(str(v), matrix["prod"], secrets) for k, v in step["env"].items()}
    (world["dir"] / "d365sync").mkdir()
    (world["dir"] / "d365sync" / "profiles.toml").write_text(world["profiles"].read_text())
    done = run(_expand(step["script"], matrix["prod"], secrets), world, **env)
    assert_synced_and_notified(world, done)
