"""Asterisk 22 names the generator writes and `check()` accepts, each with where it was checked.

Every application, dialplan function, module, AMI permission class and configuration option
that `generate()` writes is listed here with its source: the Asterisk 22 documentation
(docs.asterisk.org, "Asterisk_22_Documentation/API_Documentation/..."), the Asterisk source
(github.com/asterisk/asterisk: `main/manager.c`, `apps/*.c`, `configs/samples/*.conf.sample`)
or the lab configuration that Asterisk 22.10.1 loaded (`tests/fixtures/asterisk-traces/
asterisk-etc/`, "lab"). `check()` also accepts other common Asterisk 22 names so that an
operator's own configuration is not flooded with false alarms; those carry the same sources.
"""

from __future__ import annotations

from collections.abc import Mapping

_APPS = (
    "https://docs.asterisk.org/Asterisk_22_Documentation/API_Documentation/Dialplan_Applications/"
)
_FUNCS = "https://docs.asterisk.org/Asterisk_22_Documentation/API_Documentation/Dialplan_Functions/"
_PJSIP = (
    "https://docs.asterisk.org/Asterisk_22_Documentation/API_Documentation/"
    "Module_Configuration/res_pjsip/"
)
_WEBRTC = "https://docs.asterisk.org/Configuration/WebRTC/Configuring-Asterisk-for-WebRTC-Clients/"
_LAB = "lab asterisk-etc (Asterisk 22.10.1 loaded it)"


def _apps(module: str, *names: str) -> dict[str, str]:
    return {name: f"{module}: {_APPS}{name}" for name in names}


# Dialplan applications (case-insensitive in Asterisk; keys keep the documented spelling).
APPLICATIONS: Mapping[str, str] = {
    # used by the generated dialplan
    **_apps("res_agi", "AGI"),  # AGISTATUS: SUCCESS | FAILURE | NOTFOUND | HANGUP
    **_apps("app_audiosocket", "AudioSocket"),  # AudioSocket(uuid,host:port); -1 if unreachable
    **_apps("app_chanspy", "ChanSpy"),  # options q (quiet), w (whisper), B (barge), E (exit)
    **_apps("app_dial", "Dial"),
    **_apps("app_exec", "TryExec"),  # TRYSTATUS: SUCCESS | FAILED | NOAPP
    **_apps("app_stack", "Gosub", "Return"),  # Return(value) sets GOSUB_RETVAL
    **_apps("app_queue", "Queue"),
    **_apps("app_voicemail", "VoiceMail"),  # option u: unavailable greeting
    **_apps("pbx (core)", "Answer", "Goto", "GotoIf", "Hangup", "NoOp", "Set"),
    # also accepted by check() (the lab dialplan and common Asterisk 22 applications)
    **_apps("core / pbx_builtins", "Busy", "Congestion", "Progress", "Ringing", "Wait"),
    **_apps("core / pbx_builtins", "WaitExten", "BackGround", "GotoIfTime", "ExecIfTime"),
    **_apps("core / pbx_builtins", "SayDigits", "SayNumber", "SayAlpha", "SayPhonetic"),
    **_apps("core / pbx_builtins", "Incomplete", "ImportVar", "MSet", "RaiseException"),
    **_apps("res_agi", "EAGI", "DeadAGI"),
    **_apps("app_echo", "Echo"),
    **_apps("app_playback", "Playback"),
    **_apps("app_read", "Read"),
    **_apps("app_readexten", "ReadExten"),
    **_apps("app_senddtmf", "SendDTMF"),
    **_apps("app_userevent", "UserEvent"),
    **_apps("app_verbose", "Verbose", "Log"),
    **_apps("app_exec", "Exec", "ExecIf"),
    **_apps("app_stack", "GosubIf", "StackPop", "ReturnIf"),
    **_apps("app_while", "While", "EndWhile", "ExitWhile", "ContinueWhile"),
    **_apps("app_chanspy", "ExtenSpy"),
    **_apps("app_mixmonitor", "MixMonitor", "StopMixMonitor"),
    **_apps("app_queue", "AddQueueMember", "RemoveQueueMember", "PauseQueueMember"),
    **_apps("app_queue", "UnpauseQueueMember", "QueueLog", "QueueUpdate"),
    **_apps("app_voicemail", "VoiceMailMain", "VMAuthenticate"),
    **_apps("res_musiconhold", "MusicOnHold", "StartMusicOnHold", "StopMusicOnHold"),
    **_apps("app_record", "Record"),
    **_apps("app_playtones", "PlayTones", "StopPlayTones"),
    **_apps("app_transfer", "Transfer"),
    **_apps("app_originate", "Originate"),
    **_apps("app_system", "System", "TrySystem"),
    **_apps("app_confbridge", "ConfBridge"),
    **_apps("app_bridgewait", "BridgeWait"),
    **_apps("app_dial", "RetryDial"),
    **_apps("app_directed_pickup", "Pickup", "PickupChan"),
    **_apps("app_stasis", "Stasis"),
    **_apps("res_parking", "Park", "ParkedCall"),
    **_apps("app_authenticate", "Authenticate"),
    **_apps("app_directory", "Directory"),
    **_apps("app_softhangup", "SoftHangup"),
    **_apps("app_sayunixtime", "SayUnixTime"),
    **_apps("app_cdr", "NoCDR", "ResetCDR"),
    **_apps("app_channelredirect", "ChannelRedirect"),
    **_apps("app_bridgeaddchan", "BridgeAdd"),
    **_apps("app_stream_echo", "StreamEcho"),
}

