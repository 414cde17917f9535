"""The outbox: replies (and acknowledgements) leave by SMTP as soon as they are sent.

:meth:`Outbox.prepare` builds the exact bytes of a reply when the agent sends it; the service
commits them to ``mail_out`` in the same transaction as the draft's Sending state, then calls
:meth:`Outbox.wake`, and :meth:`Outbox.run` hands the message to aiosmtplib at once, over a
connection kept open per sender.

* Accepted: the draft is Completed; a copy goes to the source's Sent folder when one is named.
* A temporary failure (4xx, no connection, a timeout, a refused login) is retried with
  exponential backoff and jitter, from ``mail.retry_min_s`` up to ``mail.retry_max_s``, for
  ``mail.retry_for_s``; a restart resumes from the table.
* A permanent failure (5xx), or retrying for too long, returns the draft to its agent in
  Composing with an Error notification; the outbox row stays, ``failed``, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Callable, Mapping

import aiosmtplib
import structlog

from gateway import failpoints
from gateway.config import MailConfig, MailSender, MailSource
from gateway.interactions.effects import SendEmail
from gateway.interactions.model import EmailContent
from gateway.interactions.service import InteractionService
from gateway.interactions.store import Write
from gateway.mail import compose
from gateway.mail.imap import connect, describe_error, mailbox_name, tls_context
from gateway.mail.oauth import TokenSource
from gateway.mail.store import FAILED, QUEUED, SENT, Inbound, MailStore, Outgoing, OutgoingWrite

__all__ = ["Outbox", "Rejected", "secret"]

log = structlog.get_logger("gateway.mail.smtp")


class Rejected(Exception):
    """The SMTP server refused the message for good (a 5xx)."""


def secret(server: MailSource | MailSender, env: Mapping[str, str] | None = None) -> str:
    """The password a server is configured with (directly or through the environment)."""
    if server.password_env:
        return (os.environ if env is None else env).get(server.password_env, "")
    return server.password


class Outbox:
    def __init__(
        self,
        config: MailConfig,
        store: MailStore,
        service: InteractionService,
        *,
        tokens: Mapping[str, TokenSource],
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.store = store
        self.service = service
        self.tokens = tokens  # by "source:<name>" / "sender:<name>"
        self.rng = rng
        self.sources = {s.name: s for s in config.sources}
        self.senders = {s.name: s for s in config.senders}
        self._wake = asyncio.Event()
        self._clients: dict[str, aiosmtplib.SMTP] = {}

    # -- composing (called inside the service's transaction) ----------------------------------

    def prepare(self, email: SendEmail) -> Write:
        draft = email.draft
        content = draft.email or EmailContent()
        source = self._source_of(str(draft.user_data.get("Mailbox", "")))
        sender = self._sender_for(source, draft.queue)
        mail_from = self._from_address(sender, source, content.from_address)
        now = self.service.clock_ms()
        msg_id = compose.message_id(draft.id, self._domain(mail_from))
        raw = compose.build_reply(content, mail_from=mail_from, msg_id=msg_id, date_ms=now)
        outgoing = Outgoing(
            id=draft.id,
            kind="reply",
            interaction_id=draft.id,
            source=source.name if source else "",
            sender=sender.name if sender else "",
            message_id=msg_id,
            mail_from=mail_from,
            rcpts=tuple(dict.fromkeys([*content.to, *content.cc])),
            raw=raw,
            created_ms=now,
            next_ms=now,
            thread_id=str(draft.user_data.get("ThreadId") or draft.parent_id or draft.id),
        )
        return OutgoingWrite(outgoing)

    def acknowledge(self, source: MailSource, inbound: Inbound, email: EmailContent) -> Write:
        sender = self._sender_for(source, source.queue)
        mail_from = self._from_address(sender, source, "")
        now = self.service.clock_ms()
        assert inbound.interaction_id is not None
        msg_id = compose.message_id(inbound.interaction_id, self._domain(mail_from))
        raw = compose.build_ack(
            email, mail_from=mail_from, text=source.acknowledge_text, msg_id=msg_id, date_ms=now
        )
        return OutgoingWrite(
            Outgoing(
                id="ack-" + inbound.interaction_id,
                kind="ack",
                interaction_id=inbound.interaction_id,
                source=source.name,
                sender=sender.name if sender else "",
                message_id=msg_id,
                mail_from=mail_from,
                rcpts=(email.from_address,),
                raw=raw,
                created_ms=now,
                next_ms=now,
                thread_id=inbound.thread_id or "",
            )
        )

    def _source_of(self, mailbox: str) -> MailSource | None:
        for source in self.sources.values():
            if mailbox and mailbox.lower() in (source.address.lower(), source.username.lower()):
                return source
        return next(iter(self.sources.values())) if len(self.sources) == 1 else None

    def _sender_for(self, source: MailSource | None, queue: str) -> MailSender | None:
        if source is not None and source.sender:
            return self.senders.get(source.sender)
        for sender in self.senders.values():
            if queue in sender.queues:
                return sender
        return next((s for s in self.senders.values() if not s.queues), None)

    @staticmethod
    def _from_address(sender: MailSender | None, source: MailSource | None, fallback: str) -> str:
        if sender is not None and sender.from_address:
            return sender.from_address
        if source is not None:
            return source.address or source.username
        return fallback

    def _domain(self, mail_from: str) -> str:
        return self.config.message_id_domain or compose.domain_of(mail_from)

    # -- sending ------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                for outgoing in self.store.due(self.service.clock_ms()):
                    await self._attempt(outgoing)
                await self._sleep_until_due()
        finally:
            for client in self._clients.values():
                with contextlib.suppress(Exception):
                    client.close()

    async def _sleep_until_due(self) -> None:
        due = self.store.next_due_ms()
        timeout = None if due is None else max(0.0, (due - self.service.clock_ms()) / 1000)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _attempt(self, outgoing: Outgoing) -> None:
        sender = self.senders.get(outgoing.sender)
        bound = log.bind(interaction_id=outgoing.interaction_id, sender=outgoing.sender)
        try:
            if sender is None:
                raise ConnectionError("no mail sender is configured for this reply")
            if not outgoing.rcpts:
                raise Rejected("the reply has no recipient")
            failpoints.hit("mail.before_smtp")
            refused = await self._send(sender, outgoing)
        except Rejected as exc:
            self._drop(outgoing.sender)
            await self._failed(outgoing, str(exc))
            bound.warning("mail_rejected", kind=outgoing.kind, error=str(exc))
            return
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop(outgoing.sender)
            await self._retry(outgoing, describe_error(exc), bound)
            return
        await self._sent(outgoing, refused)
        bound.info("mail_sent", kind=outgoing.kind, attempts=outgoing.attempts + 1)

    async def _send(self, sender: MailSender, outgoing: Outgoing) -> str:
        """Hand the message over; return what recipients were refused ("" for none)."""
        for attempt in (1, 2):  # a kept connection may have been closed by the server
            client = await self._client(sender)
            try:
                errors, _ = await client.sendmail(
                    outgoing.mail_from, list(outgoing.rcpts), outgoing.raw
                )
            except aiosmtplib.SMTPServerDisconnected:
                self._clients.pop(sender.name, None)
                if attempt == 2:
                    raise
                continue
            except aiosmtplib.SMTPRecipientsRefused as exc:
                codes = [r.code for r in exc.recipients]
                if all(code >= 500 for code in codes):
                    raise Rejected(_refusals(exc.recipients)) from None
                raise
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code >= 500 and not isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                    raise Rejected(f"{exc.code} {exc.message}") from None
                raise
            return "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in errors.items())
        raise AssertionError("unreachable")

    async def _client(self, sender: MailSender) -> aiosmtplib.SMTP:
        client = self._clients.get(sender.name)
        if client is not None and client.is_connected:
            return client
        tokens = self.tokens.get("sender:" + sender.name)
        client = aiosmtplib.SMTP(
            hostname=sender.host,
            port=sender.port,
            username=(sender.username or None) if tokens is None else sender.username,
            password=(secret(sender) or None) if tokens is None else None,
            oauth_token_generator=tokens.token if tokens is not None else None,
            use_tls=sender.tls == "tls",
            start_tls=sender.tls == "starttls",
            tls_context=tls_context(sender) if sender.tls != "none" else None,
            timeout=self.config.timeout_s,
        )
        await client.connect()
        self._clients[sender.name] = client
        return client

    def _drop(self, sender: str) -> None:
        """Forget a connection after a failure: the next attempt starts a clean session."""
        client = self._clients.pop(sender, None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _finish(self, outgoing: Outgoing, status: str, error: str) -> int:
        """Record the last attempt of a message that is now sent or failed; the time."""
        now = self.service.clock_ms()
        self.store.update_outgoing(
            outgoing.id,
            status=status,
            attempts=outgoing.attempts + 1,
            next_ms=outgoing.next_ms,
            last_error=error,
            done_ms=now,
        )
        return now

    async def _sent(self, outgoing: Outgoing, refused: str) -> None:
        now = self._finish(outgoing, SENT, refused)
        if outgoing.kind == "reply":
            await self.service.apply(self.service.center.sent(outgoing.interaction_id, now))
        source = self.sources.get(outgoing.source)
        if source is not None and source.sent_folder:
            await self._copy_to_sent(source, outgoing)

    async def _retry(self, outgoing: Outgoing, error: str, bound: structlog.BoundLogger) -> None:
        now = self.service.clock_ms()
        if now - outgoing.created_ms >= self.config.retry_for_s * 1000:
            await self._failed(outgoing, f"gave up after {outgoing.attempts + 1} tries: {error}")
            bound.warning("mail_given_up", error=error)
            return
        pause = min(self.config.retry_min_s * 2**outgoing.attempts, self.config.retry_max_s)
        pause *= 0.5 + self.rng() / 2
        self.store.update_outgoing(
            outgoing.id,
            status=QUEUED,
            attempts=outgoing.attempts + 1,
            next_ms=now + int(pause * 1000),
            last_error=error,
            done_ms=None,
        )
        bound.warning("mail_deferred", error=error, retry_in_s=round(pause, 1))

    async def _failed(self, outgoing: Outgoing, error: str) -> None:
        now = self._finish(outgoing, FAILED, error)
        if outgoing.kind == "reply":
            center = self.service.center
            await self.service.apply(center.send_failed(outgoing.interaction_id, error, now))

    async def _copy_to_sent(self, source: MailSource, outgoing: Outgoing) -> None:
        """Best effort: the reply has left already; a failure here is logged, not retried."""
        try:
            client = await connect(
                source,
                timeout_s=self.config.timeout_s,
                tokens=self.tokens.get("source:" + source.name),
                password=secret(source),
            )
            try:
                await client.create(mailbox_name(source.sent_folder))
                await client.append(
                    outgoing.raw, mailbox=mailbox_name(source.sent_folder), flags=r"(\Seen)"
                )
            finally:
                await client.logout()
        except Exception as exc:
            log.warning(
                "mail_sent_copy_failed",
                interaction_id=outgoing.interaction_id,
                error=describe_error(exc),
            )


def _refusals(recipients: list[aiosmtplib.SMTPRecipientRefused]) -> str:
    return "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in recipients)
