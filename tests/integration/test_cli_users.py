"""`callcenter users add/list` on a real SQLite database, then signing in to the web app as them.

The password comes from CALLCENTER_NEW_USER_PASSWORD or the prompt (asked twice); it never
appears in the command's output.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent_console.app import create_app
from agent_console.state import WebConfig
from callcenter.cli import main
from callcenter.users_cmd import PASSWORD_ENV
from tickets.db import open_database

PASSWORD = "a long enough passphrase"


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    monkeypatch.setenv("CALLCENTER_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    return url


def test_given_the_password_in_the_environment_when_added_then_listed_and_never_printed(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert main(["users", "add", "Root", "--role", "admin", "--name", "The Admin"]) == 0
    assert main(["users", "add", "ann", "--role", "agent"]) == 0
    assert main(["users", "list"]) == 0
    out, err = capsys.readouterr()
    assert "user root added (admin)" in out
    assert "user ann added (agent)" in out
    assert "ann\tagent\tactive\tann" in out
    assert "root\tadmin\tactive\tThe Admin" in out
    assert "2 user(s)" in out
    assert PASSWORD not in out + err


def test_given_a_taken_name_when_added_again_then_refused_and_the_first_user_kept(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert main(["users", "add", "ann", "--role", "agent"]) == 0
    assert main(["users", "add", "ANN", "--role", "admin"]) == 1
    assert "user 'ann' exists" in capsys.readouterr().err
    assert main(["users", "list"]) == 0
    assert "ann\tagent\tactive" in capsys.readouterr().out


def test_given_a_bad_role_or_name_or_weak_password_then_refused_naming_why(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with pytest.raises(SystemExit) as exited:
        main(["users", "add", "ann", "--role", "boss"])
    assert exited.value.code == 2
    assert "invalid choice: 'boss'" in capsys.readouterr().err
    assert main(["users", "add", "not a name", "--role", "agent"]) == 1
    assert "a user name is" in capsys.readouterr().err
    monkeypatch.setenv(PASSWORD_ENV, "short")
    assert main(["users", "add", "ann", "--role", "agent"]) == 1
    err = capsys.readouterr().err
    assert "a password has 10 to 1024 characters" in err
    assert "short" not in err  # the refused password is not echoed either
    assert main(["users", "list"]) == 0
    assert "0 user(s)" in capsys.readouterr().out


def test_given_no_variable_when_added_then_the_password_is_asked_twice_and_must_match(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    answers = iter([PASSWORD, "something else entirely"])
    prompts: list[str] = []

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", ask)
    assert main(["users", "add", "ann", "--role", "supervisor"]) == 1
    assert "the two passwords differ" in capsys.readouterr().err
    assert prompts == ["Password: ", "Password again: "]
    answers = iter([PASSWORD, PASSWORD])
    assert main(["users", "add", "ann", "--role", "supervisor"]) == 0
    out, err = capsys.readouterr()
    assert "user ann added (supervisor)" in out
    assert PASSWORD not in out + err


def test_given_a_database_never_migrated_then_refused_pointing_at_db_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CALLCENTER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'new.db'}")
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert main(["users", "add", "root", "--role", "admin"]) == 1
    assert "callcenter db upgrade" in capsys.readouterr().err


async def test_given_the_first_admin_added_by_the_cli_then_they_sign_in_to_the_web_app(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    assert await asyncio.to_thread(main, ["users", "add", "root", "--role", "admin"]) == 0
    database = open_database(database_url)
    app = create_app(
        WebConfig(secret="s" * 32, cookie_secure=False), database=database, run_webhooks=False
    )
    try:
        async with TestClient(TestServer(app)) as client:
            wrong = await client.post("/login", json={"username": "root", "password": "nope"})
            assert wrong.status == 401
            signed_in = await client.post("/login", json={"username": "root", "password": PASSWORD})
            assert signed_in.status in (200, 303)
            me = await client.get("/api/me")
            assert me.status == 200
            assert await me.json() == {"username": "root", "role": "admin", "via": "session"}
    finally:
        await database.close()