# Applications an Asterisk 22 no longer has: check() names the replacement.
REMOVED_APPLICATIONS: Mapping[str, str] = {
    "Macro": "app_macro was removed in Asterisk 21; use Gosub",
    "MacroExclusive": "app_macro was removed in Asterisk 21; use Gosub",
    "MacroExit": "app_macro was removed in Asterisk 21; use Return",
    "MacroIf": "app_macro was removed in Asterisk 21; use GosubIf",
    "Monitor": "app_monitor was removed in Asterisk 21; use MixMonitor",
    "StopMonitor": "app_monitor was removed in Asterisk 21; use StopMixMonitor",
    "SIPAddHeader": "chan_sip was removed in Asterisk 21; use PJSIP_HEADER()",
    "SIPDtmfMode": "chan_sip was removed in Asterisk 21; use PJSIP_DTMF_MODE()",
}

# Dialplan functions the generated dialplan calls.
FUNCTIONS: Mapping[str, str] = {
    "CUT": f"func_cut: {_FUNCS}CUT (CUT(varname,char-delim,range-spec))",
    "FIELDQTY": f"func_strings: {_FUNCS}FIELDQTY (FIELDQTY(varname,delim))",
    "LOCAL": f"app_stack: {_FUNCS}LOCAL",
    "CALLERID": f"func_callerid: {_FUNCS}CALLERID",
}

# Channel variables the generated dialplan reads or sets (who sets them, and the values).
VARIABLES: Mapping[str, str] = {
    "AGISTATUS": f"res_agi: {_APPS}AGI (SUCCESS | FAILURE | NOTFOUND | HANGUP)",
    "TRYSTATUS": f"app_exec: {_APPS}TryExec (SUCCESS | FAILED | NOAPP)",
    "GOSUB_RETVAL": f"app_stack: {_APPS}Return",
    "QUEUESTATUS": "app_queue.c queue_results[]: UNKNOWN | TIMEOUT | JOINEMPTY | LEAVEEMPTY | "
    "JOINUNAVAIL | LEAVEUNAVAIL | FULL | CONTINUE (set when Queue() returns)",
    "QUEUE_PRIO": "app_queue.c queue_exec: the caller's priority when Queue() has none",
}

