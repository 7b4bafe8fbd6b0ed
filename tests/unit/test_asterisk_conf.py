"""`callcenter asterisk-conf`: generate(), write() and check() (issue 6)."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from asterisk_conf import (
    AgentEndpoint,
    DeploymentConf,
    EndpointKind,
    InvalidDeployment,
    OutputExists,
    Problem,
    check,
    generate,
    known,
    missing_secrets,
    placeholder,
    secret_names,
    write,
)
from asterisk_conf.confparse import parse, pyst2_categories
from asterisk_conf.dialplan import build, split_app

LAB_ETC = Path(__file__).parents[1] / "fixtures" / "asterisk-traces" / "asterisk-etc"
REPO = Path(__file__).parents[2]

CONF = DeploymentConf(
    controllers=(("10.0.0.11", 4573, 4574), ("10.0.0.12", 4573, 4574)),
    inbound=(("+3225550100", "main"), ("_0800XXXXXX", "support")),
    agents=(
        AgentEndpoint("1001", EndpointKind.WEBRTC, "Alice"),
        AgentEndpoint("1002", EndpointKind.DESKPHONE, "Bob"),
        AgentEndpoint("1900", EndpointKind.WEBRTC, "Sue", supervisor=True),
    ),
    trunk_username="acme",
    queues=("sales", "support"),
)
# Test-only values, made up here; never real credentials.
SECRETS = {name: f"test-{i}-{name.lower()[-6:]}" for i, name in enumerate(secret_names(CONF))}


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    out = tmp_path / "etc"
    write(out, generate(CONF, SECRETS))
    return out


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def _replace(path: Path, old: str, new: str) -> int:
    text = path.read_text()
    assert text.count(old) >= 1, old
    path.write_text(text.replace(old, new, 1))
    return _line_of(path, new.splitlines()[0] if new else old)


# -- generate -------------------------------------------------------------------------------


def test_given_all_secrets_when_generated_then_check_finds_no_problem(generated: Path) -> None:
    assert check(generated, CONF) == []


def test_given_generated_files_then_each_parses_with_pyst2(generated: Path) -> None:
    for path in sorted(generated.glob("*.conf")):
        # pyst2 does not know `#include` lines: pyst2_categories blanks them, nothing else
        assert pyst2_categories(path.name, path.read_text()), path.name
    plain = [p for p in generated.glob("*.conf") if "#include" not in p.read_text()]
    assert len(plain) == len(list(generated.glob("*.conf"))) - 1  # only extensions.conf has them


def test_when_generated_then_the_files_are_the_ones_the_issue_lists() -> None:
    files = generate(CONF, SECRETS)
    assert {
        "manager.conf",
        "extensions.conf",
        "pjsip.conf",
        "http.conf",
        "musiconhold.conf",
        "modules.conf",
        "queues.conf",
        "extensions-cc-ivr.conf",
        "extensions-cc-inbound.conf",
        "extensions-cc-queue.conf",
        "extensions-cc-agents.conf",
        "extensions-cc-supervisor.conf",
        "extensions-cc-callback.conf",
        "extensions-cc-speech.conf",
    } == set(files)
    assert generate(CONF, SECRETS) == files  # pure: same input, same output


def test_when_generated_then_every_application_and_function_is_a_checked_asterisk_name() -> None:
    files = generate(CONF, SECRETS)
    parsed = [parse(name, text) for name, text in files.items() if name.startswith("extensions")]
    plan = build(parsed)
    used = {step.app for step in plan.steps}
    for step in plan.steps:
        if step.app == "TryExec":
            used.add(split_app(step.args)[0])
    assert used <= set(known.APPLICATIONS)
    text = "".join(files.values())
    functions = set(re.findall(r"\$\{([A-Z_]+)\(", text)) | set(
        re.findall(r"Set\(([A-Z]+)\(", text)
    )
    assert functions <= set(known.FUNCTIONS)


def test_when_generated_then_modules_and_options_are_checked_names() -> None:
    files = generate(CONF, SECRETS)
    modules = parse("modules.conf", files["modules.conf"])
    for entry in modules.sections[0].entries:
        if entry.key != "autoload":
            assert entry.value in known.MODULES
    queues = parse("queues.conf", files["queues.conf"])
    for section in queues.sections[1:]:
        assert {e.key for e in section.entries} <= set(known.QUEUE_OPTIONS_USED)


def test_when_generated_then_manager_user_has_only_the_permissions_we_use() -> None:
    manager = generate(CONF, SECRETS)["manager.conf"]
    assert "read = system,call,agent,user,dtmf,dialplan\n" in manager
    assert "write = call,agent,user,originate,reporting\n" in manager
    assert "bindaddr = 127.0.0.1\n" in manager
    assert "permit = 10.0.0.11/255.255.255.255\npermit = 10.0.0.12/255.255.255.255\n" in manager
    for line in manager.split("[callcenter]")[1].splitlines():
        if line.startswith(("read", "write")):
            assert "all" not in line.partition("=")[2].strip().split(",")


def test_when_generated_then_webrtc_agents_use_wss_and_dtls_srtp() -> None:
    pjsip = generate(CONF, SECRETS)["pjsip.conf"]
    alice = pjsip.split("[1001]")[1]
    for line in ("transport = transport-wss", "webrtc = yes", "media_encryption = dtls"):
        assert line in alice
    bob = pjsip.split("[1002]")[1]
    assert "transport = transport-udp" in bob
    assert "webrtc" not in bob
    assert "context = cc-from-supervisors" in pjsip.split("[1900]")[1]
    http = generate(CONF, SECRETS)["http.conf"]
    assert "tlsenable = yes\ntlsbindaddr = 0.0.0.0:8089\n" in http


def test_when_generated_then_ivr_failover_tries_every_controller_then_the_safe_route() -> None:
    files = generate(CONF, SECRETS)
    assert "CC_AGI_NODES = 10.0.0.11:4573&10.0.0.12:4573\n" in files["extensions.conf"]
    ivr = files["extensions-cc-ivr.conf"]
    assert "AGI(agi://${CUT(CC_AGI_NODES,&,${i})}/ivr/${ARG1})" in ivr
    assert 'GotoIf($["${AGISTATUS}" = "HANGUP"]?hangup)' in ivr
    assert 'GotoIf($["${CC_IVR_DONE}" != ""]?finished)' in ivr
    assert "Queue(cc-emergency,t,,,300)" in ivr
    inbound = files["extensions-cc-inbound.conf"]
    assert "exten => +3225550100,1," in inbound
    assert 'GotoIf($["${GOSUB_RETVAL}" = "failed"]?cc-safe-route,s,1)' in inbound


def test_when_generated_then_a_flow_queue_step_leads_to_its_asterisk_queue_then_safe_route() -> (
    None
):
    files = generate(CONF, SECRETS)
    inbound = files["extensions-cc-inbound.conf"].splitlines()
    gosub = inbound.index(" same => n,Gosub(cc-ivr,s,1(main))")
    assert inbound[gosub - 1] == " same => n,Answer()"  # prompts and keys need an answered call
    failed = inbound.index(' same => n,GotoIf($["${GOSUB_RETVAL}" = "failed"]?cc-safe-route,s,1)')
    assert inbound[failed + 1] == ' same => n,GotoIf($["${CC_QUEUE}" != ""]?cc-queue,s,1)'
    queue = files["extensions-cc-queue.conf"]
    assert " same => n,Set(QUEUE_PRIO=${CC_PRIORITY})\n" in queue
    assert " same => n,Queue(${CC_QUEUE},t,,,600)\n" in queue
    assert queue.rstrip().endswith("Goto(cc-safe-route,s,1)")
    # a node that set CC_QUEUE and then died must not queue the call for the next one
    ivr = files["extensions-cc-ivr.conf"]
    assert ivr.index("Set(CC_QUEUE=)") < ivr.index("AGI(agi://")
    queues = parse("queues.conf", files["queues.conf"])
    sections = {s.name: s for s in queues.sections}
    assert list(sections) == ["general", "sales", "support", "cc-emergency"]
    for name in ("sales", "support"):
        members = [e.value for e in sections[name].entries if e.key == "member"]
        assert members == ["PJSIP/1001,0,Alice", "PJSIP/1002,0,Bob", "PJSIP/1900,0,Sue"]
        assert sections[name].get("strategy").value == "leastrecent"  # type: ignore[union-attr]


def test_given_a_flow_queue_named_like_the_fallback_when_generated_then_it_is_written_once() -> (
    None
):
    conf = DeploymentConf(queues=("cc-emergency", "sales"))
    queues = generate(conf, {})["queues.conf"]
    assert queues.count("[cc-emergency]") == 1
    assert queues.count("[sales]") == 1


def test_given_no_done_marker_when_generated_then_agistatus_success_means_done() -> None:
    conf = DeploymentConf(done_var="", fallback="voicemail:1000@default")
    files = generate(conf, {})
    ivr = files["extensions-cc-ivr.conf"]
    assert 'GotoIf($["${AGISTATUS}" = "SUCCESS"]?finished)' in ivr
    assert "VoiceMail(1000@default,u)" in ivr
    assert "queues.conf" not in files
    assert "require = app_voicemail.so" in files["modules.conf"]


def test_when_generated_then_supervisor_codes_listen_whisper_and_barge() -> None:
    supervisor = generate(CONF, SECRETS)["extensions-cc-supervisor.conf"]
    assert "ChanSpy(PJSIP/${EXTEN:3}-,qE)" in supervisor
    assert "ChanSpy(PJSIP/${EXTEN:3}-,qwE)" in supervisor
    assert "ChanSpy(PJSIP/${EXTEN:3}-,qBE)" in supervisor


def test_when_generated_then_callbacks_dial_out_through_the_trunk() -> None:
    callback = generate(CONF, SECRETS)["extensions-cc-callback.conf"]
    assert "Dial(PJSIP/${EXTEN}@trunk,45)" in callback


# -- secrets --------------------------------------------------------------------------------


def test_given_missing_secrets_when_generated_then_named_placeholders_are_written() -> None:
    files = generate(CONF, {})
    assert f"secret = {placeholder('CALLCENTER_AMI_SECRET')}\n" in files["manager.conf"]
    assert f"password = {placeholder('CALLCENTER_SIP_PASSWORD_1001')}\n" in files["pjsip.conf"]
    assert missing_secrets(CONF, {}) == secret_names(CONF)
    assert missing_secrets(CONF, SECRETS) == ()


def test_given_placeholders_when_checked_then_each_is_reported_with_its_line(
    tmp_path: Path,
) -> None:
    write(tmp_path, generate(CONF, {}))
    problems = check(tmp_path, CONF)
    manager_line = _line_of(tmp_path / "manager.conf", "secret = ")
    assert (
        Problem(
            "manager.conf",
            manager_line,
            "[callcenter] secret is still the placeholder <unset:CALLCENTER_AMI_SECRET>",
        )
        in problems
    )
    assert {p.file for p in problems} == {"manager.conf", "pjsip.conf"}
    assert len(problems) == 1 + len(CONF.agents) + 1  # AMI, one per agent, the trunk


@pytest.mark.parametrize("bad", ["has;semicolon", "two\nlines", " padded "])
def test_given_a_secret_asterisk_would_misread_when_generated_then_refused(bad: str) -> None:
    with pytest.raises(InvalidDeployment) as err:
        generate(CONF, {**SECRETS, "CALLCENTER_AMI_SECRET": bad})
    assert "CALLCENTER_AMI_SECRET" in str(err.value)
    assert bad not in str(err.value)


def test_no_secret_value_is_in_the_templates_or_the_repository(generated: Path) -> None:
    templates = REPO / "asterisk_conf" / "templates"
    for path in templates.iterdir():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in {"secret", "password"}:
                assert value.strip().startswith("{{"), f"{path.name}: {line}"
    written = "".join(p.read_text() for p in generated.glob("*.conf"))
    assert all(value in written for value in SECRETS.values())
    patterns = [arg for value in SECRETS.values() for arg in ("-e", value)]
    found = subprocess.run(
        ["git", "-C", str(REPO), "grep", "--untracked", "-l", "-I", "-F", *patterns, "--", "."],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 1, found.stdout  # 1: no file of the work tree holds one


# -- write ----------------------------------------------------------------------------------


def test_when_written_then_files_with_secrets_are_0640(generated: Path) -> None:
    for name in ("manager.conf", "pjsip.conf"):
        assert stat.S_IMODE((generated / name).stat().st_mode) == 0o640
    assert stat.S_IMODE((generated / "extensions.conf").stat().st_mode) == 0o644


def test_given_existing_files_when_written_again_then_refused_unless_told(
    generated: Path,
) -> None:
    before = (generated / "manager.conf").read_text()
    with pytest.raises(OutputExists):
        write(generated, generate(CONF, {}))
    assert (generated / "manager.conf").read_text() == before
    write(generated, generate(CONF, {}), overwrite=True)
    assert "<unset:CALLCENTER_AMI_SECRET>" in (generated / "manager.conf").read_text()
    assert stat.S_IMODE((generated / "manager.conf").stat().st_mode) == 0o640
    assert not list(generated.glob(".*tmp*"))


# -- conf validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"agents": (AgentEndpoint("1001"), AgentEndpoint("1001"))}, "listed twice"),
        ({"inbound": (("12;3", "main"),)}, "inbound number"),
        ({"inbound": (("123", "Main Menu"),)}, "not a slug"),
        ({"controllers": ()}, "at least one"),
        ({"controllers": (("pbx.example", 4573, 4574),)}, "ami_permit"),
        ({"fallback": "hangup"}, "fallback"),
        ({"ami_port": 0}, "port"),
        ({"queues": ("sales", "sales")}, "listed twice"),
        ({"queues": ("sales,vip",)}, "not a queue name"),
        ({"queue_timeout": 0}, "queue_timeout"),
    ],
)
def test_given_a_bad_deployment_value_when_built_then_refused_with_its_name(
    change: dict[str, object], message: str
) -> None:
    base = {
        "controllers": CONF.controllers,
        "agents": CONF.agents,
        "inbound": CONF.inbound,
    }
    with pytest.raises(InvalidDeployment, match=message):
        DeploymentConf(**(base | change))  # type: ignore[arg-type]


def test_given_a_bad_agent_when_built_then_refused() -> None:
    with pytest.raises(InvalidDeployment, match="digits"):
        AgentEndpoint("alice")
    with pytest.raises(InvalidDeployment, match="display name"):
        AgentEndpoint("1001", display_name='Eve"; evil')
    with pytest.raises(InvalidDeployment, match="kind"):
        AgentEndpoint("1001", kind="sip")  # type: ignore[arg-type]
    assert AgentEndpoint("1001", kind="deskphone").kind is EndpointKind.DESKPHONE  # type: ignore[arg-type]


# -- check: injected mistakes -----------------------------------------------------------------


def test_given_an_unknown_application_when_checked_then_reported_at_its_line(
    generated: Path,
) -> None:
    path = generated / "extensions-cc-supervisor.conf"
    line = _replace(path, "ChanSpy(PJSIP/${EXTEN:3}-,qE)", "ChanSpyy(PJSIP/${EXTEN:3}-,qE)")
    assert check(generated, CONF) == [
        Problem("extensions-cc-supervisor.conf", line, "unknown application ChanSpyy")
    ]


def test_given_a_removed_application_when_checked_then_the_replacement_is_named(
    generated: Path,
) -> None:
    path = generated / "extensions-cc-agents.conf"
    line = _replace(path, "Dial(PJSIP/1001,20)", "Macro(dial,1001)")
    assert check(generated, CONF) == [
        Problem(
            "extensions-cc-agents.conf",
            line,
            "Macro: app_macro was removed in Asterisk 21; use Gosub",
        )
    ]


def test_given_a_goto_to_a_missing_context_when_checked_then_reported(generated: Path) -> None:
    path = generated / "extensions-cc-inbound.conf"
    line = _replace(path, "?cc-safe-route,s,1)", "?cc-safe-rout,s,1)")
    problems = check(generated, CONF)
    assert problems == [
        Problem("extensions-cc-inbound.conf", line, "GotoIf: context cc-safe-rout does not exist")
    ]


def test_given_a_goto_to_a_missing_label_when_checked_then_reported(generated: Path) -> None:
    path = generated / "extensions-cc-ivr.conf"
    line = _replace(path, "Goto(next)", "Goto(nxt)")
    assert check(generated, CONF) == [
        Problem("extensions-cc-ivr.conf", line, "Goto: no label nxt in s@cc-ivr")
    ]


def test_given_a_gosub_to_a_missing_extension_when_checked_then_reported(generated: Path) -> None:
    path = generated / "extensions-cc-inbound.conf"
    line = _replace(path, "Gosub(cc-ivr,s,1(main))", "Gosub(cc-ivr,start,1(main))")
    assert check(generated, CONF) == [
        Problem("extensions-cc-inbound.conf", line, "Gosub: no extension start in context cc-ivr")
    ]


def test_given_a_missing_include_when_checked_then_reported(generated: Path) -> None:
    path = generated / "extensions-cc-agents.conf"
    line = _replace(path, "include => cc-supervisor", "include => cc-supervisors")
    assert check(generated, CONF) == [
        Problem("extensions-cc-agents.conf", line, "include => cc-supervisors: no such context")
    ]


def test_given_a_missing_included_file_when_checked_then_reported(generated: Path) -> None:
    (generated / "extensions-cc-speech.conf").unlink()
    line = _line_of(generated / "extensions.conf", '#include "extensions-cc-speech.conf"')
    problems = check(generated, CONF)
    assert (
        Problem("extensions.conf", line, "#include extensions-cc-speech.conf: no such file")
        in problems
    )


def test_given_an_agi_url_to_a_stranger_when_checked_then_reported(generated: Path) -> None:
    path = generated / "extensions-cc-inbound.conf"
    line = _replace(path, "Gosub(cc-ivr,s,1(main))", "AGI(agi://192.0.2.9:4573/ivr/main)")
    problems = check(generated, CONF)
    assert problems == [
        Problem(
            "extensions-cc-inbound.conf",
            line,
            "FastAGI target 192.0.2.9:4573 is not a controller's address "
            "(expected one of 10.0.0.11:4573, 10.0.0.12:4573)",
        )
    ]


def test_given_a_controller_list_that_differs_when_checked_then_globals_line_reported(
    generated: Path,
) -> None:
    path = generated / "extensions.conf"
    line = _replace(path, "10.0.0.12:4574", "10.0.0.13:4574")
    problems = check(generated, CONF)
    assert [p.line for p in problems if p.file == "extensions.conf"] == [line, line]
    assert any("10.0.0.13:4574 is not a controller's address" in p.message for p in problems)
    assert any("never tried: 10.0.0.12:4574" in p.message for p in problems)


def test_given_a_bad_manager_permission_when_checked_then_reported(generated: Path) -> None:
    path = generated / "manager.conf"
    line = _replace(path, "read = system,", "read = sytem,")
    problems = check(generated, CONF)
    assert (
        Problem("manager.conf", line, "[callcenter] read: no permission class 'sytem'") in problems
    )
    assert all(p.file == "manager.conf" and p.line == line for p in problems)


def test_given_a_broad_manager_permission_when_checked_then_least_privilege_reported(
    generated: Path,
) -> None:
    path = generated / "manager.conf"
    line = _replace(path, "write = call,", "write = command,call,")
    assert check(generated, CONF) == [
        Problem(
            "manager.conf", line, "[callcenter] write: command is more than the callcenter uses"
        )
    ]


def test_given_a_misspelt_pjsip_option_when_checked_then_reported(generated: Path) -> None:
    path = generated / "pjsip.conf"
    line = _replace(path, "media_encryption = dtls", "media_encription = dtls")
    assert check(generated, CONF) == [
        Problem("pjsip.conf", line, "[1001] unknown endpoint option media_encription")
    ]


def test_given_an_endpoint_without_its_auth_when_checked_then_reported(generated: Path) -> None:
    path = generated / "pjsip.conf"
    line = _replace(path, "auth = 1002-auth", "auth = 1002-auht")
    assert check(generated, CONF) == [
        Problem("pjsip.conf", line, "[1002] auth = 1002-auht: no auth [1002-auht]")
    ]


def test_given_an_endpoint_context_missing_from_the_dialplan_when_checked_then_reported(
    generated: Path,
) -> None:
    path = generated / "pjsip.conf"
    line = _replace(path, "context = cc-inbound", "context = from-trunk")
    assert check(generated, CONF) == [
        Problem("pjsip.conf", line, "[trunk] context from-trunk: no such context")
    ]


def test_given_a_line_pyst2_rejects_when_checked_then_reported(generated: Path) -> None:
    path = generated / "http.conf"
    line = _replace(path, "bindport = 8088", "bindport 8088")
    problems = check(generated, CONF)
    assert [p.file for p in problems] == ["http.conf"]
    assert problems[0].line == line


def test_given_a_flow_queue_missing_from_queues_conf_when_checked_then_reported(
    generated: Path,
) -> None:
    path = generated / "queues.conf"
    path.write_text(path.read_text().replace("[support]", "[suport]"))
    assert check(generated, CONF) == [
        Problem("queues.conf", 0, "no queue [support] (an IVR flow's queue step or the fallback)")
    ]


def test_given_an_unknown_queue_strategy_when_checked_then_reported(generated: Path) -> None:
    path = generated / "queues.conf"
    line = _replace(path, "strategy = leastrecent", "strategy = longestidle")
    assert check(generated, CONF) == [
        Problem("queues.conf", line, "[sales] no queue strategy 'longestidle'")
    ]


def test_when_generated_then_every_asterisk_variable_read_or_set_is_a_checked_name() -> None:
    text = "".join(t for name, t in generate(CONF, SECRETS).items() if name.startswith("ext"))
    names = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)[}:]", text))
    names |= set(re.findall(r"Set\(([A-Z_][A-Z0-9_]*)=", text))
    ours = {n for n in names if n.startswith("CC_")} | {"ARG1", "EXTEN"}  # ARG1, EXTEN: pbx core
    assert names - ours <= set(known.VARIABLES)
    assert "QUEUE_PRIO" in names


def test_given_a_queue_app_naming_an_undefined_queue_when_checked_then_reported(
    generated: Path,
) -> None:
    path = generated / "extensions-cc-ivr.conf"
    line = _replace(path, "Queue(cc-emergency,t,,,300)", "Queue(cc-emergncy,t,,,300)")
    assert check(generated, CONF) == [
        Problem(
            "extensions-cc-ivr.conf", line, "Queue(cc-emergncy): no [cc-emergncy] in queues.conf"
        )
    ]


def test_given_a_local_channel_to_a_missing_context_when_checked_then_reported(
    generated: Path,
) -> None:
    path = generated / "extensions-cc-agents.conf"
    line = _replace(path, "Dial(PJSIP/1001,20)", "Dial(Local/1001@agents,20)")
    assert check(generated, CONF) == [
        Problem("extensions-cc-agents.conf", line, "Local/1001@agents: no such context")
    ]


def test_given_an_audiosocket_service_without_port_when_checked_then_reported(
    generated: Path,
) -> None:
    path = generated / "extensions-cc-speech.conf"
    line = _replace(
        path,
        "TryExec(AudioSocket(${ARG1},${CUT(CC_AUDIOSOCKET_NODES,&,${i})}))",
        "TryExec(AudioSocket(${ARG1},speech.example))",
    )
    problems = check(generated, CONF)
    assert (
        Problem(
            "extensions-cc-speech.conf",
            line,
            "AudioSocket target 'speech.example': expected host:port",
        )
        in problems
    )


def test_given_the_wrong_ami_bind_when_checked_against_settings_then_reported(
    generated: Path,
) -> None:
    other = DeploymentConf(
        ami_bind="10.0.0.1",
        controllers=CONF.controllers,
        agents=CONF.agents,
        inbound=CONF.inbound,
        trunk_username="acme",
    )
    line = _line_of(generated / "manager.conf", "bindaddr = ")
    assert check(generated, other) == [
        Problem("manager.conf", line, "[general] bindaddr should be 10.0.0.1")
    ]


# -- check: the lab configuration that Asterisk 22.10.1 loaded ---------------------------------


def test_given_the_lab_configuration_when_checked_then_only_its_placeholders_are_reported(
    tmp_path: Path,
) -> None:
    problems = check(LAB_ETC)
    assert problems == [
        Problem("manager.conf", 10, "[ivr] secret is still the placeholder <AMI_SECRET>"),
        Problem(
            "pjsip.conf", 29, "[1001-auth] password is still the placeholder <SIP_PASSWORD_1001>"
        ),
        Problem(
            "pjsip.conf", 54, "[2001-auth] password is still the placeholder <SIP_PASSWORD_2001>"
        ),
    ]


def test_given_the_lab_configuration_then_every_file_parses_with_pyst2() -> None:
    for path in sorted(LAB_ETC.glob("*.conf")):
        assert pyst2_categories(path.name, path.read_text()), path.name


def test_given_the_lab_configuration_when_checked_against_our_settings_then_gaps_are_named(
    tmp_path: Path,
) -> None:
    etc = tmp_path / "etc"
    shutil.copytree(LAB_ETC, etc)
    lab = DeploymentConf(ami_username="ivr")
    problems = check(etc, lab)
    messages = [str(p) for p in problems]
    assert "manager.conf:13: [ivr] read: all is more than the callcenter uses" in messages
    assert "manager.conf:14: [ivr] write: all is more than the callcenter uses" in messages
    assert any(p.file == "extensions-cc-ivr.conf" and p.line == 0 for p in problems)


def test_given_pjsip_templates_when_checked_then_inherited_options_are_checked(
    tmp_path: Path,
) -> None:
    (tmp_path / "pjsip.conf").write_text(
        "[phone](!)\n"
        "type = endpoint\n"
        "context = default\n"
        "webrtc = yes\n"
        "\n"
        "[2002](phone)\n"
        "aors = 2002\n"
        "dtls_verfy = fingerprint\n"
        "\n"
        "[2002]\n"
        "type = aor\n"
        "max_contacts = 1\n"
    )
    assert check(tmp_path) == [
        Problem("pjsip.conf", 8, "[2002] unknown endpoint option dtls_verfy"),
    ]
