"""`callcenter asterisk-conf`: maps settings and IVR flows onto the generator's deployment;
writes or checks.

The IVR flows matter to the dialplan: every inbound number names a flow that must exist, and
every queue a flow's queue step names becomes a queues.conf queue that `cc-queue` hands the
call to. With an ACD (`acd.config_file`), every `PJSIP/<name>` endpoint it dials its agents on
must be one of the agent phones written here: `--out` warns, `--check` reports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from acd.config import AcdConfigError, load_acd_config
from asterisk_conf import (
    AgentEndpoint,
    AsteriskConfError,
    DeploymentConf,
    EndpointKind,
    check,
    generate,
    missing_secrets,
    secret_names,
    write,
)
from callcenter.config import Settings, SettingsError
from ivr.domain.flow import Flow, QueueStep
from ivr.domain.flow import Problem as FlowProblem
from ivr.service import FLOWS_DIR, load_flows


def deployment_from_settings(
    settings: Settings, flows: Mapping[str, Flow] | None = None
) -> DeploymentConf:
    """The generator's view of this deployment; bad list entries raise SettingsError.

    With `flows`, an inbound number whose flow is not among them raises SettingsError, and the
    flows' queues become the deployment's queues.
    """
    ast = settings.asterisk
    controllers = tuple(_controller(text) for text in ast.controllers) or (
        (settings.agi.host, settings.agi.port, settings.audiosocket.port),
    )
    inbound = tuple(_inbound(text) for text in ast.inbound)
    queues: tuple[str, ...] = ()
    if flows is not None:
        for number, flow in inbound:
            if flow not in flows:
                raise SettingsError(
                    f"asterisk.inbound: {number}={flow}: no IVR flow named {flow!r} "
                    f"(the flows are: {', '.join(sorted(flows)) or 'none'})"
                )
        queues = flow_queues(flows)
    return DeploymentConf(
        acd_endpoints=_acd_endpoints(settings),
        ami_bind=ast.ami_bind,
        ami_port=settings.ami.port,
        ami_username=settings.ami.username,
        ami_permit=ast.ami_permit,
        controllers=controllers,
        inbound=inbound,
        queues=queues,
        agents=tuple(_agent(text) for text in ast.agents),
        trunk_name=ast.trunk_name,
        trunk_host=ast.trunk_host,
        trunk_username=ast.trunk_username,
        sip_bind=ast.sip_bind,
        http_bind=ast.http_bind,
        http_port=ast.http_port,
        tls_cert_file=ast.tls_cert_file,
        tls_key_file=ast.tls_key_file,
        moh_class=ast.moh_class,
        moh_dir=ast.moh_dir,
        fallback=ast.fallback,
        fallback_timeout=ast.fallback_timeout,
        agent_ring_timeout=ast.agent_ring_timeout,
        callback_timeout=ast.callback_timeout,
        callback_callerid=ast.callback_callerid,
    )


def _acd_endpoints(settings: Settings) -> tuple[str, ...]:
    """The endpoints the ACD dials its agents on (none without `acd.config_file`)."""
    if not settings.acd.config_file:
        return ()
    try:
        acd = load_acd_config(Path(settings.acd.config_file))
    except AcdConfigError as err:
        raise SettingsError(f"acd.config_file: {err}") from err
    return tuple(dict.fromkeys(agent.endpoint for agent in acd.agents.values()))


def flow_queues(flows: Mapping[str, Flow]) -> tuple[str, ...]:
    """The queues the flows' queue steps name, sorted, each once."""
    return tuple(
        sorted(
            {
                step.queue
                for flow in flows.values()
                for step in flow.steps.values()
                if isinstance(step, QueueStep)
            }
        )
    )


def settings_flows(
    settings: Settings, flows_dir: Path | None = None
) -> tuple[dict[str, Flow], list[FlowProblem]]:
    """The IVR flows the nodes serve (`ivr.flows_dir`, else the shipped ones), checked as the
    node checks them (`ivr.sounds_dirs`); `flows_dir` overrides the setting."""
    ivr = settings.ivr
    folder = flows_dir or (Path(ivr.flows_dir) if ivr.flows_dir else FLOWS_DIR)
    return load_flows(folder, tuple(Path(d) for d in ivr.sounds_dirs))


def _load_flows(settings: Settings, flows_dir: Path | None) -> Mapping[str, Flow] | None:
    """The flows, or None after printing every problem with its file and line."""
    flows, problems = settings_flows(settings, flows_dir)
    for problem in problems:
        print(f"callcenter asterisk-conf: {problem}", file=sys.stderr)
    return None if problems else flows


def _controller(text: str) -> tuple[str, int, int]:
    host, sep1, rest = text.rpartition(":")
    host2, sep2, agi = host.rpartition(":")
    if not (sep1 and sep2 and agi.isdigit() and rest.isdigit()):
        raise SettingsError(
            f"asterisk.controllers: {text!r}: expected host:agi_port:audiosocket_port"
        )
    return host2, int(agi), int(rest)


def _inbound(text: str) -> tuple[str, str]:
    number, sep, flow = text.partition("=")
    if not sep:
        raise SettingsError(f"asterisk.inbound: {text!r}: expected number=flow")
    return number.strip(), flow.strip()


def _agent(text: str) -> AgentEndpoint:
    parts = text.split(":")
    if len(parts) > 4:
        raise SettingsError(
            f"asterisk.agents: {text!r}: expected extension[:kind[:display name[:supervisor]]]"
        )
    kind = parts[1] if len(parts) > 1 and parts[1] else EndpointKind.WEBRTC
    try:
        return AgentEndpoint(
            extension=parts[0],
            kind=EndpointKind(kind),
            display_name=parts[2] if len(parts) > 2 else "",
            supervisor=len(parts) > 3 and parts[3] == "supervisor",
        )
    except ValueError as err:
        raise SettingsError(f"asterisk.agents: {text!r}: {err}") from err


def write_config(
    settings: Settings,
    out_dir: Path,
    *,
    overwrite: bool = False,
    flows_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> int:
    """Generate and write; secrets come from the environment, never from the settings file."""
    env = os.environ if environ is None else environ
    out = out or sys.stdout
    flows = _load_flows(settings, flows_dir)
    if flows is None:
        return 2
    try:
        conf = deployment_from_settings(settings, flows)
        secrets = {name: env[name] for name in secret_names(conf) if env.get(name)}
        files = generate(conf, secrets)
        paths = write(out_dir, files, overwrite=overwrite)
    except (AsteriskConfError, SettingsError) as err:
        print(f"callcenter asterisk-conf: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}", file=out)
    for name in missing_secrets(conf, secrets):
        print(f"warning: {name} is not set: a placeholder was written in its place", file=out)
    for endpoint in conf.missing_acd_endpoints:
        print(
            f"warning: the ACD dials {endpoint}, which is no agent phone here "
            "(asterisk.agents): its calls to that agent will fail",
            file=out,
        )
    return 0


def check_config(
    settings: Settings,
    conf_dir: Path,
    *,
    flows_dir: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Report problems in an existing configuration with file and line; exit 1 if any."""
    out = out or sys.stdout
    flows = _load_flows(settings, flows_dir)
    if flows is None:
        return 2
    try:
        expect = deployment_from_settings(settings, flows)
    except (AsteriskConfError, SettingsError) as err:
        print(f"callcenter asterisk-conf: {err}", file=sys.stderr)
        return 2
    problems = check(conf_dir, expect)
    for problem in problems:
        print(problem, file=out)
    print(f"{len(problems)} problem(s) in {conf_dir}", file=out)
    return 1 if problems else 0
