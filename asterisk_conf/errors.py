"""The asterisk_conf exception hierarchy: each error has a stable `error_id` slug."""

from __future__ import annotations


class AsteriskConfError(Exception):
    """Base of every error the Asterisk configuration generator raises."""

    error_id = "asterisk-conf-error"


class InvalidDeployment(AsteriskConfError):
    """A `DeploymentConf` value (or a secret) that cannot be written into Asterisk's files."""

    error_id = "asterisk-conf-invalid"


class OutputExists(AsteriskConfError):
    """`write()` found a file it would overwrite and was not told to."""

    error_id = "asterisk-conf-exists"


class TemplateError(AsteriskConfError):
    """A packaged template names a value the generator does not provide (a bug in this package)."""

    error_id = "asterisk-conf-template"
