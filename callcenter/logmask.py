"""Masking of personal data (caller numbers, email addresses) before it reaches a log line."""

from __future__ import annotations


def mask_number(value: str) -> str:
    """Keep the last four digits of a phone number: '+15551230001' -> '*******0001'."""
    digits = sum(ch.isdigit() for ch in value)
    if digits <= 4:
        return "*" * len(value)
    keep = 4
    out: list[str] = []
    for ch in reversed(value):
        if ch.isdigit() and keep > 0:
            out.append(ch)
            keep -= 1
        else:
            out.append("*")
    return "".join(reversed(out))


def mask_email(value: str) -> str:
    """Keep the local part's first letter and the domain: 'alice@x.org' -> 'a***@x.org'."""
    local, sep, domain = value.partition("@")
    if not sep:
        return "*" * len(value)
    return f"{local[:1]}***@{domain}"
