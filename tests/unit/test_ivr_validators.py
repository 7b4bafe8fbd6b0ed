"""Digit validators: Luhn account numbers and ticket numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.domain.flow import Validation
from ivr.domain.validators import digits_valid, luhn_check_digit, luhn_valid, ticket_number_valid


@pytest.mark.parametrize("number", ["79927398713", "4539578763621486", "4111111111111111", "18"])
def test_known_luhn_numbers_pass(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["79927398710", "4111111111111112", "", "7", "12a4", "١٢"])
def test_wrong_or_malformed_luhn_numbers_fail(number: str) -> None:
    assert not luhn_valid(number)


@given(st.text(alphabet="0123456789", min_size=1, max_size=20))
def test_appending_the_check_digit_always_gives_a_valid_number(payload: str) -> None:
    assert luhn_valid(payload + luhn_check_digit(payload))


@given(st.text(alphabet="0123456789", min_size=1, max_size=20), st.integers(1, 9))
def test_changing_one_digit_always_breaks_the_luhn_check(payload: str, delta: int) -> None:
    number = payload + luhn_check_digit(payload)
    changed = str((int(number[0]) + delta) % 10) + number[1:]
    assert not luhn_valid(changed)


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("1", True),
        ("2026000042", True),  # the help desk's 2026-000042 as keyed on the phone
        ("2026123456789", True),
        ("20261234567890", False),
        ("0123", False),
        ("", False),
    ],
)
def test_ticket_numbers_have_one_to_thirteen_digits_and_no_leading_zero(
    digits: str, valid: bool
) -> None:
    assert ticket_number_valid(digits) is valid


def test_given_length_limits_when_digits_checked_then_length_and_rule_both_apply() -> None:
    assert digits_valid("79927398713", Validation.LUHN, 8, 16)
    assert not digits_valid("79927398713", Validation.LUHN, 12, 16)
    assert not digits_valid("79927398710", Validation.LUHN, 8, 16)
    assert digits_valid("0042", Validation.DIGITS, 1, 4)
    assert not digits_valid("00*2", Validation.DIGITS, 1, 4)
