"""What the generator needs to know about a deployment, and what `check()` reports.

The lead maps `callcenter.config.Settings` onto `DeploymentConf`; everything here is validated
when the object is built, so `generate()` never writes a value Asterisk would misread (a `;`
starts a comment, a `,` separates dialplan arguments, a newline ends a line).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

from asterisk_conf.errors import InvalidDeployment


class EndpointKind(StrEnum):
    """How an agent's phone reaches Asterisk."""

    WEBRTC = "webrtc"  # browser softphone: SIP over WSS, media DTLS-SRTP
    DESKPHONE = "deskphone"  # SIP phone: UDP


@dataclass(frozen=True, slots=True)
class AgentEndpoint:
    """One agent (or supervisor) phone: a PJSIP endpoint named after its extension."""

    extension: str
    kind: EndpointKind = EndpointKind.WEBRTC
    display_name: str = ""
    supervisor: bool = False  # may dial the ChanSpy codes (listen, whisper, barge)

    def __post_init__(self) -> None:
        if not _EXTENSION.fullmatch(self.extension):
            raise InvalidDeployment(f"agent extension {self.extension!r}: expected 2 to 15 digits")
        if not isinstance(self.kind, EndpointKind):
            object.__setattr__(self, "kind", _kind(self.kind, self.extension))
        if _UNSAFE_NAME.search(self.display_name):
            raise InvalidDeployment(
                f"agent {self.extension} display name {self.display_name!r}: "
                'must not contain " ; < > \\ or control characters'
            )

    @property
    def secret_name(self) -> str:
        """The environment variable that holds this endpoint's SIP password."""
        return f"CALLCENTER_SIP_PASSWORD_{self.extension}"


@dataclass(frozen=True, slots=True)
class Fallback:
    """Where a call goes when no controller node could run its IVR flow."""

    kind: str  # "queue" | "voicemail"
    target: str  # queue name, or mailbox[@context]

    @classmethod
    def parse(cls, text: str) -> Fallback:
        kind, sep, target = text.partition(":")
        if not sep or kind not in {"queue", "voicemail"}:
            raise InvalidDeployment(
                f"fallback {text!r}: expected 'queue:<name>' or 'voicemail:<box>[@context]'"
            )
        pattern = _QUEUE_NAME if kind == "queue" else _MAILBOX
        if not pattern.fullmatch(target):
            raise InvalidDeployment(f"fallback {text!r}: bad {kind} name {target!r}")
        return cls(kind, target)


