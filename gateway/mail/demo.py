"""The embedded demo mail servers of ``gateway serve --demo`` (``mail.demo``), and the clients
behind ``gateway demo send-mail`` and ``gateway demo inbox``.

:class:`DemoMail` runs, on the running loop: an IMAP server (pymap, in memory) with the contact
center's mailbox ``support@demo.example`` and a customer's ``customer@demo.example`` (each user
logs in with its name as password), and an SMTP server (aiosmtpd) that takes mail for those two
addresses (``550`` for others) and stores it in the recipient's INBOX by IMAP APPEND.  Customers'
emails and the gateway's replies both pass through it, so a newcomer sees the whole round.
Loopback only, no TLS, well-known passwords, nothing kept after exit: never for real mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import ssl
import time
import weakref
from argparse import Namespace
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import formataddr, formatdate, make_msgid
from typing import Any

import aioimaplib
import aiosmtplib
import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session
from proxyprotocol.reader import ProxyProtocolReader
from pymap.backend.dict import Config as PymapConfig
from pymap.backend.dict import DictBackend
from pymap.concurrent import Subsystem
from pymap.imap import IMAPServer
from pymap.user import Passwords, UserMetadata
from pysasl.hashing import BuiltinHash

from gateway.config import MailConfig, MailSender, MailSource

__all__ = [
    "CUSTOMER",
    "CUSTOMER_ADDRESS",
    "SUPPORT",
    "SUPPORT_ADDRESS",
    "DemoMail",
    "DemoUnreachable",
    "InboxMessage",
    "SentMail",
    "read_inbox",
    "send_customer_mail",
]

log = structlog.get_logger("gateway.mail.demo")

HOST = "127.0.0.1"
DOMAIN = "demo.example"
SUPPORT = "support"
CUSTOMER = "customer"
SUPPORT_ADDRESS = f"{SUPPORT}@{DOMAIN}"
CUSTOMER_ADDRESS = f"{CUSTOMER}@{DOMAIN}"
PASSWORDS: Mapping[str, str] = {SUPPORT: SUPPORT, CUSTOMER: CUSTOMER}  # user → password
USER_BY_ADDRESS: Mapping[str, str] = {f"{user}@{DOMAIN}": user for user in PASSWORDS}
STOP_TIMEOUT_S = 0.5  # each step of stopping: logouts, then each server's close


class DemoUnreachable(Exception):
    """A ``gateway demo`` command could not do its job; the message is one line."""


class _DeliveryError(Exception):
    """The embedded IMAP server did not take a message."""


# --- pymap internals ---------------------------------------------------------------------------
# pymap has no embedding API.  These three functions use what `pymap dict` itself uses
# (pymap.main.run, pymap.imap.IMAPService.start); none of it is promised, which is why
# pyproject.toml pins pymap==0.36.7 and tests/unit/test_demo_mail.py exercises all of it.


def _pymap_args(user: str, password: str) -> Namespace:
    """The parsed command line ``pymap --no-tls dict --demo-user U --demo-password P`` would
    give: pymap's config classes read their settings from it.  Host and port are unused: we
    listen ourselves (:func:`_pymap_connection_handler`)."""
    return Namespace(
        debug=False,
        host=HOST,
        port="0",
        cert=None,
        key=None,
        tls=False,  # no STARTTLS offered; plain LOGIN allowed (loopback only)
        passlib_cfg=None,
        proxy_protocol=None,
        inherited_sockets=None,
        demo_data=False,
        demo_user=user,
        demo_password=password,
    )


async def _pymap_backend(users: Mapping[str, str]) -> tuple[DictBackend, PymapConfig]:
    """An in-memory backend with these users (name → password)."""
    first, password = next(iter(users.items()))
    # DictBackend.init builds the config and adds the command line's one "demo user".
    backend, config = await DictBackend.init(
        _pymap_args(first, password),
        # The default is PBKDF2 with 500,000 rounds: about 0.15 s per user and per LOGIN.
        hash_context=BuiltinHash(rounds=1),
        # Hash on the loop (one round is cheap); the default starts a thread pool never shut.
        cpu_subsystem=Subsystem.for_asyncio(),
        # Never used without TLS; given so pymap does not read CERT_FILE/KEY_FILE from os.environ.
        ssl_context=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER),
    )
    hasher = Passwords(config)
    for name, secret in users.items():
        if name != first:  # the others go where Identity.set would put them
            hashed = await hasher.hash_password(secret)
            backend.login.users_dict[name] = UserMetadata(config, name, password=hashed)
    return backend, config


def _pymap_connection_handler(
    backend: DictBackend, config: PymapConfig
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """What IMAPService.start hands to asyncio.start_server.  We call start_server ourselves,
    so that port 0 reports the port it got and exit can close connections still open (on
    Python 3.12+ Server.wait_closed waits for them)."""
    reader = ProxyProtocolReader(config.proxy_protocol)  # a no-op without --proxy-protocol
    return reader.get_callback(IMAPServer(backend.login, config))


# --- the servers -------------------------------------------------------------------------------


class _Mailbox:
    """One logged-in IMAP connection, opened on first use, that stores mail in a user's INBOX."""

    def __init__(self, user: str, password: str, port: int, timeout_s: float) -> None:
        self.user = user
        self._password = password
        self._port = port
        self._timeout_s = timeout_s
        self._client: Any = None  # aioimaplib.IMAP4 (untyped)
        self._lock = asyncio.Lock()

    async def append(self, data: bytes) -> None:
        async with self._lock:
            try:
                await self._append(data)
            except (OSError, aioimaplib.AioImapException, _DeliveryError) as exc:
                await self.close()
                raise _DeliveryError(str(exc) or repr(exc)) from None

    async def _append(self, data: bytes) -> None:
        if self._client is None:
            client: Any = None

            def lost(exc: Exception | None) -> None:  # else the next command waits its timeout
                if self._client is client:
                    self._client = None

            client = aioimaplib.IMAP4(HOST, self._port, timeout=self._timeout_s, conn_lost_cb=lost)
            self._client = client
            await client.wait_hello_from_server()
            response = await client.login(self.user, self._password)
            if response.result != "OK":
                raise _DeliveryError(f"LOGIN {response.result}")
        response = await self._client.append(data, mailbox="INBOX")
        if response.result != "OK":
            raise _DeliveryError(f"APPEND {response.result}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError, aioimaplib.AioImapException):
                await asyncio.wait_for(client.logout(), STOP_TIMEOUT_S)


class _Inbound:
    """aiosmtpd handler: accept mail for the demo users and store it in their INBOX."""

    def __init__(self, mailboxes: Mapping[str, _Mailbox]) -> None:
        self.mailboxes = mailboxes

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() not in USER_BY_ADDRESS:
            log.info("demo_mail_rejected", rcpt=address)
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        message_id = str(BytesHeaderParser().parsebytes(data).get("Message-ID", "")).strip()
        users = dict.fromkeys(USER_BY_ADDRESS[rcpt.lower()] for rcpt in envelope.rcpt_tos)
        for user in users:
            started = time.perf_counter()
            try:
                await self.mailboxes[user].append(data)
            except _DeliveryError as exc:
                log.warning(
                    "demo_mail_not_stored", user=user, message_id=message_id, error=str(exc)
                )
                return "451 4.3.0 the demo IMAP server did not take the message; try again"
            log.info(
                "demo_mail_delivered",
                user=user,
                mail_from=envelope.mail_from,
                message_id=message_id,
                bytes=len(data),
                ms=round(1000 * (time.perf_counter() - started), 1),
            )
        return "250 2.0.0 delivered"


class DemoMail:
    """``async with DemoMail(config.mail) as demo:`` the demo IMAP and SMTP servers run.

    Ports come from ``config.demo_imap_port`` and ``config.demo_smtp_port`` (0 picks a free
    one); after start ``imap_port`` and ``smtp_port`` are the real ones, and ``source`` and
    ``sender`` are the mail configuration the gateway needs to use them.
    """

    def __init__(self, config: MailConfig) -> None:
        self._config = config
        self.imap_port = 0
        self.smtp_port = 0
        self._mailboxes: dict[str, _Mailbox] = {}
        self._imap_clients: weakref.WeakSet[asyncio.StreamWriter] = weakref.WeakSet()
        self._smtp_clients: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def source(self) -> MailSource:
        """The support mailbox, for ``[[mail.sources]]``."""
        return MailSource(
            name="demo",
            queue="SimpleEmailInQueue",
            host=HOST,
            port=self._started(self.imap_port),
            tls="none",
            username=SUPPORT,
            password=PASSWORDS[SUPPORT],
            address=SUPPORT_ADDRESS,
            sender="demo",
        )

    @property
    def sender(self) -> MailSender:
        """The SMTP server, for ``[[mail.senders]]``: replies go through it to the customer."""
        return MailSender(
            name="demo",
            host=HOST,
            port=self._started(self.smtp_port),
            tls="none",
            from_address=SUPPORT_ADDRESS,
        )

    def _started(self, port: int) -> int:
        if self._stack is None:
            raise RuntimeError("DemoMail is not running")
        return port

    async def __aenter__(self) -> DemoMail:
        started = time.perf_counter()
        async with contextlib.AsyncExitStack() as stack:
            backend, pymap_config = await _pymap_backend(PASSWORDS)
            handler = _pymap_connection_handler(backend, pymap_config)

            async def imap_connection(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter
            ) -> None:
                self._imap_clients.add(writer)
                await handler(reader, writer)

            port = self._config.demo_imap_port
            imap = await _listen("IMAP", port, asyncio.start_server(imap_connection, HOST, port))
            stack.push_async_callback(_close, imap, self._imap_clients)
            self.imap_port = imap.sockets[0].getsockname()[1]
            self._mailboxes = {
                user: _Mailbox(user, password, self.imap_port, self._config.timeout_s)
                for user, password in PASSWORDS.items()
            }
            stack.push_async_callback(self._logout)
            port = self._config.demo_smtp_port
            loop = asyncio.get_running_loop()
            smtp = await _listen("SMTP", port, loop.create_server(self._smtp_protocol, HOST, port))
            stack.push_async_callback(_close, smtp, self._smtp_clients)
            self.smtp_port = smtp.sockets[0].getsockname()[1]
            self._stack = stack.pop_all()
        log.info(
            "demo_mail_started",
            imap_port=self.imap_port,
            smtp_port=self.smtp_port,
            users=[f"{user}@{DOMAIN}" for user in PASSWORDS],
            ms=round(1000 * (time.perf_counter() - started), 1),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            started = time.perf_counter()
            await stack.aclose()  # SMTP first, then the delivery logouts, then IMAP
            log.info("demo_mail_stopped", ms=round(1000 * (time.perf_counter() - started), 1))

    def _smtp_protocol(self) -> SMTP:
        protocol = SMTP(
            _Inbound(self._mailboxes),
            hostname=f"mx.{DOMAIN}",  # else aiosmtpd asks the resolver for our FQDN
            enable_SMTPUTF8=True,
            loop=asyncio.get_running_loop(),
        )
        self._smtp_clients.add(protocol)
        return protocol

    async def _logout(self) -> None:
        await asyncio.gather(*(mailbox.close() for mailbox in self._mailboxes.values()))


async def _listen(what: str, port: int, starting: Awaitable[asyncio.Server]) -> asyncio.Server:
    try:
        return await starting
    except OSError as exc:
        raise OSError(  # one argument: its own message, shown as is by `gateway serve`
            f"cannot listen on {HOST}:{port} for the demo {what} server: "
            f"{os.strerror(exc.errno) if exc.errno else exc} "
            f"(set mail.demo_{what.lower()}_port; 0 picks a free port)"
        ) from exc


async def _close(server: asyncio.Server, clients: Iterable[Any]) -> None:
    """Stop listening and close the connections still open: an ``asyncio.StreamWriter`` each
    for IMAP, an aiosmtpd ``SMTP`` protocol each for SMTP."""
    server.close()
    for client in list(clients):
        transport = client.transport
        if transport is not None and not transport.is_closing():
            transport.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT_S)


# --- the clients of `gateway demo` -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SentMail:
    message_id: str
    subject: str
    sender: str  # the From header
    recipient: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxMessage:
    sender: str
    subject: str
    date: str
    preview: tuple[str, ...]  # the first non-blank lines of the text body


async def send_customer_mail(
    *, host: str, port: int, subject: str, text: str, name: str, timeout_s: float = 10.0
) -> SentMail:
    """Send an email from the demo customer to the demo support mailbox."""
    message = EmailMessage()
    message["From"] = formataddr((name, CUSTOMER_ADDRESS))
    message["To"] = SUPPORT_ADDRESS
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=DOMAIN)
    message.set_content(text)
    try:
        await aiosmtplib.send(message, hostname=host, port=port, start_tls=False, timeout=timeout_s)
    except aiosmtplib.SMTPResponseException as exc:
        raise DemoUnreachable(
            f"the SMTP server at {host}:{port} refused the message: {exc.code} {exc.message}"
        ) from None
    except (OSError, aiosmtplib.SMTPException) as exc:
        raise DemoUnreachable(_unreachable("SMTP", host, port, exc)) from None
    return SentMail(
        message_id=message["Message-ID"],
        subject=subject,
        sender=message["From"],
        recipient=SUPPORT_ADDRESS,
    )


