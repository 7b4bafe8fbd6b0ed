"""A private Dovecot IMAP server for tests: generated config in a temp dir, own port, no systemd.

Plaintext LOGIN on 127.0.0.1 (and IMAPS with a self-signed certificate when openssl is
there), without the delays Dovecot adds after a failed login,
one passwd-file per user (re-read by Dovecot when it changes, so a test can fix a wrong password
while a client retries), Maildir under the temp dir. Run as
root, Dovecot insists that its login and mail processes are not root: they run as ``dovenull``
and ``dovecot`` (the accounts the package creates), so the directory is made in /tmp, which
they can traverse, rather than under pytest's private temp root. Messages are put in by IMAP
APPEND and read back by IMAP, like any mail client.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DOVECOT_BINARY = "/usr/sbin/dovecot"
START_TIMEOUT = 15.0


def dovecot_binary() -> str | None:
    """The dovecot binary (Debian's ``dovecot-imapd`` package puts it in /usr/sbin), or None."""
    if os.access(DOVECOT_BINARY, os.X_OK):
        return DOVECOT_BINARY
    return shutil.which("dovecot")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _account(*names: str) -> pwd.struct_passwd:
    for name in names:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(f"none of the accounts {names} exists")


class Dovecot:
    """One dovecot master process (``dovecot -F``) that a test can stop and start again."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="callcenter-dovecot-"))
        self.root.chmod(0o711)
        self.port = _free_port()
        self.tls_port = _free_port()
        self.cert: Path | None = None  # the self-signed certificate of the TLS port, if any
        self.passwd = self.root / "users"
        self.users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_config()

    def _self_signed(self) -> str:
        """``ssl`` settings: a certificate for 127.0.0.1 made with openssl, or TLS off."""
        openssl = shutil.which("openssl")
        if openssl is None:
            self.tls_port = 0
            return "ssl = no"
        cert, key = self.root / "cert.pem", self.root / "key.pem"
        subprocess.run(
            [
                *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
                *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            ],
            check=True,
            capture_output=True,
        )
        self.cert = cert
        return f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"

    def _write_config(self) -> None:
        mail = self.root / "mail"
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir()
        self.passwd.mkdir()
        self.passwd.chmod(0o755)
        if os.geteuid() == 0:
            login = _account("dovenull", "nobody").pw_name
            owner = _account("dovecot", "nobody")
            os.chown(mail, owner.pw_uid, owner.pw_gid)
            internal, extra = owner.pw_name, ""
            group = grp.getgrgid(owner.pw_gid).gr_name
        else:  # an ordinary user runs every process as itself, without chroots
            owner = pwd.getpwuid(os.geteuid())
            login = internal = owner.pw_name
            group = grp.getgrgid(owner.pw_gid).gr_name
            extra = "service imap-login {\n  chroot =\n}\n"
        ssl = self._self_signed()
        (self.root / "dovecot.conf").write_text(
            f"""base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = callcenter-test-{self.port}
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
log_path = {self.root}/dovecot.log
default_login_user = {login}
default_internal_user = {internal}
default_internal_group = {group}
first_valid_uid = {owner.pw_uid}
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.passwd}/%u
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={mail}/%u
}}
service anvil {{
  {"" if os.geteuid() == 0 else "chroot ="}
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
  }}
}}
{extra}"""
        )

    # -- process --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        self.stop()  # reaps a master that died by itself
        conf = self.root / "dovecot.conf"
        self._proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: stop() ends every child with it
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # bounded: until the listener answers with its greeting
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"dovecot exited at start: {err}{self.log()}")
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imaplib.IMAP4("127.0.0.1", self.port, timeout=2).shutdown()
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot not listening within {START_TIMEOUT} s: {self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # like a crash: open sessions drop at once
        proc.wait(timeout=START_TIMEOUT)
        if proc.stderr is not None:
            proc.stderr.close()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- users and mail -------------------------------------------------------------------------
    def set_user(self, name: str, password: str) -> None:
        """Add a user or change its password (its own passwd-file, which Dovecot re-reads when
        it changes; a change within the second of the last read is seen a second later)."""
        self.users[name] = password
        path = self.passwd / name
        tmp = path.with_suffix(".new")
        tmp.write_text(f"{name}:{{PLAIN}}{password}::::::nodelay=y\n")
        tmp.chmod(0o644)
        tmp.replace(path)

    @contextlib.contextmanager
    def client(self, user: str) -> Iterator[imaplib.IMAP4]:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        try:
            imap.login(user, self.users[user])
            yield imap
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imap.logout()
            with contextlib.suppress(OSError):
                imap.shutdown()  # logout does not when its command failed

    def append(self, user: str, raw: bytes, folder: str = "INBOX", flags: str = "") -> int:
        """APPEND ``raw`` to ``folder``; the new message's UID (from APPENDUID)."""
        with self.client(user) as imap:
            status, data = imap.append(folder, f"({flags})" if flags else None, None, raw)
        assert status == "OK", (status, data)
        found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
        assert found is not None, data
        return int(found.group(1))

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, set[str]]:
        """Every message in ``folder``: UID -> its flags."""
        with self.client(user) as imap:
            status, _ = imap.select(folder, readonly=True)
            assert status == "OK", folder
            status, data = imap.uid("FETCH", "1:*", "(FLAGS)")
        out: dict[int, set[str]] = {}
        for line in data:
            if not isinstance(line, bytes):
                continue
            found = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line) or re.search(
                rb"FLAGS \(([^)]*)\) UID (\d+)", line
            )
            if found is None:
                continue
            first, second = found.group(1), found.group(2)
            uid, flags = (first, second) if first.isdigit() else (second, first)
            out[int(uid)] = set(flags.decode().split()) - {"\\Recent"}
        return out

    def create_folder(self, user: str, folder: str) -> None:
        with self.client(user) as imap:
            status, data = imap.create(folder)
        assert status == "OK", data
