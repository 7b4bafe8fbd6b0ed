"""The README's "Connecting a real Asterisk" walk-through, run command by command.

The TOML of step 1 becomes the settings file; every `callcenter ...` line of the section's
shell blocks runs through the real CLI (paths moved into a temporary folder, the prompts
rendered with the real espeak-ng), in order, and must succeed; the files it tells the operator
to install exist. So the page cannot drift from what the commands do.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from callcenter.asterisk_conf_cmd import deployment_from_settings
from callcenter.cli import main
from callcenter.config import load_settings

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("espeak-ng") is None and not os.environ.get("CI"),
        reason="espeak-ng is not installed (apt-get install espeak-ng; .ci/run installs it)",
    ),
]

REPO = Path(__file__).parents[2]
_BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def blocks(text: str, kind: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(text) if lang == kind]


def commands(text: str) -> list[list[str]]:
    """The `callcenter` command lines of the section's shell blocks, comments dropped."""
    found = []
    for body in blocks(text, "sh"):
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "callcenter":
                found.append(words[1:])
    return found


def test_given_the_readme_walk_through_when_each_command_runs_then_each_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    walk = section("Connecting a real Asterisk")
    (toml,) = blocks(walk, "toml")
    config = tmp_path / "callcenter.toml"
    config.write_text(toml)
    settings = load_settings(config, environ={})
    conf = deployment_from_settings(settings)
    monkeypatch.setenv("CALLCENTER_AMI_SECRET", "test-only-ami")  # step 2: from the environment
    for agent in conf.agents:
        monkeypatch.setenv(agent.secret_name, f"test-only-{agent.extension}")
    monkeypatch.setenv(conf.trunk_secret_name, "test-only-trunk")
    etc = tmp_path / "asterisk-etc"
    moved = {
        "/etc/callcenter/callcenter.toml": str(config),
        "asterisk-etc": str(etc),
        "/etc/asterisk": str(etc),  # step 3 copied the files there
        "/srv/callcenter/prompts": str(tmp_path / "elsewhere"),
    }
    ran = []
    for argv in commands(walk):
        argv = [moved.get(word, word) for word in argv]
        if argv[:2] == ["prompts", "build"] and "--out" not in argv:
            argv += ["--out", str(tmp_path / "prompts")]  # the default, moved
        assert main(argv) == 0, (argv, capsys.readouterr())
        ran.append(argv[argv.index("asterisk-conf") + 1] if "asterisk-conf" in argv else argv[1])
    assert ran == ["--out", "--check", "build", "build"]
    out = capsys.readouterr().out
    assert f"0 problem(s) in {etc}" in out
    assert "warning" not in out  # every secret came from the environment
    assert list((tmp_path / "prompts").glob("*.ulaw"))
    assert list((tmp_path / "elsewhere").glob("*.alaw"))


def test_given_the_walk_through_then_the_files_it_installs_are_shipped() -> None:
    walk = section("Connecting a real Asterisk")
    named = set(re.findall(r"asterisk_conf/deploy/[\w.]+", walk))
    assert named == {
        "asterisk_conf/deploy/callcenter.service",
        "asterisk_conf/deploy/callcenter.env.example",
    }
    for path in named:
        assert (REPO / path).is_file(), path
    scale = section("Scaling out")
    for variable in re.findall(r"CALLCENTER_[A-Z_]+", scale):
        assert variable in (REPO / "asterisk_conf/deploy/callcenter.env.example").read_text()