async def read_inbox(
    *, host: str, port: int, user: str = CUSTOMER, lines: int = 4, timeout_s: float = 10.0
) -> list[InboxMessage]:
    """The messages in a demo user's INBOX, oldest first, without marking them seen."""
    client = aioimaplib.IMAP4(host, port, timeout=timeout_s)
    try:
        await client.wait_hello_from_server()
    except OSError as exc:  # refused, or TimeoutError
        raise DemoUnreachable(_unreachable("IMAP", host, port, exc)) from None
    try:
        response = await client.login(user, PASSWORDS[user])
        if response.result != "OK":
            raise DemoUnreachable(f"the IMAP server at {host}:{port} refused {user}'s login")
        response = await client.select("INBOX")
        if not any(line.endswith(b" EXISTS") and line != b"0 EXISTS" for line in response.lines):
            return []
        response = await client.fetch("1:*", "(BODY.PEEK[])")
        # aioimaplib gives each literal (here: a whole message) as a bytearray
        return [_summary(bytes(item), lines) for item in response.lines if type(item) is bytearray]
    except (OSError, aioimaplib.AioImapException) as exc:
        raise DemoUnreachable(f"the IMAP server at {host}:{port} failed: {exc!r}") from None
    finally:
        with contextlib.suppress(OSError, aioimaplib.AioImapException):
            await asyncio.wait_for(client.logout(), STOP_TIMEOUT_S)


def _unreachable(what: str, host: str, port: int, exc: BaseException) -> str:
    chain = [exc, exc.__cause__, exc.__context__]
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        reason = "connection refused"
    elif any(isinstance(e, TimeoutError) for e in chain):
        reason = "timed out"
    else:
        reason = str(exc) or type(exc).__name__
    return f"no demo {what} server at {host}:{port} ({reason}); is 'gateway serve --demo' running?"


def _summary(data: bytes, lines: int) -> InboxMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else "(no text part)"
    return InboxMessage(
        sender=str(message.get("From", "")),
        subject=str(message.get("Subject", "")),
        date=str(message.get("Date", "")),
        preview=tuple(line.rstrip() for line in text.splitlines() if line.strip())[:lines],
    )
