"""`generate()`: the Asterisk configuration files this deployment needs, as text (pure).

Secrets (the AMI secret, SIP passwords) come in a mapping keyed by the environment variable
that holds them (`CALLCENTER_AMI_SECRET`, `CALLCENTER_SIP_PASSWORD_<EXT>`,
`CALLCENTER_TRUNK_PASSWORD`; `secret_names()` lists the ones a deployment needs). A missing
secret is written as the placeholder `<unset:NAME>`: the files can then be generated and
reviewed before the secrets exist, `check()` reports every placeholder with its file and line,
and `missing_secrets()` lets a caller refuse to write instead. A secret Asterisk would misread
(`;` starts a comment, a newline ends the line, edge spaces are trimmed) raises
`InvalidDeployment` naming the variable, never showing the value.
"""

from __future__ import annotations

from collections.abc import Mapping

from asterisk_conf.errors import InvalidDeployment
from asterisk_conf.known import AMI_READ, AMI_WRITE
from asterisk_conf.model import AgentEndpoint, DeploymentConf, EndpointKind
from asterisk_conf.render import render

PLACEHOLDER_PREFIX = "<unset:"
AGI_SCRIPT_PREFIX = "ivr"  # agi://<node>/ivr/<flow>
NODE_SEPARATOR = "&"
# The IVR's queue hand-off (ivr.adapters.ivr_route): the queue a flow's queue step chose.
QUEUE_VAR = "CC_QUEUE"
DOCUMENTATION_TRUNK_HOST = "192.0.2.1"

# Files holding a secret: written with mode 0640.
SECRET_FILES = frozenset({"manager.conf", "pjsip.conf"})

EXTENSION_PARTS = (
    "extensions-cc-ivr.conf",
    "extensions-cc-inbound.conf",
    "extensions-cc-queue.conf",
    "extensions-cc-agents.conf",
    "extensions-cc-supervisor.conf",
    "extensions-cc-callback.conf",
    "extensions-cc-speech.conf",
)

_REQUIRED_MODULES = (
    "pbx_config.so",
    "chan_pjsip.so",
    "res_pjsip.so",
    "res_pjsip_session.so",
    "res_pjsip_registrar.so",
    "res_pjsip_authenticator_digest.so",
    "res_pjsip_outbound_authenticator_digest.so",
    "res_pjsip_endpoint_identifier_ip.so",
    "res_pjsip_transport_websocket.so",
    "res_http_websocket.so",
    "res_crypto.so",
    "res_srtp.so",
    "res_rtp_asterisk.so",
    "res_musiconhold.so",
    "res_agi.so",
    "app_stack.so",
    "app_dial.so",
    "app_exec.so",
    "app_queue.so",
    "app_chanspy.so",
    "func_cut.so",
    "func_strings.so",
    "format_wav.so",
    "format_pcm.so",
)


def placeholder(name: str) -> str:
    """What `generate()` writes where the secret `name` was not given."""
    return f"{PLACEHOLDER_PREFIX}{name}>"


def secret_names(conf: DeploymentConf) -> tuple[str, ...]:
    """The environment variables holding the secrets this deployment's files need."""
    names = [conf.ami_secret_name, *(agent.secret_name for agent in conf.agents)]
    if conf.trunk_username:
        names.append(conf.trunk_secret_name)
    return tuple(names)


def missing_secrets(conf: DeploymentConf, secrets: Mapping[str, str]) -> tuple[str, ...]:
    """The needed secrets that `secrets` lacks (or holds empty)."""
    return tuple(name for name in secret_names(conf) if not secrets.get(name))


def generate(conf: DeploymentConf, secrets: Mapping[str, str]) -> dict[str, str]:
    """Every file name (relative to /etc/asterisk) and its text."""
    fallback = conf.fallback_route
    files = {
        "manager.conf": _manager(conf, secrets),
        "http.conf": render(
            "http.conf.tmpl",
            {
                "http_port": str(conf.http_port),
                "http_tls_bind": f"{_bind_host(conf.http_bind)}:{conf.http_port}",
                "tls_cert_file": conf.tls_cert_file,
                "tls_key_file": conf.tls_key_file,
            },
        ),
        "musiconhold.conf": render(
            "musiconhold.conf.tmpl", {"moh_class": conf.moh_class, "moh_dir": conf.moh_dir}
        ),
        "modules.conf": _modules(conf),
        "pjsip.conf": _pjsip(conf, secrets),
        "extensions.conf": render(
            "extensions.conf.tmpl",
            {
                "agi_nodes": NODE_SEPARATOR.join(conf.agi_nodes),
                "audiosocket_nodes": NODE_SEPARATOR.join(conf.audiosocket_nodes),
            },
        ),
        **_dialplan(conf),
    }
    if fallback.kind == "queue" or conf.queues:
        files["queues.conf"] = _queues(conf)
    return files


