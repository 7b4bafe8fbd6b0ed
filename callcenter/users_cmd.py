"""The ``callcenter users`` sub-commands: add a console user (the first admin) and list users.

``callcenter users add NAME --role admin|supervisor|agent [--name "Display Name"]`` reads the
password from ``CALLCENTER_NEW_USER_PASSWORD`` or, without it, asks for it twice on the terminal
(never echoed). The password is never printed or logged; the user's creation is audited with the
actor ``cli``. The records database must be at the newest schema (``callcenter db upgrade``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, TextIO

from callcenter.config import Settings, SettingsError, load_settings
from tickets.users import Role

if TYPE_CHECKING:
    from tickets.db import Database

__all__ = ["PASSWORD_ENV", "add_parser", "run"]

PASSWORD_ENV = "CALLCENTER_NEW_USER_PASSWORD"
ACTOR = "cli"

Ask = Callable[[str], str]


class _Refused(Exception):
    """The command cannot go on; the message says why."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``users`` (``add``, ``list``) on the CLI's sub-parsers."""
    users = sub.add_parser("users", help="console users: agents, supervisors, admins")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser(
        "add",
        help=f"add a user; the password comes from ${PASSWORD_ENV} or is asked for twice",
    )
    add.add_argument("username", metavar="USERNAME", help="a-z, 0-9, '.', '_', '-' (<= 64)")
    add.add_argument("--role", required=True, choices=[str(r) for r in Role])
    add.add_argument("--name", default="", help="display name (default: the user name)")
    users_sub.add_parser("list", help="list the users: name, role, active, display name")


def run(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    ask: Ask | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``users add`` / ``users list``: 0 on success, 1 when refused, 2 for bad settings."""
    env = os.environ if environ is None else environ
    out = out or sys.stdout
    err = err or sys.stderr
    # the new user's password is not a setting: keep it away from the settings loader
    try:
        settings = load_settings(
            getattr(args, "config", None),
            {k: v for k, v in env.items() if k != PASSWORD_ENV},
        )
    except SettingsError as error:
        print(f"callcenter: bad settings: {error}", file=err)
        return 2
    try:
        if args.users_command == "add":
            password = _password(env, ask or getpass.getpass)
            return asyncio.run(_add(settings, args.username, password, args.role, args.name, out))
        return asyncio.run(_list(settings, out))
    except _Refused as error:
        print(f"callcenter: {error}", file=err)
        return 1


def _password(env: Mapping[str, str], ask: Ask) -> str:
    given = env.get(PASSWORD_ENV, "")
    if given:
        return given
    try:
        first = ask("Password: ")
        second = ask("Password again: ")
    except (EOFError, KeyboardInterrupt) as error:
        raise _Refused(f"no password: set {PASSWORD_ENV} or type it at the prompt") from error
    if first != second:
        raise _Refused("the two passwords differ; nothing was changed")
    return first


async def _add(
    settings: Settings, username: str, password: str, role: str, name: str, out: TextIO
) -> int:
    from tickets.users import UserDirectory, UserError

    async with _records(settings) as records:
        try:
            async with records.sessions.begin() as session:
                user = await UserDirectory(session).add(
                    username, password, role, actor=ACTOR, display_name=name
                )
        except UserError as error:
            raise _Refused(f"user not added: {error}") from error
    print(f"user {user.username} added ({user.role})", file=out)
    return 0


async def _list(settings: Settings, out: TextIO) -> int:
    from sqlalchemy import select

    from tickets.users import User

    async with _records(settings) as records, records.sessions() as session:
        users = (await session.execute(select(User).order_by(User.username))).scalars().all()
    for user in users:
        state = "active" if user.active else "disabled"
        print(f"{user.username}\t{user.role}\t{state}\t{user.display_name}", file=out)
    print(f"{len(users)} user(s)", file=out)
    return 0


@contextlib.asynccontextmanager
async def _records(settings: Settings) -> AsyncIterator[Database]:
    """The records database, checked to be at the newest schema; closed on exit."""
    from callcenter.services import StartupError, open_records

    try:
        records = await open_records(settings, migrate=False)
    except StartupError as error:
        raise _Refused(str(error)) from error
    try:
        yield records
    finally:
        await records.close()
