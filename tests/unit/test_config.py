"""Settings: TOML overlaid by CALLCENTER_* variables, failing fast with the key's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.config import Secret, SettingsError, load_settings
from callcenter.logmask import mask_email, mask_number


def test_given_nothing_when_loaded_then_defaults_are_the_documented_ports() -> None:
    settings = load_settings(environ={})
    assert (settings.ami.port, settings.agi.port, settings.audiosocket.port) == (5038, 4573, 4574)
    assert settings.web.port == 8080
    assert settings.database.url.value.startswith("sqlite+aiosqlite://")
    assert not settings.redis.url


def test_given_toml_and_env_when_loaded_then_env_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text('[ami]\nhost = "10.0.0.5"\nport = 5039\n[agi]\ncommand_timeout = 12.5\n')
    settings = load_settings(path, environ={"CALLCENTER_AMI_PORT": "6000"})
    assert settings.ami.host == "10.0.0.5"
    assert settings.ami.port == 6000
    assert settings.agi.command_timeout == 12.5


def test_given_config_env_variable_when_loaded_then_that_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text("[node]\nasterisk_id = 'pbx-2'\n")
    settings = load_settings(environ={"CALLCENTER_CONFIG": str(path)})
    assert settings.node.asterisk_id == "pbx-2"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"CALLCENTER_AMI_PROT": "1"}, "ami.prot"),
        ({"CALLCENTER_AMY_PORT": "1"}, "amy"),
        ({"CALLCENTER_AMI_PORT": "fifty"}, "ami.port"),
        ({"CALLCENTER_AMI_PORT": "70000"}, "ami.port"),
        ({"CALLCENTER_EMAIL_RELAY_PORT": "70000"}, "email.relay_port"),
        ({"CALLCENTER_EMAIL_IMAP_PORT": "-1"}, "email.imap_port"),
        ({"CALLCENTER_AGI_COMMAND_TIMEOUT": "-1"}, "agi.command_timeout"),
        ({"CALLCENTER_LOG_JSON": "maybe"}, "log.json"),
        ({"CALLCENTER_LOG_LEVEL": "LOUD"}, "log.level"),
        ({"CALLCENTER_AMI": "x"}, "CALLCENTER_AMI"),
    ],
)
def test_given_bad_key_or_value_when_loaded_then_error_names_the_key(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        load_settings(environ=environ)


def test_given_unknown_key_in_file_when_loaded_then_error_names_it(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text("[web]\nhots = 'x'\n")
    with pytest.raises(SettingsError, match=r"web\.hots: unknown key"):
        load_settings(path, environ={})


def test_given_broken_toml_when_loaded_then_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text("[ami\n")
    with pytest.raises(SettingsError, match=r"cc\.toml"):
        load_settings(path, environ={})


def test_given_a_secret_when_printed_then_its_value_never_shows() -> None:
    settings = load_settings(environ={"CALLCENTER_AMI_SECRET": "hunter2-very-secret"})
    assert settings.ami.secret == Secret("hunter2-very-secret")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.ami.secret)


def test_given_a_bad_secret_value_type_when_loaded_then_the_error_hides_it(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text("[redis]\ntimeout = 'soon'\n")
    with pytest.raises(SettingsError, match=r"redis\.timeout"):
        load_settings(path, environ={})


def test_given_test_tool_variables_when_loaded_then_they_are_ignored() -> None:
    settings = load_settings(
        environ={"CALLCENTER_TEST_REDIS_URL": "redis://x", "CALLCENTER_NEW_USER_PASSWORD": "pw"}
    )
    assert not settings.redis.url


def test_given_a_caller_number_when_masked_then_only_last_four_digits_remain() -> None:
    assert mask_number("+15551230001") == "********0001"
    assert mask_number("123") == "***"
    assert mask_email("alice@example.com") == "a***@example.com"
    assert mask_email("nonsense") == "********"


def test_given_lists_in_toml_or_env_when_loaded_then_they_become_tuples(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text('[asterisk]\nagents = ["1001:webrtc:Alice", "1002"]\n')
    settings = load_settings(
        path, environ={"CALLCENTER_ASTERISK_INBOUND": "+15551230000=main, _X.=sales"}
    )
    assert settings.asterisk.agents == ("1001:webrtc:Alice", "1002")
    assert settings.asterisk.inbound == ("+15551230000=main", "_X.=sales")


def test_given_a_list_of_numbers_when_loaded_then_error_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text("[asterisk]\nagents = [1001]\n")
    with pytest.raises(SettingsError, match=r"asterisk\.agents"):
        load_settings(path, environ={})
