"""Asterisk configuration templates and the generator behind `callcenter asterisk-conf`."""

from __future__ import annotations

from asterisk_conf.check import check
from asterisk_conf.errors import AsteriskConfError, InvalidDeployment, OutputExists, TemplateError
from asterisk_conf.generate import generate, missing_secrets, placeholder, secret_names
from asterisk_conf.model import AgentEndpoint, DeploymentConf, EndpointKind, Problem
from asterisk_conf.output import write

__all__ = [
    "AgentEndpoint",
    "AsteriskConfError",
    "DeploymentConf",
    "EndpointKind",
    "InvalidDeployment",
    "OutputExists",
    "Problem",
    "TemplateError",
    "check",
    "generate",
    "missing_secrets",
    "placeholder",
    "secret_names",
    "write",
]
