"""Checks on digits a caller keyed in: Luhn account numbers and help-desk ticket numbers."""

from __future__ import annotations

from ivr.domain.flow import Validation

#: Ticket numbers as the help desk issues them: 1 to 9 digits, no leading zero.
TICKET_MAX_DIGITS = 13  # the help desk's 2026-000042 is keyed as 2026000042 (up to 4 + 9)


def luhn_valid(digits: str) -> bool:
    """True if ``digits`` (at least 2 digits, nothing else) passes the Luhn mod-10 check."""
    if len(digits) < 2 or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def luhn_check_digit(payload: str) -> str:
    """The digit to append to ``payload`` so that the result passes the Luhn check."""
    for digit in "0123456789":
        if luhn_valid(payload + digit):
            return digit
    raise ValueError(f"not a digit string: {payload!r}")


def ticket_number_valid(digits: str) -> bool:
    """True for a plausible ticket number: 1-13 ASCII digits without a leading zero."""
    return (
        0 < len(digits) <= TICKET_MAX_DIGITS
        and digits.isascii()
        and digits.isdigit()
        and not digits.startswith("0")
    )


def digits_valid(digits: str, validation: Validation, min_digits: int, max_digits: int) -> bool:
    """True if ``digits`` has an allowed length, only 0-9, and passes ``validation``."""
    if not min_digits <= len(digits) <= max_digits:
        return False
    if not digits.isascii() or not digits.isdigit():
        return min_digits == 0 and digits == ""
    if validation is Validation.LUHN:
        return luhn_valid(digits)
    if validation is Validation.TICKET:
        return ticket_number_valid(digits)
    return True