def _secret(secrets: Mapping[str, str], name: str) -> str:
    value = secrets.get(name, "")
    if not value:
        return placeholder(name)
    if value != value.strip() or any(c in value for c in ";\r\n\x00"):
        raise InvalidDeployment(
            f"{name}: the secret contains ';', a line break or edge spaces, which Asterisk "
            "would misread; choose another"
        )
    return value


def _manager(conf: DeploymentConf, secrets: Mapping[str, str]) -> str:
    return render(
        "manager.conf.tmpl",
        {
            "ami_bind": conf.ami_bind,
            "ami_port": str(conf.ami_port),
            "ami_username": conf.ami_username,
            "ami_secret": _secret(secrets, conf.ami_secret_name),
            "permit_lines": "\n".join(f"permit = {p}" for p in conf.permits),
            "ami_read": ",".join(AMI_READ),
            "ami_write": ",".join(AMI_WRITE),
        },
    )


def _queues(conf: DeploymentConf) -> str:
    fallback = conf.fallback_route
    members = "\n".join(f"member => PJSIP/{a.extension},0,{_member_name(a)}" for a in conf.agents)
    sections = [
        render(
            "queues_queue.tmpl",
            {
                "purpose": "IVR flows' queue step (cc-queue); the longest-idle agent rings first",
                "queue_name": name,
                "moh_class": conf.moh_class,
                "strategy": "leastrecent",
                "agent_ring_timeout": str(conf.agent_ring_timeout),
                "member_lines": members,
            },
        )
        for name in conf.queues
        if not (fallback.kind == "queue" and name == fallback.target)
    ]
    if fallback.kind == "queue":
        sections.append(
            render(
                "queues_queue.tmpl",
                {
                    "purpose": "the safe route's fallback queue (cc-safe-route): every agent rings",
                    "queue_name": fallback.target,
                    "moh_class": conf.moh_class,
                    "strategy": "ringall",
                    "agent_ring_timeout": "15",
                    "member_lines": members,
                },
            )
        )
    return render("queues.conf.tmpl", {"queue_sections": "".join(sections).rstrip("\n")})


def _modules(conf: DeploymentConf) -> str:
    required = list(_REQUIRED_MODULES)
    if conf.fallback_route.kind == "voicemail":
        required.append("app_voicemail.so")
    if conf.callback_callerid:
        required.append("func_callerid.so")
    return render(
        "modules.conf.tmpl", {"require_lines": "\n".join(f"require = {m}" for m in required)}
    )


def _pjsip(conf: DeploymentConf, secrets: Mapping[str, str]) -> str:
    endpoints = []
    for agent in conf.agents:
        template = (
            "pjsip_webrtc.tmpl" if agent.kind is EndpointKind.WEBRTC else "pjsip_deskphone.tmpl"
        )
        values = {
            "extension": agent.extension,
            "context": "cc-from-supervisors" if agent.supervisor else "cc-from-agents",
            "callerid": _callerid(agent),
            "password": _secret(secrets, agent.secret_name),
        }
        if agent.kind is EndpointKind.WEBRTC:
            values |= {"tls_cert_file": conf.tls_cert_file, "tls_key_file": conf.tls_key_file}
        endpoints.append(render(template, values).rstrip("\n"))
    trunk_auth = ""
    if conf.trunk_username:
        trunk_auth = render(
            "pjsip_trunk_auth.tmpl",
            {
                "trunk_name": conf.trunk_name,
                "trunk_username": conf.trunk_username,
                "password": _secret(secrets, conf.trunk_secret_name),
            },
        ).rstrip("\n")
    trunk = render(
        "pjsip_trunk.tmpl",
        {
            "trunk_name": conf.trunk_name,
            "trunk_host": conf.trunk_host,
            "trunk_note": (
                "; 192.0.2.1 is a documentation address (RFC 5737): replace it with your "
                "provider's SIP server."
                if conf.trunk_host == DOCUMENTATION_TRUNK_HOST
                else ""
            ),
            "trunk_auth_ref": (
                f"outbound_auth = {conf.trunk_name}-auth" if conf.trunk_username else ""
            ),
            "trunk_auth": trunk_auth,
        },
    ).rstrip("\n")
    return render(
        "pjsip.conf.tmpl",
        {"sip_bind": conf.sip_bind, "endpoints": "\n".join(endpoints), "trunk": trunk},
    )