# queues.conf `strategy =` values: app_queue.c `strategies[]` (Asterisk 22).
QUEUE_STRATEGIES: frozenset[str] = frozenset(
    {
        "ringall",
        "leastrecent",
        "fewestcalls",
        "random",
        "rrmemory",
        "roundrobin",
        "linear",
        "wrandom",
        "rrordered",
    }
)

# Manager permission classes: main/manager.c `perms[]` (Asterisk 22), manager.conf.sample.
MANAGER_PERMISSIONS: frozenset[str] = frozenset(
    {
        "system",
        "call",
        "log",
        "verbose",
        "command",
        "agent",
        "user",
        "config",
        "dtmf",
        "reporting",
        "cdr",
        "dialplan",
        "originate",
        "agi",
        "cc",
        "aoc",
        "test",
        "security",
        "message",
        "all",
        "none",
    }
)

# What the callcenter's AMI user reads and writes, and why (least privilege).
AMI_READ: Mapping[str, str] = {
    "system": "FullyBooted, Shutdown, Reload",
    "call": "Newchannel, Newstate, Hangup, Dial*, Bridge*, MixMonitor*, ChanSpy*, "
    "DeviceStateChange, MusicOnHold*, OriginateResponse",
    "agent": "QueueCallerJoin/Leave/Abandon, QueueMember*, Agent*",
    "user": "UserEvent",
    "dtmf": "DTMFBegin, DTMFEnd",
    "dialplan": "Newexten, VarSet",
}
AMI_WRITE: Mapping[str, str] = {
    "call": "Hangup, Redirect, Setvar, Getvar, PlayDTMF, MixMonitor, Atxfer",
    "agent": "QueueAdd, QueueRemove, QueuePause, QueuePenalty",
    "user": "UserEvent",
    "originate": "Originate (callbacks, supervisor ChanSpy calls)",
    "reporting": "CoreShowChannels, CoreStatus, QueueSummary",
}

# Modules the generated configuration needs (source file names in the Asterisk 22 tree).
MODULES: Mapping[str, str] = {
    "pbx_config.so": "pbx/pbx_config.c: extensions.conf",
    "chan_pjsip.so": "channels/chan_pjsip.c",
    "res_pjsip.so": f"res/res_pjsip.c: {_PJSIP}",
    "res_pjsip_session.so": "res/res_pjsip_session.c",
    "res_pjsip_registrar.so": "res/res_pjsip_registrar.c: agents' phones REGISTER",
    "res_pjsip_authenticator_digest.so": "res/res_pjsip_authenticator_digest.c: type=auth",
    "res_pjsip_outbound_authenticator_digest.so": "res/: trunk outbound_auth",
    "res_pjsip_endpoint_identifier_ip.so": "res/: type=identify (the trunk)",
    "res_pjsip_transport_websocket.so": f"res/: protocol=wss ({_WEBRTC})",
    "res_http_websocket.so": f"res/res_http_websocket.c ({_WEBRTC})",
    "res_crypto.so": f"res/res_crypto.c ({_WEBRTC})",
    "res_srtp.so": "res/res_srtp.c: DTLS-SRTP media",
    "res_rtp_asterisk.so": "res/res_rtp_asterisk.c: RTP, ICE, DTLS",
    "res_agi.so": f"res/res_agi.c: {_APPS}AGI",
    "app_stack.so": f"apps/app_stack.c: {_APPS}Gosub",
    "app_dial.so": f"apps/app_dial.c: {_APPS}Dial",
    "app_exec.so": f"apps/app_exec.c: {_APPS}TryExec",
    "app_queue.so": f"apps/app_queue.c: {_APPS}Queue",
    "app_chanspy.so": f"apps/app_chanspy.c: {_APPS}ChanSpy",
    "app_voicemail.so": f"apps/app_voicemail.c: {_APPS}VoiceMail",
    "app_audiosocket.so": "apps/app_audiosocket.c (menuselect: not built by default)",
    "res_audiosocket.so": "res/res_audiosocket.c (needed by app_audiosocket)",
    "app_mixmonitor.so": f"apps/app_mixmonitor.c: {_APPS}MixMonitor",
    "res_musiconhold.so": "res/res_musiconhold.c: musiconhold.conf",
    "func_cut.so": f"funcs/func_cut.c: {_FUNCS}CUT",
    "func_strings.so": f"funcs/func_strings.c: {_FUNCS}FIELDQTY",
    "func_callerid.so": f"funcs/func_callerid.c: {_FUNCS}CALLERID",
    "format_wav.so": "formats/format_wav.c: the prompts' .wav (8 kHz signed linear)",
    "format_pcm.so": "formats/format_pcm.c: the prompts' .ulaw and .alaw",
}
MODULES_CONF_KEYS: frozenset[str] = frozenset(
    {"autoload", "preload", "load", "noload", "require", "preload-require"}
)  # configs/samples/modules.conf.sample

