"""Loading the recorded Asterisk traces (tests/fixtures/asterisk-traces) for replay in tests."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TRACES_DIR = Path(__file__).parent / "fixtures" / "asterisk-traces"

Direction = Literal["in", "out", "meta"]


@dataclass(frozen=True, slots=True)
class Record:
    """One socket read or write (or a life-cycle note) of a trace, as recorded."""

    t: float
    dir: Direction
    data: bytes
    event: str | None = None
    kind: int | None = None


def trace_names(suffix: str) -> list[str]:
    """Scenario names that have a file ending in `suffix` (e.g. ".ami.jsonl")."""
    return sorted(p.name[: -len(suffix)] for p in TRACES_DIR.glob(f"*{suffix}"))


def load(name: str) -> list[Record]:
    """All records of one trace file, e.g. load("ivr-dtmf-menu.agi.jsonl")."""
    records: list[Record] = []
    for line in (TRACES_DIR / name).read_text(encoding="ascii").splitlines():
        raw = json.loads(line)
        if "payload_b64" in raw:
            payload = base64.b64decode(raw["payload_b64"])
        else:
            payload = str(raw.get("data", "")).encode("ascii")
        records.append(
            Record(
                t=float(raw["t"]),
                dir=raw["dir"],
                data=payload,
                event=raw.get("event"),
                kind=raw.get("kind"),
            )
        )
    return records


def chunks(name: str, direction: Direction) -> list[bytes]:
    """The data of every record in one direction, in order (one chunk per recorded read)."""
    return [r.data for r in load(name) if r.dir == direction and r.data]


def stream(name: str, direction: Direction) -> bytes:
    """The whole byte stream of one direction, concatenated."""
    return b"".join(chunks(name, direction))
