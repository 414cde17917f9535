"""The embedded demo mail servers (``gateway serve --demo``) and the ``gateway demo`` commands,
against real sockets: SMTP in, IMAP APPEND into pymap, IMAP out."""

from __future__ import annotations

import asyncio
import email
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aioimaplib
import aiosmtplib
import pytest
from mailservers import free_port
from structlog.testing import capture_logs

from gateway.config import MailConfig
from gateway.mail.demo import CUSTOMER_ADDRESS, SUPPORT_ADDRESS, DemoMail

ROOT = Path(__file__).resolve().parents[2]
FREE_PORTS = MailConfig(demo_imap_port=0, demo_smtp_port=0)


@pytest.fixture
async def demo() -> AsyncIterator[DemoMail]:
    async with DemoMail(FREE_PORTS) as running:
        yield running


def customer_mail(subject: str, to: str = SUPPORT_ADDRESS) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Ann <{CUSTOMER_ADDRESS}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{len(subject)}.{time.monotonic_ns()}@test>"
    message.set_content("Order 1234 has not arrived.\n")
    return message


async def imap_login(demo: DemoMail, user: str, lost: asyncio.Event | None = None) -> Any:
    client = aioimaplib.IMAP4(
        "127.0.0.1",
        demo.imap_port,
        timeout=5,
        conn_lost_cb=None if lost is None else lambda exc: lost.set(),
    )
    await client.wait_hello_from_server()
    assert (await client.login(user, user)).result == "OK"
    assert (await client.select("INBOX")).result == "OK"
    return client


async def inbox(demo: DemoMail, user: str) -> list[email.message.Message]:
    client = await imap_login(demo, user)
    try:
        response = await client.fetch("1:*", "(BODY.PEEK[])")
        assert response.result == "OK"
        return [email.message_from_bytes(bytes(x)) for x in response.lines if type(x) is bytearray]
    finally:
        await client.logout()


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_source_and_sender_point_the_gateway_at_the_demo_servers(demo: DemoMail) -> None:
    assert demo.imap_port and demo.smtp_port and demo.imap_port != demo.smtp_port
    source, sender = demo.source, demo.sender
    assert (source.name, source.queue, source.host, source.port, source.tls) == (
        "demo",
        "SimpleEmailInQueue",
        "127.0.0.1",
        demo.imap_port,
        "none",
    )
    assert (source.username, source.password, source.address) == (
        "support",
        "support",
        SUPPORT_ADDRESS,
    )
    assert (source.input_folder, source.processing_folder) == ("INBOX", "Processing")
    assert (sender.name, sender.host, sender.port, sender.tls) == (
        "demo",
        "127.0.0.1",
        demo.smtp_port,
        "none",
    )
    assert (sender.username, sender.password, sender.from_address) == ("", "", SUPPORT_ADDRESS)
    with pytest.raises(RuntimeError, match="not running"):
        _ = DemoMail(FREE_PORTS).source


async def test_mail_sent_to_support_lands_in_its_inbox_and_logs_no_content(demo: DemoMail) -> None:
    first, second = customer_mail("Subject one"), customer_mail("Subject two")
    with capture_logs() as logs:
        await aiosmtplib.send(first, hostname="127.0.0.1", port=demo.smtp_port)
        await aiosmtplib.send(second, hostname="127.0.0.1", port=demo.smtp_port)
    messages = await inbox(demo, "support")
    assert [m["Subject"] for m in messages] == ["Subject one", "Subject two"]
    assert [m["Message-ID"] for m in messages] == [first["Message-ID"], second["Message-ID"]]
    assert "Order 1234 has not arrived." in str(messages[0].get_payload())
    assert await inbox(demo, "customer") == []
    delivered = [e for e in logs if e["event"] == "demo_mail_delivered"]
    assert [(e["user"], e["mail_from"], e["message_id"]) for e in delivered] == [
        ("support", CUSTOMER_ADDRESS, first["Message-ID"]),
        ("support", CUSTOMER_ADDRESS, second["Message-ID"]),
    ]
    assert "Order 1234" not in repr(logs) and "Subject" not in repr(logs)