def _dialplan(conf: DeploymentConf) -> dict[str, str]:
    fallback = conf.fallback_route
    if fallback.kind == "queue":
        fallback_line = f" same => n,Queue({fallback.target},t,,,{conf.fallback_timeout})"
    else:
        fallback_line = f" same => n,VoiceMail({fallback.target},u)"
    if conf.done_var:
        done_rule = f"it set the channel variable {conf.done_var} (SET VARIABLE {conf.done_var} 1)"
        done_test = f'$["${{{conf.done_var}}}" != ""]'
        clear_done = f" same => n,Set({conf.done_var}=)\n same => n,Set({QUEUE_VAR}=)"
    else:
        done_rule = "its session ends with AGISTATUS=SUCCESS"
        done_test = '$["${AGISTATUS}" = "SUCCESS"]'
        clear_done = f" same => n,Set({QUEUE_VAR}=)"
    inbound = []
    for did, flow in conf.inbound:
        inbound += [
            f"exten => {did},1,NoOp(inbound call for IVR flow {flow})",
            " same => n,Answer()",  # the IVR plays prompts and reads keys: answer first
            f" same => n,Gosub(cc-ivr,s,1({flow}))",
            ' same => n,GotoIf($["${GOSUB_RETVAL}" = "failed"]?cc-safe-route,s,1)',
            f' same => n,GotoIf($["${{{QUEUE_VAR}}}" != ""]?cc-queue,s,1)',
            " same => n,Hangup()",
        ]
    agents = []
    for agent in conf.agents:
        ext = agent.extension
        agents += [
            f"exten => {ext},hint,PJSIP/{ext}",
            f"exten => {ext},1,Dial(PJSIP/{ext},{conf.agent_ring_timeout})",
            " same => n,Hangup()",
        ]
    callerid = (
        f" same => n,Set(CALLERID(num)={conf.callback_callerid})" if conf.callback_callerid else ""
    )
    return {
        "extensions-cc-ivr.conf": render(
            "extensions-cc-ivr.conf.tmpl",
            {
                "done_rule": done_rule,
                "done_test": done_test,
                "clear_done": clear_done,
                "fallback": conf.fallback,
                "fallback_lines": fallback_line,
            },
        ),
        "extensions-cc-inbound.conf": render(
            "extensions-cc-inbound.conf.tmpl", {"inbound_lines": "\n".join(inbound)}
        ),
        "extensions-cc-queue.conf": render(
            "extensions-cc-queue.conf.tmpl", {"queue_timeout": str(conf.queue_timeout)}
        ),
        "extensions-cc-agents.conf": render(
            "extensions-cc-agents.conf.tmpl", {"agent_lines": "\n".join(agents)}
        ),
        "extensions-cc-supervisor.conf": render("extensions-cc-supervisor.conf.tmpl", {}),
        "extensions-cc-callback.conf": render(
            "extensions-cc-callback.conf.tmpl",
            {
                "trunk_name": conf.trunk_name,
                "callback_timeout": str(conf.callback_timeout),
                "callerid_line": callerid,
            },
        ),
        "extensions-cc-speech.conf": render("extensions-cc-speech.conf.tmpl", {}),
    }


def _callerid(agent: AgentEndpoint) -> str:
    name = agent.display_name.strip() or f"Agent {agent.extension}"
    return f'"{name}" <{agent.extension}>'


def _member_name(agent: AgentEndpoint) -> str:
    name = agent.display_name.strip().replace(",", " ")
    return name or f"Agent {agent.extension}"


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
