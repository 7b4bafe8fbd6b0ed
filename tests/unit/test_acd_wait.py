"""Expected wait: position x AHT / staffed agents, free agents serving the first places."""

from __future__ import annotations

import pytest

from acd.config import AcdConfigError, parse_acd_config
from acd.domain.wait import HandleTimes, InvalidWaitInput, expected_wait, rounded_minutes


def test_given_all_agents_busy_when_third_in_line_then_wait_is_three_handle_times_over_agents() -> (
    None
):
    estimate = expected_wait(3, handle_time=120.0, staffed=2)
    assert estimate.seconds == pytest.approx(180.0)
    assert estimate.position == 3


def test_given_free_agents_when_within_their_number_then_no_wait() -> None:
    assert expected_wait(2, handle_time=120.0, staffed=4, ready=2).seconds == 0.0
    assert expected_wait(3, handle_time=120.0, staffed=4, ready=2).seconds == pytest.approx(30.0)


def test_given_nobody_staffed_then_the_wait_is_unknown() -> None:
    assert expected_wait(1, handle_time=60.0, staffed=0).seconds is None


@pytest.mark.parametrize(
    ("position", "staffed", "ready", "aht"),
    [(0, 1, 0, 1.0), (1, -1, 0, 1.0), (1, 1, -1, 1.0), (1, 1, 0, float("nan"))],
)
def test_given_impossible_numbers_then_a_clear_error(
    position: int, staffed: int, ready: int, aht: float
) -> None:
    with pytest.raises(InvalidWaitInput):
        expected_wait(position, handle_time=aht, staffed=staffed, ready=ready)


def test_given_a_window_then_only_the_recent_handle_times_count_and_junk_is_ignored() -> None:
    times = HandleTimes(window=2, values=[100.0, 200.0])
    times.add(400.0)
    times.add(-5.0)
    times.add(float("inf"))
    assert len(times) == 2
    assert times.mean(default=1.0) == pytest.approx(300.0)
    assert HandleTimes().mean(default=42.0) == 42.0


def test_minutes_are_rounded_up_and_never_zero() -> None:
    assert [rounded_minutes(s) for s in (0.0, 59.0, 61.0, 120.0)] == [1, 1, 2, 2]


def test_given_the_example_file_then_it_loads(tmp_path: object) -> None:
    from acd.config import EXAMPLE, load_acd_config

    config = load_acd_config(EXAMPLE)
    assert config.queue("support").callback_key == "5"
    assert config.endpoint("1001") == "PJSIP/agent-1001"
    assert config.endpoint("9999") == "PJSIP/9999"
    assert config.service.offer_margin == 15.0


def test_given_no_offer_margin_then_the_default_applies_and_a_given_one_is_kept() -> None:
    assert parse_acd_config({}).service.offer_margin == 15.0
    assert parse_acd_config({"service": {"offer_margin": 2.5}}).service.offer_margin == 2.5


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"queues": [{"id": "q", "relax": [{"after": -1}]}]}, "queues[0].relax[0].after"),
        ({"queues": [{"id": "q", "colour": "red"}]}, "queues[0].colour"),
        ({"queues": [{"id": "q", "overflow": {"after": 5, "to": "nowhere"}}]}, "overflow.to"),
        ({"agents": [{"id": "a", "skills": {"x": 9}}]}, "agents[0]"),
        ({"agents": [{"id": "a", "endpoint": "nothing"}]}, "agents[0].endpoint"),
        ({"service": {"ring_timeout": 0}}, "service.ring_timeout"),
        ({"service": {"offer_margin": 0}}, "service.offer_margin"),
        ({"service": {"offer_margin": -3}}, "service.offer_margin"),
        ({"service": {"offer_margin": "soon"}}, "service.offer_margin"),
        ({"service": {"offer_margin": True}}, "service.offer_margin"),
        ({"service": {"quiet_limit": 0}}, "service.quiet_limit"),
        ({"queues": [{"id": "q"}, {"id": "q"}]}, "queues[1].id"),
    ],
)
def test_given_a_bad_config_then_the_error_names_the_key(data: object, key: str) -> None:
    with pytest.raises(AcdConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_acd_config(data)