# manager.conf options: configs/samples/manager.conf.sample; lab manager.conf.
MANAGER_GENERAL_OPTIONS: frozenset[str] = frozenset(
    {
        "enabled",
        "webenabled",
        "port",
        "bindaddr",
        "tlsenable",
        "tlsbindaddr",
        "tlscertfile",
        "tlsprivatekey",
        "tlscipher",
        "allowmultiplelogin",
        "displayconnects",
        "timestampevents",
        "brokeneventsaction",
        "channelvars",
        "debug",
        "authtimeout",
        "authlimit",
        "httptimeout",
    }
)
MANAGER_USER_OPTIONS: frozenset[str] = frozenset(
    {
        "secret",
        "deny",
        "permit",
        "acl",
        "setvar",
        "eventfilter",
        "writetimeout",
        "displayconnects",
        "allowmultiplelogin",
        "read",
        "write",
    }
)

# http.conf [general]: configs/samples/http.conf.sample.
HTTP_OPTIONS: frozenset[str] = frozenset(
    {
        "servername",
        "enabled",
        "bindaddr",
        "bindport",
        "prefix",
        "sessionlimit",
        "session_inactivity",
        "session_keep_alive",
        "enablestatic",
        "redirect",
        "tlsenable",
        "tlsbindaddr",
        "tlscertfile",
        "tlsprivatekey",
        "tlscipher",
        "tlsdisablev1",
        "tlsdisablev11",
        "tlsdisablev12",
        "tlsservercipherorder",
    }
)

# musiconhold.conf class options: configs/samples/musiconhold.conf.sample; lab musiconhold.conf.
MOH_OPTIONS: frozenset[str] = frozenset(
    {"mode", "directory", "sort", "application", "format", "digit", "announcement", "kill"}
)

# queues.conf queue options written for the fallback queue: lab queues.conf.
QUEUE_OPTIONS_USED: Mapping[str, str] = {
    name: _LAB
    for name in (
        "musicclass",
        "strategy",
        "timeout",
        "retry",
        "wrapuptime",
        "maxlen",
        "joinempty",
        "leavewhenempty",
        "ringinuse",
        "announce-frequency",
        "member",
    )
}

