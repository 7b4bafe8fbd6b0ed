"""The `callcenter` command line: sub-commands, exit codes, and secrets kept out of output."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from callcenter.cli import main

FLOWS = Path(__file__).parents[2] / "ivr" / "flows"


def test_given_a_secret_in_env_when_settings_printed_then_it_is_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLCENTER_AMI_SECRET", "s3cr3t-value")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "[ami]" in out
    assert "s3cr3t-value" not in out
    assert "secret = ***" in out


def test_given_a_bad_variable_when_started_then_exit_2_names_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLCENTER_AGI_PORT", "many")
    assert main(["settings"]) == 2
    assert "agi.port" in capsys.readouterr().err


def test_given_settings_when_asterisk_conf_written_then_check_passes_and_secrets_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLCENTER_ASTERISK_AGENTS", "1001:webrtc:Alice,1002:deskphone:Bob")
    monkeypatch.setenv("CALLCENTER_AMI_SECRET", "ami-secret-123")
    monkeypatch.setenv("CALLCENTER_SIP_PASSWORD_1001", "sip-pass-1001")
    monkeypatch.setenv("CALLCENTER_SIP_PASSWORD_1002", "sip-pass-1002")
    out_dir = tmp_path / "asterisk"
    assert main(["asterisk-conf", "--out", str(out_dir)]) == 0
    assert main(["asterisk-conf", "--check", str(out_dir)]) == 0
    output = capsys.readouterr().out
    assert "0 problem(s)" in output
    assert "ami-secret-123" not in output
    manager = out_dir / "manager.conf"
    assert "ami-secret-123" in manager.read_text()
    assert stat.S_IMODE(manager.stat().st_mode) == 0o640
    assert "agi://127.0.0.1:4573/ivr/" in (out_dir / "extensions-cc-ivr.conf").read_text() or (
        "127.0.0.1:4573" in (out_dir / "extensions.conf").read_text()
    )


def test_given_existing_files_when_asterisk_conf_written_again_then_it_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["asterisk-conf", "--out", str(tmp_path)]) == 0
    assert main(["asterisk-conf", "--out", str(tmp_path)]) == 2
    assert "exist" in capsys.readouterr().err


def test_given_a_config_with_a_mistake_when_checked_then_file_and_line_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["asterisk-conf", "--out", str(tmp_path)]) == 0
    inbound = tmp_path / "extensions-cc-inbound.conf"
    inbound.write_text(inbound.read_text() + "exten => 999,1,Goto(no-such-context,s,1)\n")
    assert main(["asterisk-conf", "--check", str(tmp_path)]) == 1
    assert "extensions-cc-inbound.conf:" in capsys.readouterr().out


def test_given_the_shipped_flows_when_checked_then_no_problems(
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = sorted(str(p) for p in FLOWS.glob("*.yaml"))
    assert files
    assert main(["ivr", "check", *files]) == 0
    assert f"0 problem(s) in {len(files)} file(s)" in capsys.readouterr().out


def test_given_a_broken_flow_when_checked_then_exit_1_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tmp_path / "bad.yaml"
    flow.write_text("name: bad\nstart: a\nsteps:\n  a:\n    type: teleport\n")
    assert main(["ivr", "check", str(flow)]) == 1
    assert f"{flow}:" in capsys.readouterr().out
