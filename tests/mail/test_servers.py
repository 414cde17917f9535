"""The mail test infrastructure itself, checked the way a mail test would use it: a real
Dovecot (IMAP, IMAPS, STARTTLS, IDLE, MOVE, restart, users added at runtime) and the in-process
SMTP sink (AUTH, XOAUTH2, STARTTLS, implicit TLS, failure injection, stop and start again)."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from email.message import EmailMessage
from typing import TYPE_CHECKING

import aioimaplib
import aiosmtplib
import pytest
from mailservers import Dovecot, ImapProbe, Mailbox, SelfSignedCert, SmtpSink, imap_starttls

if TYPE_CHECKING:
    from mail.conftest import MakeSmtpSink


def raw_message(subject: str, to: str = "customer@example.test") -> bytes:
    message = EmailMessage()
    message["From"] = "sender@example.test"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4()}@example.test>"
    message.set_content(f"body of {subject}")
    return message.as_bytes().replace(b"\n", b"\r\n")


def email(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "agent@gateway.test"
    message["To"] = "customer@example.test"
    message["Subject"] = subject
    message.set_content(f"body of {subject}")
    return message


async def wait_exists(client: aioimaplib.IMAP4, within: float = 5.0) -> list[bytes]:
    """The next IDLE push that reports EXISTS (Dovecot sends it ~500 ms after the change)."""
    deadline = time.monotonic() + within
    while True:
        push = await client.wait_server_push(timeout=max(deadline - time.monotonic(), 0.01))
        if isinstance(push, list) and any(b"EXISTS" in line for line in push):
            return push


# --- Dovecot --------------------------------------------------------------------------------


async def test_dovecot_greets_on_both_ports(dovecot: Dovecot) -> None:
    reader, writer = await asyncio.open_connection(dovecot.host, dovecot.imap_port)
    greeting = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    await writer.wait_closed()
    assert greeting.startswith(b"* OK")
    assert b"STARTTLS" in greeting

    reader, writer = await asyncio.open_connection(
        dovecot.host, dovecot.imaps_port, ssl=dovecot.cert.client_context()
    )
    greeting = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    await writer.wait_closed()
    assert greeting.startswith(b"* OK")
    assert b"STARTTLS" not in greeting


async def test_imaps_login_verifies_against_cert_path(mailbox: Mailbox) -> None:
    context = ssl.create_default_context(cafile=str(mailbox.cert_path))
    probe = await ImapProbe.connect(
        mailbox.imaps_port, mailbox.user, mailbox.password, ssl_context=context
    )
    tls = probe.client.protocol.transport.get_extra_info("ssl_object")
    assert tls is not None and tls.version() == "TLSv1.3"
    assert await probe.count() == 0
    await probe.close()

    # the system CAs do not know the self-signed certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        await ImapProbe.connect(
            mailbox.imaps_port,
            mailbox.user,
            mailbox.password,
            ssl_context=ssl.create_default_context(),
        )


async def test_starttls_on_the_plain_port(mailbox: Mailbox) -> None:
    client = aioimaplib.IMAP4(mailbox.host, mailbox.imap_port, timeout=5)
    await client.wait_hello_from_server()
    assert client.has_capability("STARTTLS")
    context = ssl.create_default_context(cafile=str(mailbox.cert_path))
    await imap_starttls(client, context, "localhost")
    assert client.protocol.transport.get_extra_info("ssl_object") is not None
    assert not client.has_capability("STARTTLS")  # capabilities re-read over TLS
    assert (await client.login(mailbox.user, mailbox.password)).result == "OK"
    probe = ImapProbe(client)
    uid = await probe.append(raw_message("over starttls"))
    assert await probe.uids() == [uid]
    await probe.close()

    # the same through ImapProbe.connect
    probe = await ImapProbe.connect(
        mailbox.imap_port, mailbox.user, mailbox.password, starttls=context
    )
    assert await probe.count() == 1
    await probe.close()


async def test_idle_sees_an_append_from_another_connection(
    mailbox: Mailbox, imap: ImapProbe
) -> None:
    watcher = await ImapProbe.connect(mailbox.imap_port, mailbox.user, mailbox.password)
    assert (await watcher.client.select("INBOX")).result == "OK"
    idle = await watcher.client.idle_start(timeout=30)
    started = time.monotonic()
    uid = await imap.append(raw_message("seen by idle"))
    push = await wait_exists(watcher.client)
    latency = time.monotonic() - started
    watcher.client.idle_done()
    await asyncio.wait_for(idle, 5)
    assert b"1 EXISTS" in push
    assert latency < 3, latency  # ~0.5 s: Dovecot's fixed notify delay
    assert await watcher.uids() == [uid]
    await watcher.close()


async def test_move_and_uidplus(imap: ImapProbe) -> None:
    for capability in ("IDLE", "MOVE", "UIDPLUS"):
        assert imap.client.has_capability(capability), capability
    uid = await imap.append(raw_message("to be moved"))
    await imap.create("Done")
    await imap.create("Done")  # already exists: fine
    assert (await imap.client.select("INBOX")).result == "OK"
    moved = await imap.client.uid("move", str(uid), "Done")
    assert moved.result == "OK"
    assert b"COPYUID" in moved.lines[0]
    assert await imap.wait_count("INBOX", 0) == 0
    assert await imap.count("Done") == 1


async def test_probe_reads_back_what_it_appended(imap: ImapProbe) -> None:
    first, second = raw_message("first"), raw_message("second")
    uids = [await imap.append(first), await imap.append(second)]
    assert uids[1] > uids[0]
    assert await imap.uids() == uids
    assert await imap.messages() == [first, second]
    assert await imap.wait_count("INBOX", 2, within=1) == 2
    await imap.create('A "quoted" folder')
    await imap.append(first, folder='A "quoted" folder')
    assert await imap.messages('A "quoted" folder') == [first]
    with pytest.raises(TimeoutError):
        await imap.wait_count("INBOX", 3, within=0.1)


async def test_restart_keeps_mail_and_ports(dovecot: Dovecot, mailbox: Mailbox) -> None:
    probe = await ImapProbe.connect(mailbox.imap_port, mailbox.user, mailbox.password)
    uid = await probe.append(raw_message("survives a restart"))
    assert (await probe.client.select("INBOX")).result == "OK"
    idle = await probe.client.idle_start(timeout=30)
    ports, pid = (dovecot.imap_port, dovecot.imaps_port), dovecot.pid

    await dovecot.arestart()  # in a thread: this loop keeps running, as the gateway's would

    assert (dovecot.imap_port, dovecot.imaps_port) == ports
    assert dovecot.pid not in (None, pid)
    # the client that was in IDLE was told, and disconnected
    push = await probe.client.wait_server_push(timeout=5)
    assert any(b"BYE" in line for line in push), push
    assert probe.client.protocol.transport.is_closing()
    # aioimaplib never completes a command whose connection was lost: cancel it
    assert not idle.done()
    idle.cancel()
    await probe.close()

    probe = await ImapProbe.connect(mailbox.imap_port, mailbox.user, mailbox.password)
    assert await probe.uids() == [uid]
    await probe.close()
    probe = await ImapProbe.connect(
        mailbox.imaps_port,
        mailbox.user,
        mailbox.password,
        ssl_context=dovecot.cert.client_context(),
    )
    assert await probe.count() == 1
    await probe.close()


async def test_add_user_takes_effect_at_once(dovecot: Dovecot) -> None:
    started = time.monotonic()
    dovecot.add_user("late.joiner", "s3cret")
    probe = await ImapProbe.connect(dovecot.imap_port, "late.joiner", "s3cret")
    assert await probe.count() == 0
    await probe.close()
    # the domain is dropped and the name lowercased (auth_username_format = %Ln)
    probe = await ImapProbe.connect(dovecot.imap_port, "Late.Joiner@example.test", "s3cret")
    await probe.close()
    # a wrong password is refused, without the auth penalty slowing the next logins down
    client = aioimaplib.IMAP4(dovecot.host, dovecot.imap_port, timeout=5)
    await client.wait_hello_from_server()
    assert (await client.login("late.joiner", "wrong")).result == "NO"
    await client.logout()
    probe = await ImapProbe.connect(dovecot.imap_port, "late.joiner", "s3cret")
    await probe.close()
    assert time.monotonic() - started < 2

    with pytest.raises(ValueError, match="lowercase"):
        dovecot.add_user("Bad Name", "pw")


def test_a_missing_dovecot_is_an_error_naming_the_package() -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install dovecot-imapd"):
        Dovecot(binary="/nonexistent/dovecot").start()


# --- SMTP sink ------------------------------------------------------------------------------


async def test_sink_receives_a_message(smtp_sink: SmtpSink) -> None:
    await aiosmtplib.send(
        email("hello sink"),
        hostname=smtp_sink.host,
        port=smtp_sink.port,
        recipients=["a@example.test", "b@example.test"],
    )
    (received,) = await smtp_sink.wait_for(1)
    assert received.mail_from == "agent@gateway.test"
    assert received.rcpt_tos == ("a@example.test", "b@example.test")
    assert b"Subject: hello sink" in received.content
    assert received.tls is False
    assert received.auth_mechanism is None
    with pytest.raises(TimeoutError):
        await smtp_sink.wait_for(2, within=0.05)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_password(make_smtp_sink: MakeSmtpSink, mechanism: str) -> None:
    sink = await make_smtp_sink(username="gw", password="pw", require_auth=True)
    async with aiosmtplib.SMTP(hostname=sink.host, port=sink.port) as client:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.send_message(email("before auth"))
        assert refused.value.code == 530
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as wrong:
            await getattr(client, f"auth_{mechanism.lower()}")("gw", "wrong")
        assert wrong.value.code == 535
        response = await getattr(client, f"auth_{mechanism.lower()}")("gw", "pw")
        assert response.code == 235
        await client.send_message(email("after auth"))
    (received,) = await sink.wait_for(1)
    assert (received.auth_mechanism, received.auth_login) == (mechanism, "gw")


async def test_auth_xoauth2(make_smtp_sink: MakeSmtpSink) -> None:
    sink = await make_smtp_sink(oauth_token="good-token", require_auth=True)

    async def token(value: str) -> str:
        return value

    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        await aiosmtplib.send(
            email("bad token"),
            hostname=sink.host,
            port=sink.port,
            username="gw@example.test",
            oauth_token_generator=lambda: token("bad-token"),
        )
    assert refused.value.code == 535
    await aiosmtplib.send(
        email("good token"),
        hostname=sink.host,
        port=sink.port,
        username="gw@example.test",
        oauth_token_generator=lambda: token("good-token"),
    )
    (received,) = await sink.wait_for(1)
    assert (received.auth_mechanism, received.auth_login) == ("XOAUTH2", "gw@example.test")


async def test_starttls(make_smtp_sink: MakeSmtpSink, tls_cert: SelfSignedCert) -> None:
    sink = await make_smtp_sink(
        tls_cert=tls_cert.cert_path, tls_key=tls_cert.key_path, username="gw", password="pw"
    )
    await aiosmtplib.send(
        email("over starttls"),
        hostname="localhost",
        port=sink.port,
        start_tls=True,
        tls_context=tls_cert.client_context(),
        username="gw",
        password="pw",
    )
    (received,) = await sink.wait_for(1)
    assert received.tls is True
    assert received.auth_login == "gw"


async def test_implicit_tls(make_smtp_sink: MakeSmtpSink, tls_cert: SelfSignedCert) -> None:
    sink = await make_smtp_sink(
        tls_cert=tls_cert.cert_path, tls_key=tls_cert.key_path, implicit_tls=True
    )
    await aiosmtplib.send(
        email("implicit tls"),
        hostname=sink.host,
        port=sink.port,
        use_tls=True,
        tls_context=tls_cert.client_context(),
    )
    (received,) = await sink.wait_for(1)
    assert received.tls is True
    # a client that speaks plain SMTP to it gets nowhere
    with pytest.raises(aiosmtplib.SMTPException):
        await aiosmtplib.send(email("plain"), hostname=sink.host, port=sink.port, timeout=0.3)


async def test_fail_with_then_success(smtp_sink: SmtpSink) -> None:
    async def send(subject: str) -> None:
        await aiosmtplib.send(email(subject), hostname=smtp_sink.host, port=smtp_sink.port)

    smtp_sink.fail_with(451, "4.3.0 Try again later", times=1)
    with pytest.raises(aiosmtplib.SMTPDataError) as temporary:
        await send("first try")
    assert temporary.value.code == 451
    await send("second try")
    (received,) = await smtp_sink.wait_for(1)
    assert b"second try" in received.content

    smtp_sink.fail_with(550, "5.1.1 No such user", on="RCPT")  # until cleared
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as permanent:
            await send("refused")
        assert permanent.value.recipients[0].code == 550
    smtp_sink.clear_failures()
    await send("accepted")
    assert len(await smtp_sink.wait_for(2)) == 2
    assert smtp_sink.rejected == 3


async def test_stop_then_start_on_the_same_port(smtp_sink: SmtpSink) -> None:
    port = smtp_sink.port
    connected = aiosmtplib.SMTP(hostname=smtp_sink.host, port=port, timeout=2)
    await connected.connect()
    await smtp_sink.stop()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await connected.noop()  # open connections are dropped too
    with pytest.raises(aiosmtplib.SMTPConnectError):
        await aiosmtplib.send(email("while down"), hostname=smtp_sink.host, port=port)

    await smtp_sink.start()
    assert smtp_sink.port == port
    await aiosmtplib.send(email("back up"), hostname=smtp_sink.host, port=port)
    (received,) = await smtp_sink.wait_for(1)
    assert b"back up" in received.content
