"""Inbound email benchmark: messages/s through the real SMTP server, with parsing and threading.

Run ``python -m bench.email_inbound`` (``--help`` for options). It starts an
:class:`InboundSmtpServer` in this process backed by the in-memory help desk, opens
``--connections`` aiosmtplib clients that each send their share of ``--messages`` over one SMTP
session (MAIL/RCPT/DATA per message), and reports messages/s from the first MAIL to the last
250. The mix is realistic help-desk mail: a new plain message, a reply threaded by
In-Reply-To/References to an earlier one, a multipart/alternative with an attachment and an
inline image, and an HTML-only Windows-1252 mail. Clients and server share one event loop and
one CPU, so the figure is a lower bound for the server alone. The same mix is also run through
the pipeline without sockets, to show the protocol's share. Nothing is asserted; the goal is
printed next to the result.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from email.message import EmailMessage

import aiosmtplib

from tickets.email.ports import InMemoryHelpDesk
from tickets.email.smtp_in import (
    InboundPipeline,
    InboundSmtpHandler,
    InboundSmtpServer,
    InboundSmtpSettings,
)
from tickets.email.threading import ReplyTokenSigner

GOAL_MESSAGES_PER_S = 150.0
SUPPORT = "support@help.test"
SIGNER = ReplyTokenSigner(b"bench-secret-0123456789abcdef")


def _plain(conn: int, i: int) -> bytes:
    return (
        f"From: customer{conn}@example.org\r\nTo: {SUPPORT}\r\nSubject: Order {conn}-{i}\r\n"
        f"Message-ID: <m{conn}.{i}@example.org>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + "My parcel has not arrived yet, could you check please?\r\n"
        * 20
    ).encode()


def _reply(conn: int, i: int) -> bytes:
    parent = f"m{conn}.{i - 1}@example.org"
    return (
        f"From: customer{conn}@example.org\r\nTo: {SUPPORT}\r\nSubject: Re: Order {conn}\r\n"
        f"Message-ID: <m{conn}.{i}@example.org>\r\nIn-Reply-To: <{parent}>\r\n"
        f"References: <m{conn}.0@example.org> <{parent}>\r\n\r\n"
        "Thanks, any news?\r\n> previous text\r\n" * 5
    ).encode()


def _rich(conn: int, i: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Zoë <customer{conn}@example.org>"
    msg["To"] = SUPPORT
    msg["Subject"] = f"Photo of the damage {conn}-{i}"
    msg["Message-ID"] = f"<m{conn}.{i}@example.org>"
    msg.set_content("The box was crushed, see the photo.\n" * 10)
    msg.add_alternative("<p>The box was <b>crushed</b><img src='cid:p@x'></p>", subtype="html")
    html = msg.get_body(("html",))
    assert isinstance(html, EmailMessage)
    html.add_related(b"\x89PNG" + b"\x00" * 20_000, maintype="image", subtype="png", cid="<p@x>")
    msg.add_attachment(b"%PDF-1.4" + b"\x01" * 40_000, maintype="application", subtype="pdf")
    return msg.as_bytes().replace(b"\n", b"\r\n")


def _html(conn: int, i: int) -> bytes:
    body = "<html><body><p>Caf\xe9 \u2013 \u20ac12</p><script>x()</script></body></html>" * 10
    return (
        f"From: customer{conn}@example.org\r\nTo: {SUPPORT}\r\nSubject: Rechnung\r\n"
        f"Message-ID: <m{conn}.{i}@example.org>\r\n"
        "Content-Type: text/html; charset=windows-1252\r\n\r\n"
    ).encode() + body.encode("cp1252")


_KINDS = (_plain, _reply, _rich, _html)


def _messages(conn: int, count: int) -> list[bytes]:
    return [(_plain if i == 0 else _KINDS[i % len(_KINDS)])(conn, i) for i in range(count)]


def _pipeline(desk: InMemoryHelpDesk) -> InboundPipeline:
    return InboundPipeline(directory=desk, sink=desk, signer=SIGNER, loop_id="bench")


async def _client(port: int, conn: int, raws: list[bytes], timeout: float) -> int:
    sent = 0
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, timeout=timeout, start_tls=False
    ) as client:
        for raw in raws:
            await client.sendmail(f"customer{conn}@example.org", [SUPPORT], raw)
            sent += 1
    return sent


async def run(messages: int, connections: int, timeout: float) -> float:
    per_connection = max(2, messages // connections)
    workload = [_messages(conn, per_connection) for conn in range(connections)]
    total_bytes = sum(len(raw) for raws in workload for raw in raws)

    desk = InMemoryHelpDesk()
    settings = InboundSmtpSettings(host="127.0.0.1", port=0)
    async with InboundSmtpServer(InboundSmtpHandler(_pipeline(desk)), settings) as server:
        start = time.perf_counter()
        sent = await asyncio.gather(
            *(_client(server.port, conn, raws, timeout) for conn, raws in enumerate(workload))
        )
        elapsed = time.perf_counter() - start
    total = sum(sent)
    rate = total / elapsed if elapsed > 0 else 0.0
    threaded = sum(1 for s in desk.stored if s.mail.thread.action.value == "append")

    direct_desk = InMemoryHelpDesk()
    pipeline = _pipeline(direct_desk)
    direct_start = time.perf_counter()
    for raws in workload:
        for raw in raws:
            await pipeline.deliver(raw, envelope_sender="c@example.org", recipients=[SUPPORT])
    direct_elapsed = time.perf_counter() - direct_start
    direct_rate = total / direct_elapsed if direct_elapsed > 0 else 0.0

    verdict = "met" if rate >= GOAL_MESSAGES_PER_S else "NOT met"
    print(f"Inbound email bench (Python {sys.version.split()[0]}, one event loop)")
    print(f"  messages:              {total} over {connections} SMTP connections")
    print("  mix:                   plain / threaded reply / MIME+attachments / HTML cp1252")
    print(f"  bytes:                 {total_bytes / 1e6:.1f} MB")
    print(f"  stored / threaded:     {len(desk.stored)} / {threaded} appended to a ticket")
    print(f"  elapsed:               {elapsed:.2f} s")
    print(f"  throughput (SMTP):     {rate:,.0f} messages/s")
    print(f"  pipeline only:         {direct_rate:,.0f} messages/s (parse+loops+threading)")
    print(f"  goal (baseline):       >= {GOAL_MESSAGES_PER_S:,.0f} messages/s -> {verdict}")
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=60.0, help="per-command bound, seconds")
    args = parser.parse_args(argv)
    asyncio.run(run(args.messages, args.connections, args.timeout))


if __name__ == "__main__":
    main()
