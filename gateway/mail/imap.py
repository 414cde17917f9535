"""One IMAP listener per mail source: IDLE, claim each new message, hand it to the intake.

The order that makes every message count exactly once, whatever fails when:

1. **Catch up** after every (re)connect: first finish what the processing folder holds (a
   message claimed before a crash), then search the input folder.  While connected, IDLE says
   when mail arrives (polling every ``mail.poll_interval_s`` on servers without IDLE), and only
   UIDs above the last one claimed are searched.
2. **Claim**: FETCH the message (``BODY.PEEK[]``, so it stays unseen), then ``UID MOVE`` it into
   the processing folder (COPY + ``\\Deleted`` + EXPUNGE where MOVE is missing).  Only one
   claimer's MOVE finds the message.
3. **Take**: the intake records it and creates its interaction in one SQLite transaction; the
   last claimed UID and the folder's UIDVALIDITY are kept too.
4. **File**: after each batch the processing folder is emptied into the output folder (or the
   messages are deleted when there is none), the quarantine folder for what could not be parsed.

A crash after 2 leaves the message in the processing folder, taken at the next connect; a
crash after 3 leaves it there too, and the intake's record (Message-ID, else a hash of the
bytes) says it was taken, so it is only filed.  Connection problems reconnect with exponential
backoff and jitter; IDLE is re-issued every ``mail.idle_renew_s`` (RFC 2177).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import ssl
import time
from collections.abc import Callable
from typing import Any

import aioimaplib
import structlog

from gateway import failpoints
from gateway.config import MailConfig, MailSender, MailSource
from gateway.mail.intake import Intake, message_key
from gateway.mail.oauth import TokenSource
from gateway.mail.store import QUARANTINED, Folder, MailStore

__all__ = ["ImapFailure", "Listener", "connect", "describe_error", "mailbox_name", "tls_context"]

log = structlog.get_logger("gateway.mail.imap")

_ATOM = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_COPYUID = re.compile(rb"\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS")


class ImapFailure(Exception):
    """The server refused something we need, or went away; the listener reconnects."""


def tls_context(server: MailSource | MailSender) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=server.ca_file or None)
    if not server.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def mailbox_name(name: str) -> str:
    """A folder name as an IMAP argument: an atom when it can be, else a quoted string."""
    if _ATOM.match(name) and name.upper() != "NIL":
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, noting every untagged EXISTS: aioimaplib drops one that arrives
    during an asynchronous command (UID SEARCH, FETCH, ...), and the server never repeats it,
    so mail announced then would wait for the next IDLE renewal."""

    exists_seen = False

    def _untagged_response(self, line: bytes) -> Any:
        if _EXISTS.match(line.removeprefix(b"* ")):
            self.exists_seen = True
        return super()._untagged_response(line)