async def test_a_reply_to_the_customer_lands_in_the_customers_inbox(demo: DemoMail) -> None:
    reply = customer_mail("Re: hi", to=CUSTOMER_ADDRESS)
    reply.replace_header("From", SUPPORT_ADDRESS)
    await aiosmtplib.send(reply, hostname="127.0.0.1", port=demo.smtp_port)
    assert [m["Subject"] for m in await inbox(demo, "customer")] == ["Re: hi"]


async def test_delivery_reconnects_when_its_kept_connection_is_gone(demo: DemoMail) -> None:
    await aiosmtplib.send(customer_mail("one"), hostname="127.0.0.1", port=demo.smtp_port)
    for writer in list(demo._imap_clients):  # the server hangs up on the delivery connection
        writer.close()
    started = time.perf_counter()
    await aiosmtplib.send(customer_mail("two"), hostname="127.0.0.1", port=demo.smtp_port)
    assert time.perf_counter() - started < 1.0  # not after a command timeout
    assert [m["Subject"] for m in await inbox(demo, "support")] == ["one", "two"]


async def test_mail_for_anyone_else_gets_550(demo: DemoMail) -> None:
    with capture_logs() as logs, pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refusal:
        await aiosmtplib.send(
            customer_mail("lost", to="nobody@demo.example"),
            hostname="127.0.0.1",
            port=demo.smtp_port,
        )
    assert [r.code for r in refusal.value.recipients] == [550]
    assert [e["rcpt"] for e in logs if e["event"] == "demo_mail_rejected"] == [
        "nobody@demo.example"
    ]
    assert await inbox(demo, "support") == []


async def test_idle_on_the_support_inbox_sees_a_delivery_at_once(demo: DemoMail) -> None:
    watcher = await imap_login(demo, "support")
    idle = await watcher.idle_start(timeout=10)
    sent = time.perf_counter()
    await aiosmtplib.send(customer_mail("watched"), hostname="127.0.0.1", port=demo.smtp_port)
    pushed: list[Any] = []
    while not any(line.endswith(b"EXISTS") for line in pushed if isinstance(line, bytes)):
        pushed += await watcher.wait_server_push(timeout=2)
    assert time.perf_counter() - sent < 1.0  # pymap notifies within milliseconds
    watcher.idle_done()
    await asyncio.wait_for(idle, 5)
    await watcher.logout()


async def test_exit_is_quick_closes_open_connections_and_leaves_nothing_listening() -> None:
    async with DemoMail(FREE_PORTS) as demo:
        await aiosmtplib.send(customer_mail("hello"), hostname="127.0.0.1", port=demo.smtp_port)
        hung_up = asyncio.Event()
        await imap_login(demo, "support", lost=hung_up)  # never logged out
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=demo.smtp_port)
        await smtp.connect()  # never QUIT
        started = time.perf_counter()
    assert time.perf_counter() - started < 1.0
    assert refused(demo.imap_port) and refused(demo.smtp_port)
    await asyncio.wait_for(hung_up.wait(), 1)
    assert not smtp.is_connected


async def test_a_port_in_use_is_named_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        message = rf"^cannot listen on 127\.0\.0\.1:{port} for the demo SMTP server: .*"
        with pytest.raises(OSError, match=message + r"\(set mail\.demo_smtp_port; 0 picks a free"):
            async with DemoMail(MailConfig(demo_imap_port=0, demo_smtp_port=port)):
                pass  # pragma: no cover


# --- gateway demo send-mail / inbox --------------------------------------------------------------


