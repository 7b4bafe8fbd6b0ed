"""`callcenter simulate SCENARIO` end to end through the CLI entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from callcenter.cli import main

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_given_the_mmn_scenario_when_simulated_then_erlang_c_is_printed_beside_it(
    tmp_path: Path,
) -> None:
    short = tmp_path / "mmn.toml"
    text = (SCENARIOS / "mmn_single_skill.toml").read_text()
    short.write_text(text.replace("max_items = 20000", "max_items = 2000"))
    done = subprocess.run(
        [sys.executable, "-m", "callcenter.cli", "simulate", str(short), "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Erlang C support: N=3" in done.stdout
    assert "simulated" in done.stdout
    assert "100%" in done.stderr  # the progress bar goes to stderr, not into the report


def test_given_the_shipped_day_scenario_when_simulated_then_every_queue_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first_hour = tmp_path / "day.toml"
    text = (SCENARIOS / "multi_skill_day.toml").read_text()
    first_hour.write_text(text.replace('end = "20:00"', 'end = "08:30"'))
    assert main(["simulate", str(first_hour)]) == 0
    out = capsys.readouterr().out
    for queue in ("sales_en", "support_en", "support_fr", "billing", "chat", "email"):
        assert queue in out
    assert "not applicable (callers abandon" in out


def test_given_a_bad_scenario_when_simulated_then_the_error_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[simulation]\nmax_items = 10\n[[queues]]\nid = "q"\nchannel = "fax"\n')
    assert main(["simulate", str(bad)]) == 2
    assert "queues[0].channel" in capsys.readouterr().err