# pjsip.conf options by object type: res_pjsip configuration reference (Asterisk 22), the
# WebRTC guide for the wss transport and `webrtc = yes`, the lab pjsip.conf.
PJSIP_OPTIONS: Mapping[str, frozenset[str]] = {
    "global": frozenset(
        {
            "type",
            "user_agent",
            "max_forwards",
            "keep_alive_interval",
            "default_outbound_endpoint",
            "debug",
            "endpoint_identifier_order",
            "default_from_user",
            "default_realm",
            "mwi_tps_queue_high",
            "unidentified_request_count",
            "unidentified_request_period",
            "norefersub",
            "allow_sending_180_after_183",
            "taskprocessor_overload_trigger",
        }
    ),
    "transport": frozenset(
        {
            "type",
            "protocol",
            "bind",
            "cert_file",
            "priv_key_file",
            "ca_list_file",
            "ca_list_path",
            "cipher",
            "method",
            "verify_client",
            "verify_server",
            "require_client_cert",
            "external_media_address",
            "external_signaling_address",
            "external_signaling_port",
            "local_net",
            "tos",
            "cos",
            "allow_reload",
            "symmetric_transport",
            "websocket_write_timeout",
            "async_operations",
            "password",
            "domain",
        }
    ),
    "endpoint": frozenset(
        {
            "type",
            "transport",
            "context",
            "disallow",
            "allow",
            "auth",
            "outbound_auth",
            "aors",
            "callerid",
            "callerid_privacy",
            "callerid_tag",
            "dtmf_mode",
            "media_address",
            "bind_rtp_to_media_address",
            "direct_media",
            "rtp_symmetric",
            "force_rport",
            "rewrite_contact",
            "ice_support",
            "use_avpf",
            "media_encryption",
            "media_encryption_optimistic",
            "media_use_received_transport",
            "rtcp_mux",
            "webrtc",
            "dtls_cert_file",
            "dtls_private_key",
            "dtls_ca_file",
            "dtls_ca_path",
            "dtls_verify",
            "dtls_setup",
            "dtls_rekey",
            "dtls_fingerprint",
            "dtls_auto_generate_cert",
            "dtls_cipher",
            "from_domain",
            "from_user",
            "language",
            "mailboxes",
            "moh_suggest",
            "trust_id_inbound",
            "trust_id_outbound",
            "send_pai",
            "send_rpid",
            "device_state_busy_at",
            "max_audio_streams",
            "max_video_streams",
            "bundle",
            "timers",
            "identify_by",
            "allow_subscribe",
            "tone_zone",
            "rtp_timeout",
            "rtp_timeout_hold",
            "named_call_group",
            "named_pickup_group",
            "call_group",
            "pickup_group",
            "set_var",
            "accountcode",
            "direct_media_method",
            "connected_line_method",
            "inband_progress",
            "100rel",
            "asymmetric_rtp_codec",
            "sdp_session",
            "sdp_owner",
            "t38_udptl",
            "fax_detect",
        }
    ),
    "auth": frozenset({"type", "auth_type", "username", "password", "md5_cred", "realm"}),
    "aor": frozenset(
        {
            "type",
            "contact",
            "max_contacts",
            "remove_existing",
            "remove_unavailable",
            "qualify_frequency",
            "qualify_timeout",
            "authenticate_qualify",
            "default_expiration",
            "minimum_expiration",
            "maximum_expiration",
            "mailboxes",
            "outbound_proxy",
            "support_path",
        }
    ),
    "identify": frozenset({"type", "endpoint", "match", "match_header", "srv_lookups"}),
    "registration": frozenset(
        {
            "type",
            "server_uri",
            "client_uri",
            "contact_user",
            "outbound_auth",
            "retry_interval",
            "forbidden_retry_interval",
            "fatal_retry_interval",
            "expiration",
            "transport",
            "line",
            "endpoint",
            "auth_rejection_permanent",
            "max_retries",
            "outbound_proxy",
        }
    ),
    "acl": frozenset({"type", "permit", "deny", "acl", "contact_permit", "contact_deny"}),
    "contact": frozenset({"type", "uri", "qualify_frequency"}),
    "domain_alias": frozenset({"type", "domain"}),
    "system": frozenset(
        {"type", "timer_t1", "timer_b", "compact_headers", "threadpool_initial_size"}
    ),
}

# Secret-bearing keys by file: check() reports them empty or still a placeholder.
SECRET_KEYS: Mapping[str, frozenset[str]] = {
    "manager.conf": frozenset({"secret"}),
    "pjsip.conf": frozenset({"password"}),
}