@dataclass(frozen=True, slots=True)
class DeploymentConf:
    """Everything `generate()` needs; the lead maps the settings onto it.

    `controllers` are the callcenter nodes in failover order, each as
    `(host, agi_port, audiosocket_port)`: the dialplan tries them one after the other.
    `inbound` maps a DID (or an Asterisk pattern such as `_0800XXXXXX`) to an IVR flow name:
    the call runs `agi://<node>/ivr/<flow>`.
    `queues` are the queues the IVR flows' queue steps name: a flow that ends in a queue step
    sets `CC_QUEUE` and ends its AGI session (the hand-off contract of `ivr.adapters.ivr_route`),
    and the dialplan's `cc-queue` context runs `Queue(${CC_QUEUE})` on the queues.conf queue of
    that name, whose members are the agents' phones.
    """

    ami_bind: str = "127.0.0.1"
    ami_port: int = 5038
    ami_username: str = "callcenter"
    # AMI clients allowed in (address/mask); empty: every controller host (they must be IPs)
    ami_permit: tuple[str, ...] = ()
    controllers: tuple[tuple[str, int, int], ...] = (("127.0.0.1", 4573, 4574),)
    inbound: tuple[tuple[str, str], ...] = ()
    agents: tuple[AgentEndpoint, ...] = ()
    trunk_name: str = "trunk"
    # the provider's SIP server; 192.0.2.1 (TEST-NET-1) loads but is a placeholder to replace
    trunk_host: str = "192.0.2.1"
    trunk_username: str = ""  # empty: the provider authenticates us by IP address
    sip_bind: str = "0.0.0.0:5060"  # UDP transport for desk phones and the trunk
    http_bind: str = "0.0.0.0"  # Asterisk's HTTPS server that carries SIP over WSS
    http_port: int = 8089
    tls_cert_file: str = "/etc/asterisk/keys/asterisk.crt"
    tls_key_file: str = "/etc/asterisk/keys/asterisk.key"
    moh_class: str = "default"
    moh_dir: str = "/var/lib/asterisk/moh"
    fallback: str = "queue:cc-emergency"
    fallback_timeout: int = 300  # seconds a caller waits in the fallback queue
    queues: tuple[str, ...] = ()
    queue_timeout: int = 600  # seconds a caller waits in a flow's queue before the safe route
    agent_ring_timeout: int = 20
    callback_timeout: int = 45
    callback_callerid: str = ""  # number presented on callbacks; empty: the trunk's default
    # Channel variable the IVR sets (SET VARIABLE CC_IVR_DONE 1) before it ends a session
    # normally. Asterisk reports a crashed controller as AGISTATUS=SUCCESS (EOF) and a finished
    # flow that once failed a command as FAILURE, so only this marker tells them apart.
    # Empty: trust AGISTATUS alone (SUCCESS = done).
    done_var: str = "CC_IVR_DONE"
    # The endpoints the ACD dials its agents on (`acd.config_file`, e.g. `PJSIP/1001`): each
    # PJSIP one must be an agent phone of this configuration, or the ACD's calls fail.
    acd_endpoints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name("ami_username", self.ami_username)
        _check_name("trunk_name", self.trunk_name)
        _check_name("moh_class", self.moh_class)
        _check_host("ami_bind", self.ami_bind)
        _check_host("http_bind", self.http_bind)
        _check_host("trunk_host", self.trunk_host)
        _check_port("ami_port", self.ami_port)
        _check_port("http_port", self.http_port)
        host, _, port = self.sip_bind.rpartition(":")
        _check_host("sip_bind", host)
        _check_port("sip_bind", int(port) if port.isdigit() else -1)
        for path_key in ("tls_cert_file", "tls_key_file", "moh_dir"):
            value = getattr(self, path_key)
            if not value.startswith("/") or _UNSAFE_VALUE.search(value):
                raise InvalidDeployment(f"{path_key} {value!r}: expected an absolute path")
        if self.trunk_username:
            _check_name("trunk_username", self.trunk_username)
        if not self.controllers:
            raise InvalidDeployment("controllers: at least one controller node is needed")
        for host, agi_port, as_port in self.controllers:
            _check_host("controllers", host)
            _check_port("controllers agi port", agi_port)
            _check_port("controllers audiosocket port", as_port)
        for permit in self.ami_permit:
            _check_permit(permit)
        if not self.ami_permit:
            for host, _, _ in self.controllers:
                if not _is_ip(host):
                    raise InvalidDeployment(
                        f"controllers: {host!r} is not an IP address, so manager.conf cannot "
                        "permit it; set ami_permit to the controllers' address/mask"
                    )
        seen: set[str] = set()
        for did, flow in self.inbound:
            if not _DID.fullmatch(did):
                raise InvalidDeployment(
                    f"inbound number {did!r}: expected digits (optionally +) or a pattern "
                    "starting with _"
                )
            if did in seen:
                raise InvalidDeployment(f"inbound number {did!r} is listed twice")
            seen.add(did)
            if not _FLOW.fullmatch(flow):
                raise InvalidDeployment(f"inbound {did}: IVR flow name {flow!r} is not a slug")
        extensions = [agent.extension for agent in self.agents]
        duplicates = sorted({e for e in extensions if extensions.count(e) > 1})
        if duplicates:
            raise InvalidDeployment(f"agents: extension listed twice: {', '.join(duplicates)}")
        Fallback.parse(self.fallback)
        for queue in self.queues:
            if not _QUEUE_NAME.fullmatch(queue):
                raise InvalidDeployment(f"queues: {queue!r} is not a queue name")
        if len(set(self.queues)) != len(self.queues):
            raise InvalidDeployment(f"queues: a name is listed twice in {', '.join(self.queues)}")
        for key in ("fallback_timeout", "queue_timeout", "agent_ring_timeout", "callback_timeout"):
            if not 0 < getattr(self, key) <= 86_400:
                raise InvalidDeployment(f"{key}: expected 1..86400 seconds")
        if self.callback_callerid and not re.fullmatch(r"\+?[0-9]{2,20}", self.callback_callerid):
            raise InvalidDeployment(f"callback_callerid {self.callback_callerid!r}: digits only")
        if self.done_var and not re.fullmatch(r"[A-Z][A-Z0-9_]{0,39}", self.done_var):
            raise InvalidDeployment(f"done_var {self.done_var!r}: expected an UPPER_CASE name")

    @property
    def missing_acd_endpoints(self) -> tuple[str, ...]:
        """The ACD's `PJSIP/<name>` endpoints that are none of the agents' phones."""
        phones = {f"PJSIP/{agent.extension}" for agent in self.agents}
        return tuple(
            e for e in self.acd_endpoints if e.upper().startswith("PJSIP/") and e not in phones
        )

    @property
    def fallback_route(self) -> Fallback:
        return Fallback.parse(self.fallback)

    @property
    def permits(self) -> tuple[str, ...]:
        """The `permit =` lines of the AMI user (address/mask)."""
        if self.ami_permit:
            return self.ami_permit
        hosts = dict.fromkeys(host for host, _, _ in self.controllers)
        return tuple(f"{host}/{_full_mask(host)}" for host in hosts)

    @property
    def agi_nodes(self) -> tuple[str, ...]:
        """`host:port` of each controller's FastAGI server, in failover order."""
        return tuple(f"{_bracket(h)}:{p}" for h, p, _ in self.controllers)

    @property
    def audiosocket_nodes(self) -> tuple[str, ...]:
        """`host:port` of each controller's AudioSocket server, in failover order."""
        return tuple(f"{_bracket(h)}:{p}" for h, _, p in self.controllers)

    @property
    def ami_secret_name(self) -> str:
        return "CALLCENTER_AMI_SECRET"

    @property
    def trunk_secret_name(self) -> str:
        return "CALLCENTER_TRUNK_PASSWORD"


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing `check()` found wrong, by file (relative to the checked folder) and line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


