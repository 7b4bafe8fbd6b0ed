"""`callcenter asterisk-conf` with the IVR flows: their queues, their names, their problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from asterisk_conf.confparse import parse
from callcenter.asterisk_conf_cmd import flow_queues
from callcenter.cli import main
from ivr.service import FLOWS_DIR, load_flows

FLOW = """\
name: desk
start: queue
language: en
steps:
  queue:
    type: queue
    queue: front-desk
"""


def test_given_the_shipped_flows_when_written_then_every_flow_queue_is_an_asterisk_queue(
    tmp_path: Path,
) -> None:
    assert main(["asterisk-conf", "--out", str(tmp_path)]) == 0
    queues = parse("queues.conf", (tmp_path / "queues.conf").read_text())
    flows, problems = load_flows(FLOWS_DIR)
    assert not problems
    assert set(flow_queues(flows)) == {"operator", "sales", "support"}
    assert {s.name for s in queues.sections} == {"general", *flow_queues(flows), "cc-emergency"}


def test_given_a_flows_folder_when_written_then_its_queues_and_flows_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "desk.yaml").write_text(FLOW)
    monkeypatch.setenv("CALLCENTER_ASTERISK_INBOUND", "+15550001000=desk")
    monkeypatch.setenv("CALLCENTER_AMI_SECRET", "test-only-not-a-secret")
    out_dir = tmp_path / "etc"
    assert main(["asterisk-conf", "--out", str(out_dir), "--flows", str(flows)]) == 0
    assert "[front-desk]" in (out_dir / "queues.conf").read_text()
    assert main(["asterisk-conf", "--check", str(out_dir), "--flows", str(flows)]) == 0
    capsys.readouterr()
    monkeypatch.setenv("CALLCENTER_ASTERISK_INBOUND", "_X.=main")
    assert main(["asterisk-conf", "--check", str(out_dir)]) == 1  # the shipped flows and main
    out = capsys.readouterr().out.splitlines()
    assert "queues.conf:0: no queue [sales] (an IVR flow's queue step or the fallback)" in out
    assert "extensions-cc-inbound.conf:0: [cc-inbound] has no extension _X. (for flow main)" in out


def test_given_an_inbound_number_for_a_flow_that_does_not_exist_then_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLCENTER_ASTERISK_INBOUND", "_X.=mian")
    assert main(["asterisk-conf", "--out", str(tmp_path / "etc")]) == 2
    err = capsys.readouterr().err
    assert "asterisk.inbound: _X.=mian: no IVR flow named 'mian'" in err
    assert "main" in err.partition("the flows are:")[2]
    assert not (tmp_path / "etc").exists()


def test_given_a_broken_flow_when_written_then_refused_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "desk.yaml").write_text(FLOW.replace("type: queue", "type: queueue"))
    assert main(["asterisk-conf", "--out", str(tmp_path / "etc"), "--flows", str(flows)]) == 2
    assert f"{flows / 'desk.yaml'}:" in capsys.readouterr().err
    assert not (tmp_path / "etc").exists()


def test_given_a_written_config_with_a_mistake_when_checked_then_file_and_line_are_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["asterisk-conf", "--out", str(tmp_path)]) == 0
    path = tmp_path / "extensions-cc-queue.conf"
    lines = path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if "Goto(cc-safe-route,s,1)" in line)
    lines[number - 1] = lines[number - 1].replace("cc-safe-route", "cc-safe-rout")
    path.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["asterisk-conf", "--check", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"extensions-cc-queue.conf:{number}: Goto: context cc-safe-rout does not exist" in out
    assert out[-1] == f"{len(out) - 1} problem(s) in {tmp_path}"


ACD_EXAMPLE = Path(__file__).parents[2] / "acd" / "examples" / "queues.yaml"


def test_given_an_acd_dialling_phones_this_config_lacks_then_write_warns_and_check_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLCENTER_ACD_CONFIG_FILE", str(ACD_EXAMPLE))  # PJSIP/agent-1001, ...
    monkeypatch.setenv("CALLCENTER_ASTERISK_AGENTS", "1001,1002,1003")
    monkeypatch.setenv("CALLCENTER_AMI_SECRET", "test-only-not-a-secret")
    for extension in ("1001", "1002", "1003"):
        monkeypatch.setenv(f"CALLCENTER_SIP_PASSWORD_{extension}", f"test-only-{extension}")
    assert main(["asterisk-conf", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "warning: the ACD dials PJSIP/agent-1001, which is no agent phone here" in out
    assert main(["asterisk-conf", "--check", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:-1] == [
        f"pjsip.conf:0: no endpoint [agent-{n}]: the ACD (acd.config_file) dials "
        f"PJSIP/agent-{n}; add the phone to asterisk.agents or change the agent's endpoint"
        for n in ("1001", "1002", "1003")
    ]


def test_given_an_acd_dialling_the_generated_phones_then_write_and_check_are_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    acd = tmp_path / "acd.yaml"
    acd.write_text(ACD_EXAMPLE.read_text().replace("PJSIP/agent-", "PJSIP/"))
    monkeypatch.setenv("CALLCENTER_ACD_CONFIG_FILE", str(acd))
    monkeypatch.setenv("CALLCENTER_ASTERISK_AGENTS", "1001,1002,1003")
    monkeypatch.setenv("CALLCENTER_AMI_SECRET", "test-only-not-a-secret")
    for extension in ("1001", "1002", "1003"):
        monkeypatch.setenv(f"CALLCENTER_SIP_PASSWORD_{extension}", f"test-only-{extension}")
    out_dir = tmp_path / "etc"
    assert main(["asterisk-conf", "--out", str(out_dir)]) == 0
    assert "warning" not in capsys.readouterr().out
    assert main(["asterisk-conf", "--check", str(out_dir)]) == 0


def test_given_a_broken_acd_file_when_written_then_refused_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLCENTER_ACD_CONFIG_FILE", str(tmp_path / "missing.yaml"))
    assert main(["asterisk-conf", "--out", str(tmp_path / "etc")]) == 2
    assert "acd.config_file:" in capsys.readouterr().err
    assert not (tmp_path / "etc").exists()
