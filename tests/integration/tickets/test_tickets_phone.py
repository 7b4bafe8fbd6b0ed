"""Caller numbers in every format become E.164 or a clear anonymous/invalid outcome."""

from __future__ import annotations

import pytest

from tickets.phone import PhoneKind, normalise


@pytest.mark.parametrize(
    ("raw", "region", "kind", "e164", "extension"),
    [
        ("+1 212 555 0100", "US", PhoneKind.VALID, "+12125550100", ""),
        ("+1 555 123 4567", "US", PhoneKind.POSSIBLE, "+15551234567", ""),
        ("+15551230001", "US", PhoneKind.POSSIBLE, "+15551230001", ""),
        ("00 44 20 7946 0958", "US", PhoneKind.VALID, "+442079460958", ""),
        ("0044 (0)20 7946 0958", "DE", PhoneKind.VALID, "+442079460958", ""),
        ("011 44 20 7946 0958", "US", PhoneKind.VALID, "+442079460958", ""),
        ("(212) 555-0100", "US", PhoneKind.VALID, "+12125550100", ""),
        ("020 7946 0958", "GB", PhoneKind.VALID, "+442079460958", ""),
        ("030 123456", "DE", PhoneKind.VALID, "+4930123456", ""),
        ("+1 212 555 0100 ext. 42", "US", PhoneKind.VALID, "+12125550100", "42"),
        ("212-555-0100 x7", "US", PhoneKind.VALID, "+12125550100", "7"),
        ("1-800-FLOWERS", "US", PhoneKind.VALID, "+18003569377", ""),
        ('"Alice Smith" <+12125550100>', "US", PhoneKind.VALID, "+12125550100", ""),
        ("sip:+12125550100@trunk.example;user=phone", "US", PhoneKind.VALID, "+12125550100", ""),
        ("tel:+44-20-7946-0958", "US", PhoneKind.VALID, "+442079460958", ""),
    ],
)
def test_given_number_in_any_format_when_normalised_then_e164(
    raw: str, region: str, kind: PhoneKind, e164: str, extension: str
) -> None:
    number = normalise(raw, region)
    assert (number.kind, number.e164, number.extension) == (kind, e164, extension)
    assert number.matchable
    assert number.raw == raw


@pytest.mark.parametrize(
    "raw",
    ["", "   ", None, "anonymous", "Anonymous", "unknown", "<unknown>", "Restricted", "withheld"],
)
def test_given_withheld_number_when_normalised_then_anonymous_and_unmatchable(
    raw: str | None,
) -> None:
    number = normalise(raw)
    assert number.kind == PhoneKind.ANONYMOUS
    assert number.e164 is None
    assert not number.matchable


@pytest.mark.parametrize("raw", ["abc", "12", "+999 1", "call me maybe", "++--", "0"])
def test_given_text_that_is_no_number_when_normalised_then_invalid_with_reason(raw: str) -> None:
    number = normalise(raw, "US")
    assert number.kind == PhoneKind.INVALID
    assert number.e164 is None
    assert number.reason
    assert number.raw == raw


def test_given_national_number_when_default_region_differs_then_country_follows_region() -> None:
    assert normalise("030 123456", "DE").e164 == "+4930123456"
    assert normalise("(212) 555-0100", "US").e164 == "+12125550100"
    assert normalise("(212) 555-0100", "de").e164 != "+12125550100"