_EXTENSION = re.compile(r"[0-9]{2,15}")
_DID = re.compile(r"\+?[0-9*#]{1,32}|_[0-9XNZxnz.!\[\]\-+*#]{1,40}")
_FLOW = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_MAILBOX = re.compile(r"[0-9A-Za-z_-]{1,32}(@[A-Za-z0-9_-]{1,64})?")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
_UNSAFE_NAME = re.compile(r'["\\;<>\x00-\x1f\x7f]')
_UNSAFE_VALUE = re.compile(r"[;,\s\x00-\x1f\x7f]")


def _kind(value: object, extension: str) -> EndpointKind:
    try:
        return EndpointKind(str(value))
    except ValueError:
        raise InvalidDeployment(
            f"agent {extension}: kind {value!r} is not one of "
            f"{', '.join(k.value for k in EndpointKind)}"
        ) from None


def _check_name(key: str, value: str) -> None:
    if not _NAME.fullmatch(value):
        raise InvalidDeployment(f"{key} {value!r}: expected letters, digits, '.', '_' or '-'")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_host(key: str, host: str) -> None:
    if not (_is_ip(host) or _HOST.fullmatch(host)):
        raise InvalidDeployment(f"{key}: {host!r} is not an IP address or host name")


def _check_port(key: str, port: int) -> None:
    if not 0 < port <= 65535:
        raise InvalidDeployment(f"{key}: port {port!r} is not 1..65535")


def _check_permit(permit: str) -> None:
    address, sep, mask = permit.partition("/")
    if not sep or not _is_ip(address) or not (mask.isdigit() or _is_ip(mask)):
        raise InvalidDeployment(f"ami_permit {permit!r}: expected address/mask")


def _full_mask(host: str) -> str:
    return "255.255.255.255" if ipaddress.ip_address(host).version == 4 else "128"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