class _Client(aioimaplib.IMAP4):  # type: ignore[misc]
    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Callable[[Exception | None], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """As aioimaplib's, with :class:`_Protocol`."""
        loop = loop or asyncio.get_running_loop()
        self.protocol = _Protocol(loop, conn_lost_cb)
        self._client_task = loop.create_task(
            loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


def _ok(response: Any, what: str) -> Any:
    if response.result != "OK":
        text = b" ".join(line for line in response.lines if isinstance(line, bytes))[:200]
        raise ImapFailure(f"{what}: {response.result} {text.decode('ascii', 'replace')}")
    return response


async def connect(
    source: MailSource,
    *,
    timeout_s: float,
    tokens: TokenSource | None,
    password: str,
    on_lost: Callable[[Exception | None], None] | None = None,
) -> aioimaplib.IMAP4:
    """A logged-in connection (IMAPS, STARTTLS or plain, password or XOAUTH2)."""
    ctx = tls_context(source) if source.tls != "none" else None
    client = _Client(
        source.host,
        source.port,
        timeout=timeout_s,
        conn_lost_cb=on_lost,
        ssl_context=ctx if source.tls == "tls" else None,
    )
    try:
        await client.wait_hello_from_server()
        if source.tls == "starttls":
            assert ctx is not None
            await starttls(client, ctx, source.host)
        if tokens is not None:
            token = await tokens.token()
            response = await client.xoauth2(source.username, token)
            if response.result != "OK":
                tokens.invalidate()
        else:
            response = await client.login(source.username, password)
        _ok(response, "login")
        await client.protocol.capability()  # the list after login may differ
    except BaseException:
        _close_transport(client)
        raise
    return client


async def starttls(client: aioimaplib.IMAP4, ctx: ssl.SSLContext, host: str) -> None:
    """RFC 3501 STARTTLS: aioimaplib knows the command but not the upgrade; do it here."""
    if not client.has_capability("STARTTLS"):
        raise ImapFailure("the server offers no STARTTLS")
    protocol = client.protocol
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    _ok(await asyncio.wait_for(protocol.execute(command), client.timeout), "STARTTLS")
    loop = asyncio.get_running_loop()
    protocol.transport = await loop.start_tls(
        protocol.transport, protocol, ctx, server_hostname=host
    )
    protocol.capabilities = set()
    await protocol.capability()


def _close_transport(client: aioimaplib.IMAP4) -> None:
    transport = getattr(client.protocol, "transport", None)
    if transport is not None:
        transport.close()


class Listener:
    """Watches one source's input folder for as long as it runs."""

    def __init__(
        self,
        source: MailSource,
        config: MailConfig,
        intake: Intake,
        store: MailStore,
        *,
        tokens: TokenSource | None = None,
        password: str = "",
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.source = source
        self.config = config
        self.intake = intake
        self.store = store
        self.tokens = tokens
        self.password = password
        self.rng = rng
        self.connects = 0
        self.ready = asyncio.Event()  # connected, caught up, waiting for mail
        self.last_error = ""
        self._lost = False
        self._closing = False
        self._stopping = False
        self._session_was_useful = False  # this session got as far as waiting for mail
        self._session: asyncio.Task[None] | None = None
        self._claimed: dict[tuple[int, int], str] = {}  # (validity, processing uid) -> key
        self._log = log.bind(source=source.name)

    # -- the reconnect loop -------------------------------------------------------------------

    async def run(self) -> None:
        delay = self.config.reconnect_min_s
        while True:
            self._lost = self._closing = False
            self._session = asyncio.create_task(self._run_session())
            try:
                await asyncio.wait({self._session})
            except asyncio.CancelledError:
                await self._end_session()
                raise
            self.ready.clear()
            if self._session.cancelled():
                self.last_error = "connection lost"
            elif (exc := self._session.exception()) is not None:
                self.last_error = describe_error(exc)
            if self._session_was_useful:
                delay = self.config.reconnect_min_s
            pause = delay * (0.5 + self.rng() / 2)
            self._log.warning("imap_disconnected", error=self.last_error, retry_in_s=pause)
            await asyncio.sleep(pause)
            delay = min(delay * 2, self.config.reconnect_max_s)

    async def _end_session(self) -> None:
        """Stop the session, bounded: asyncio.wait_for in Python 3.11 can swallow a cancel
        that races with its inner future, so the session also checks ``_stopping``."""
        self._stopping = True
        session = self._session
        if session is None:
            return
        session.cancel()
        await asyncio.wait({session}, timeout=self.config.timeout_s + 3)
        if not session.done():
            self._log.error("imap_session_did_not_stop")

    def _connection_lost(self, session: asyncio.Task[None] | None) -> None:
        """The server went away: end that session (a late callback of an old one is ignored)."""
        if self._closing or session is None or session is not self._session:
            return
        self._lost = True
        if not session.done():
            session.cancel()

    async def _run_session(self) -> None:
        self._session_was_useful = False
        session = self._session
        client = await connect(
            self.source,
            timeout_s=self.config.timeout_s,
            tokens=self.tokens,
            password=self.password,
            on_lost=lambda exc: self._connection_lost(session),
        )
        self.connects += 1
        self._log.info("imap_connected", idle=client.has_capability("IDLE"))
        try:
            await self._create_folders(client)
            await self._settle(client)
            state = await self._select_input(client)
            state = await self._take_new(client, state, everything=True)
            self._session_was_useful = True
            self.ready.set()
            while not self._stopping:
                await self._wait_for_mail(client)
                state = await self._take_new(client, state, everything=False)
        finally:
            self.ready.clear()
            self._closing = True
            if not self._lost:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.logout(), 2)
            _close_transport(client)

    # -- folders ------------------------------------------------------------------------------

    async def _create_folders(self, client: aioimaplib.IMAP4) -> None:
        s = self.source
        for name in (s.processing_folder, s.output_folder, s.quarantine_folder):
            if name:
                await client.create(mailbox_name(name))  # NO when it exists: fine

    async def _select(self, client: aioimaplib.IMAP4, folder: str) -> int:
        response = _ok(await client.select(mailbox_name(folder)), f"SELECT {folder}")
        for line in response.lines:
            if isinstance(line, bytes) and (m := _UIDVALIDITY.search(line)):
                return int(m.group(1))
        return 0

    async def _select_input(self, client: aioimaplib.IMAP4) -> Folder:
        folder = self.source.input_folder
        validity = await self._select(client, folder)
        state = self.store.folder(self.source.name, folder)
        if state is None or state.uidvalidity != validity:
            if state is not None:
                self._log.warning("imap_uidvalidity_changed", folder=folder)
            state = Folder(uidvalidity=validity, last_uid=0)
            self.store.set_folder(self.source.name, folder, state)
        return state

    # -- claiming -----------------------------------------------------------------------------

    async def _take_new(
        self, client: aioimaplib.IMAP4, state: Folder, *, everything: bool
    ) -> Folder:
        """Take what is new, and search again until nothing is and no EXISTS came meanwhile:
        mail announced during a batch (or its SEARCH) is not announced again in IDLE."""
        while True:
            client.protocol.exists_seen = False
            state, taken = await self._take_batch(client, state, everything=everything)
            if not taken and not client.protocol.exists_seen:
                return state
            everything = False

    async def _take_batch(
        self, client: aioimaplib.IMAP4, state: Folder, *, everything: bool
    ) -> tuple[Folder, int]:
        criteria = ("ALL",) if everything else ("UID", f"{state.last_uid + 1}:*")
        uids = await self._search(client, *criteria)
        if not everything:
            uids = [uid for uid in uids if uid > state.last_uid]
        taken = 0
        for uid in uids:
            raw = await self._fetch(client, uid)
            if raw is None:
                continue  # gone (another claimer, or deleted by hand)
            claimed = await self._claim(client, uid, raw)
            if claimed:
                failpoints.hit("mail.after_claim")
                await self.intake.take(self.source, raw)
                failpoints.hit("mail.after_take")
                taken += 1
            if uid > state.last_uid:
                state = Folder(uidvalidity=state.uidvalidity, last_uid=uid)
                self.store.set_folder(self.source.name, self.source.input_folder, state)
        if taken:
            await self._settle(client)
            await self._select(client, self.source.input_folder)
        return state, taken

    async def _search(self, client: aioimaplib.IMAP4, *criteria: str) -> list[int]:
        response = _ok(await client.uid_search(*criteria, charset=None), "UID SEARCH")
        uids: list[int] = []
        for line in response.lines[:-1]:
            if isinstance(line, bytes):
                uids.extend(int(x) for x in line.split() if x.isdigit())
        return sorted(set(uids))

    async def _fetch(self, client: aioimaplib.IMAP4, uid: int) -> bytes | None:
        response = _ok(await client.uid("fetch", str(uid), "(BODY.PEEK[])"), "UID FETCH")
        literals = [bytes(x) for x in response.lines if isinstance(x, bytearray)]
        return max(literals, key=len) if literals else None

    async def _claim(self, client: aioimaplib.IMAP4, uid: int, raw: bytes) -> bool:
        """Move ``uid`` into the processing folder; False when it was no longer there."""
        target = mailbox_name(self.source.processing_folder)
        if client.has_capability("MOVE"):
            response = await client.uid("move", str(uid), target)
        else:
            response = await client.uid("copy", str(uid), target)
            if response.result == "OK":
                await self._delete(client, [uid])
        _ok(response, "claim")
        copied = _copyuid(response)
        if copied is None:
            # Without UIDPLUS we cannot tell; an OK with no COPYUID from a server that has it
            # means nothing matched: someone else claimed the message.
            return not client.has_capability("UIDPLUS")
        validity, new_uid = copied
        self._claimed[validity, new_uid] = message_key(raw)
        return True

    async def _delete(self, client: aioimaplib.IMAP4, uids: list[int]) -> None:
        uid_set = ",".join(map(str, uids))
        _ok(await client.uid("store", uid_set, "+FLAGS.SILENT", r"(\Deleted)"), "STORE")
        if client.has_capability("UIDPLUS"):
            _ok(await client.uid("expunge", uid_set), "UID EXPUNGE")
        else:
            _ok(await client.expunge(), "EXPUNGE")

    # -- filing -------------------------------------------------------------------------------

    async def _settle(self, client: aioimaplib.IMAP4) -> None:
        """Take whatever the processing folder holds that is not taken yet, then file it all."""
        validity = await self._select(client, self.source.processing_folder)
        uids = await self._search(client, "ALL")
        quarantine: list[int] = []
        done: list[int] = []
        for uid in uids:
            key = self._claimed.get((validity, uid))
            inbound = self.store.inbound(self.source.name, key) if key else None
            if inbound is None:
                raw = await self._fetch(client, uid)
                if raw is None:
                    continue
                inbound = await self.intake.take(self.source, raw)
                self._log.info("mail_recovered", interaction_id=inbound.interaction_id)
            (quarantine if inbound.outcome == QUARANTINED else done).append(uid)
        if quarantine:
            await self._file(client, quarantine, self.source.quarantine_folder)
        if done:
            await self._file(client, done, self.source.output_folder)
        for uid in uids:
            self._claimed.pop((validity, uid), None)

    async def _file(self, client: aioimaplib.IMAP4, uids: list[int], folder: str) -> None:
        if not folder:
            await self._delete(client, uids)
            return
        uid_set = ",".join(map(str, uids))
        if client.has_capability("MOVE"):
            _ok(await client.uid("move", uid_set, mailbox_name(folder)), f"MOVE {folder}")
        else:
            _ok(await client.uid("copy", uid_set, mailbox_name(folder)), f"COPY {folder}")
            await self._delete(client, uids)

    # -- waiting ------------------------------------------------------------------------------

    async def _wait_for_mail(self, client: aioimaplib.IMAP4) -> None:
        """Return when there is mail to take (or IDLE is due for renewal)."""
        if not client.has_capability("IDLE"):
            await asyncio.sleep(self.config.poll_interval_s)
            _ok(await client.noop(), "NOOP")
            return
        idle = await client.idle_start(timeout=self.config.idle_renew_s + 60)
        try:
            await self._idle(client)
        finally:
            if not self._lost:
                client.idle_done()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(idle, self.config.timeout_s)

    async def _idle(self, client: aioimaplib.IMAP4) -> None:
        now = time.monotonic
        renew_at = now() + self.config.idle_renew_s
        batch_due: float | None = None
        while True:
            wake_at = renew_at if batch_due is None else min(renew_at, batch_due)
            try:
                push = await client.wait_server_push(timeout=max(0.0, wake_at - now()))
            except TimeoutError:
                return  # renewal, or a batch whose wait is over
            if push == aioimaplib.STOP_WAIT_SERVER_PUSH:
                return
            lines = [line for line in push if isinstance(line, bytes)]
            if any(line.startswith(b"BYE") for line in lines):
                raise ImapFailure("the server said BYE")
            count = max((int(m.group(1)) for ln in lines if (m := _EXISTS.match(ln))), default=0)
            if not count:
                continue
            if count >= self.source.sync_max_changes or self.source.sync_max_wait_s <= 0:
                return
            if batch_due is None:  # Engage-style batching, when asked for
                batch_due = now() + self.source.sync_max_wait_s


def _copyuid(response: Any) -> tuple[int, int] | None:
    for line in response.lines:
        if isinstance(line, bytes) and (m := _COPYUID.search(line)):
            dest = m.group(3).decode()
            if dest.isdigit():
                return int(m.group(1)), int(dest)
    return None


def describe_error(exc: BaseException) -> str:
    """An error for the log: its type and message, never credentials."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
