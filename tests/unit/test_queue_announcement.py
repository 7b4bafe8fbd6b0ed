"""What a waiting caller hears: position and expected wait, in the call's language."""

from __future__ import annotations

import pytest

from ivr.adapters.ivr_route import queue_announcement


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "You are number 3 in the queue. The expected wait is about 2 minutes."),
        (
            "fr",
            "Vous êtes numéro 3 dans la file d'attente. L'attente estimée est d'environ 2 minutes.",
        ),
        ("ko", "고객님의 대기 순서는 3번입니다. 예상 대기 시간은 약 2분입니다."),
        ("de", "You are number 3 in the queue. The expected wait is about 2 minutes."),
    ],
)
def test_given_a_language_then_position_and_wait_are_said_in_it_or_in_english(
    language: str, expected: str
) -> None:
    assert queue_announcement(3, 61.0, language, "") == expected


def test_given_no_staffed_agent_then_no_wait_is_promised_and_the_callback_key_is_offered() -> None:
    text = queue_announcement(1, None, "ko", "5")
    assert "모든 상담원이 통화 중" in text
    assert "5번" in text
