"""The shipped systemd unit and environment file: real console script, real settings, valid unit."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from callcenter.asterisk_conf_cmd import deployment_from_settings
from callcenter.cli import _parser
from callcenter.config import load_settings

REPO = Path(__file__).parents[2]
DEPLOY = REPO / "asterisk_conf" / "deploy"
UNIT = DEPLOY / "callcenter.service"
ENV_EXAMPLE = DEPLOY / "callcenter.env.example"
ENV_FILE = "/etc/callcenter/callcenter.env"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def example_env() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, line
            env[key.strip()] = value.strip()
    return env


def test_given_the_unit_then_it_runs_the_console_script_pyproject_installs() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    command, *args = unit()["Service"]["ExecStart"].split()
    assert Path(command).name in scripts
    assert scripts[Path(command).name] == "callcenter.cli:main"
    assert _parser().parse_args(args).command == "run"


def test_given_the_unit_then_settings_come_from_the_env_file_it_documents() -> None:
    service = unit()["Service"]
    assert service["EnvironmentFile"] == ENV_FILE
    assert ENV_FILE in ENV_EXAMPLE.read_text().splitlines()[0]
    assert service["KillSignal"] == "SIGTERM"  # callcenter/process.py stops cleanly on it
    assert service["User"] == "callcenter"
    # the IVR's prompt cache, where `callcenter prompts build` installs by default
    assert "/var/cache/callcenter" in service["ReadWritePaths"].split()


def test_given_the_example_env_file_then_every_variable_is_a_setting_and_loads() -> None:
    env = example_env()
    assert all(name.startswith("CALLCENTER_") for name in env)
    settings = load_settings(environ=env)  # an unknown key or bad value raises, naming it
    assert settings.node.id == "node-a"
    assert settings.ami.secret  # a secret comes from the environment, never from a file in git
    assert settings.redis.url.value.startswith("redis://")
    assert settings.database.url.value.startswith("postgresql+asyncpg://")
    conf = deployment_from_settings(settings)
    assert conf.agi_nodes == ("10.0.0.11:4573", "10.0.0.12:4573")
    assert conf.permits == ("10.0.0.11/255.255.255.255", "10.0.0.12/255.255.255.255")


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze (package systemd) is missing"
)
def test_given_the_unit_when_systemd_verifies_it_then_no_problem_is_reported(
    tmp_path: Path,
) -> None:
    installed = Path(sys.executable).parent / "callcenter"
    assert installed.is_file(), "the console script of this environment"
    text = UNIT.read_text().replace("/opt/callcenter/.venv/bin/callcenter", str(installed))
    copy = tmp_path / "callcenter.service"
    copy.write_text(text)
    found = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (found.returncode, found.stderr) == (0, "")
