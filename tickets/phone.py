"""Caller numbers to E.164: one clear outcome for every format, including withheld callers.

Theory of operation. Asterisk hands us `CALLERID(num)` as the trunk delivered it: E.164 with a
`+`, national digits, `00`/`011` international prefixes, a `sip:`/`tel:` URI, a `"Name" <num>`
string, digits with an extension, a vanity number with letters, or a marker for a withheld
number (`anonymous`, `unknown`, `restricted`, `<unknown>`, empty). Zendesk matches only exact
E.164 strings, so we normalise on write *and* on lookup, with Google's libphonenumber port
(`phonenumbers`) and a configurable default region for national numbers.

Outcomes (`PhoneKind`):

* ``valid``: libphonenumber knows the range; ``e164`` is set.
* ``possible``: the length fits the country but the range is not assigned (test numbers such as
  +1 555 ...); ``e164`` is set and used for matching, the caller is simply less certain.
* ``anonymous``: the network withheld the number; nobody can be matched.
* ``invalid``: text that is not a phone number; kept raw, nobody is matched.

A leading ``00`` is read as the international prefix whatever the default region (as Zammad's
CTI does), because trunks pass it through unchanged from callers abroad.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers

DEFAULT_REGION = "US"

# What trunks and Asterisk put in CALLERID(num) when the caller withheld the number.
_WITHHELD = frozenset(
    {
        "",
        "anonymous",
        "unknown",
        "<unknown>",
        "withheld",
        "private",
        "restricted",
        "unavailable",
        "blocked",
        "no caller id",
        "nocallerid",
        "asterisk",
    }
)
_ANGLE = re.compile(r"<([^<>]*)>")
_URI = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)


class PhoneKind(StrEnum):
    """What a caller number turned out to be."""

    VALID = "valid"
    POSSIBLE = "possible"
    ANONYMOUS = "anonymous"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A normalised caller number; `e164` is set for valid and possible numbers only."""

    raw: str
    kind: PhoneKind
    e164: str | None = None
    extension: str = ""
    reason: str = ""

    @property
    def matchable(self) -> bool:
        """True when the number can identify a customer."""
        return self.e164 is not None


def normalise(raw: str | None, default_region: str = DEFAULT_REGION) -> PhoneNumber:
    """Turn anything a trunk may deliver into E.164, or say why it cannot be done."""
    text = "" if raw is None else raw.strip()
    candidate = _strip_wrapping(text)
    if candidate.lower() in _WITHHELD:
        return PhoneNumber(raw=text, kind=PhoneKind.ANONYMOUS, reason="number withheld")
    compact = re.sub(r"[\s().\-/]", "", candidate)
    if compact.startswith("00"):
        candidate = "+" + compact[2:]
    try:
        parsed = phonenumbers.parse(candidate, default_region.upper())
    except phonenumbers.NumberParseException as err:
        return PhoneNumber(raw=text, kind=PhoneKind.INVALID, reason=str(err).split(") ", 1)[-1])
    extension = parsed.extension or ""
    if phonenumbers.is_valid_number(parsed):
        kind = PhoneKind.VALID
    elif phonenumbers.is_possible_number(parsed):
        kind = PhoneKind.POSSIBLE
    else:
        return PhoneNumber(
            raw=text, kind=PhoneKind.INVALID, extension=extension, reason="impossible length"
        )
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return PhoneNumber(raw=text, kind=kind, e164=e164, extension=extension)


def _strip_wrapping(text: str) -> str:
    """`"Alice" <+15551230001>` -> `+15551230001`; `sip:+1555@host;user=phone` -> `+1555`."""
    angle = _ANGLE.search(text)
    if angle is not None:
        text = angle.group(1).strip()
    if _URI.match(text):
        text = _URI.sub("", text, count=1)
        text = text.split("@", 1)[0].split(";", 1)[0]
    return text.strip()