async def gateway(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_send_mail_reaches_support_and_inbox_lists_the_customers_mail(
    demo: DemoMail,
) -> None:
    code, out, err = await gateway(
        "demo",
        "send-mail",
        "--smtp-port",
        str(demo.smtp_port),
        "--subject",
        "Parcel?",
        "--from",
        "Ann",
    )
    assert code == 0, err
    [message] = await inbox(demo, "support")
    assert message["Subject"] == "Parcel?" and message["From"] == f"Ann <{CUSTOMER_ADDRESS}>"
    assert message["To"] == SUPPORT_ADDRESS and message["Date"]
    assert out.count("\n") == 1 and "'Parcel?'" in out and message["Message-ID"] in out
    assert "gateway demo inbox" in out

    code, out, err = await gateway("demo", "inbox", "--imap-port", str(demo.imap_port))
    assert (code, err) == (0, "") and out.startswith("0 message(s) in customer@demo.example's")
    reply = customer_mail("Re: Parcel?", to=CUSTOMER_ADDRESS)
    reply.replace_header("From", f"Support <{SUPPORT_ADDRESS}>")
    reply["Date"] = "Sat, 21 Nov 2026 15:03:45 +0000"
    reply.set_content("On its way.\n\nIt left today.\n> quoted\n> more\n> and more\n")
    await aiosmtplib.send(reply, hostname="127.0.0.1", port=demo.smtp_port)
    code, out, err = await gateway("demo", "inbox", "--imap-port", str(demo.imap_port))
    assert code == 0, err
    lines = out.splitlines()
    assert lines == [
        f"1 message(s) in customer@demo.example's INBOX (127.0.0.1:{demo.imap_port})",
        f"1. From: Support <{SUPPORT_ADDRESS}>",
        "   Subject: Re: Parcel?",
        "   Date: Sat, 21 Nov 2026 15:03:45 +0000",
        "   | On its way.",
        "   | It left today.",
        "   | > quoted",
        "   | > more",  # the first four non-blank lines only
    ]


@pytest.mark.parametrize(
    ("command", "what"), [("send-mail", "SMTP"), ("inbox", "IMAP")], ids=["send-mail", "inbox"]
)
async def test_nothing_listening_is_one_line_and_exit_1(command: str, what: str) -> None:
    port = free_port()
    flag = "--smtp-port" if what == "SMTP" else "--imap-port"
    code, out, err = await gateway("demo", command, flag, str(port))
    assert (code, out) == (1, "")
    assert err == (
        f"gateway: no demo {what} server at 127.0.0.1:{port} (connection refused); "
        "is 'gateway serve --demo' running?\n"
    )


async def test_demo_without_an_action_prints_help() -> None:
    code, out, _ = await gateway("demo")
    assert code == 2 and "send-mail" in out and "inbox" in out


def test_serve_demo_runs_the_demo_mail_servers_and_says_how_to_use_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_STORE__DATA_DIR=str(tmp_path),
        GATEWAY_MAIL__DEMO_IMAP_PORT="0",
        GATEWAY_MAIL__DEMO_SMTP_PORT="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--demo", "--port", "0", "--log-format", "json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        printed = ""
        while "replies arrive" not in printed and len(printed.splitlines()) < 20:
            printed += proc.stdout.readline()
        assert "demo mail:    support@demo.example feeds the email queue" in printed
        smtp = re.search(r"gateway demo send-mail --smtp-port (\d+)", printed)
        imap = re.search(r"gateway demo inbox --imap-port (\d+)", printed)
        assert smtp and imap, printed
        command = re.search(r"a customer writes:  (.+) \[--subject", printed)
        assert command, printed
        sent = subprocess.run(  # as printed: it works where the gateway was started
            ["bash", "-c", command[1]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    _, err = proc.communicate()
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    started = next(e for e in events if e["event"] == "demo_mail_started")
    assert (str(started["smtp_port"]), str(started["imap_port"])) == (smtp[1], imap[1])
    assert any(e["event"] == "demo_mail_delivered" and e["user"] == "support" for e in events)
    assert any(e["event"] == "demo_mail_stopped" for e in events)
