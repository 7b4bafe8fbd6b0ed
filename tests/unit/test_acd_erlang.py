"""Erlang C against the worked examples of callcenter-anchors.md section c."""

from __future__ import annotations

import math

import pytest

from acd.domain.erlang import agents_needed, erlang_b, erlang_c, predict


@pytest.mark.parametrize(
    ("agents", "p_wait", "asa", "service_level"),
    [(50, 0.69, 83.3, 0.39), (52, 0.47, 28.0, 0.64), (55, 0.24, 8.2, 0.85), (58, 0.11, 2.7, 0.94)],
)
def test_the_classic_example_matches_the_published_table(
    agents: int, p_wait: float, asa: float, service_level: float
) -> None:
    prediction = predict(agents, 360 / 1800, 240, threshold=15)
    assert prediction.load == pytest.approx(48)
    assert prediction.p_wait == pytest.approx(p_wait, abs=0.005)
    assert prediction.asa == pytest.approx(asa, abs=0.05)
    assert prediction.service_level == pytest.approx(service_level, abs=0.005)


def test_the_small_team_example_needs_eight_agents_for_80_percent_in_20_s() -> None:
    assert predict(7, 100 / 3600, 180, 20).asa == pytest.approx(29.2, abs=0.1)
    assert agents_needed(100 / 3600, 180, target=0.8, threshold=20) == 8


def test_an_overloaded_queue_always_waits_forever() -> None:
    prediction = predict(5, 1.0, 10)
    assert prediction.p_wait == 1.0
    assert math.isinf(prediction.asa)
    assert prediction.service_level == 0.0


def test_large_centers_do_not_overflow() -> None:
    assert 0 < erlang_c(5000, 4900) < 1
    assert 0 < erlang_b(5000, 4900) < 1


def test_erlang_b_for_one_server_is_the_textbook_value() -> None:
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
