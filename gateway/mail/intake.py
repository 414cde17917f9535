"""A claimed message becomes an interaction, durably and once.

:meth:`Intake.take` is called with a message's bytes after the listener has claimed it (moved
it into the processing folder).  It decides, records and commits in one transaction:

* a message already recorded for this source (same Message-ID, or same bytes when it has no
  Message-ID) is not taken again: the record says what became of it;
* a message that cannot be parsed is kept (bytes in the store, the message in the quarantine
  folder), logged and counted, never offered and never dropped;
* an auto-reply, bounce or list mail is kept and counted, not offered (a loop guard);
* any other becomes an email interaction in the source's queue, joining its thread when the
  customer answers one of ours (In-Reply-To / References) or writes again with the same
  subject within :data:`SUBJECT_THREAD_WINDOW_MS`.

Optionally the customer gets an acknowledgement, queued in the outbox in the same transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from email.parser import BytesHeaderParser
from email.policy import compat32

import structlog

from gateway.config import MailSource
from gateway.interactions.machine import Kind
from gateway.interactions.model import EmailContent
from gateway.interactions.service import InteractionService
from gateway.interactions.store import Write
from gateway.mail import mime
from gateway.mail.store import AUTO, OFFERED, QUARANTINED, Inbound, InboundWrite, MailStore
from gateway.mail.threads import normalize_subject, thread_references

__all__ = ["Intake", "message_key"]

log = structlog.get_logger("gateway.mail.intake")

SUBJECT_THREAD_WINDOW_MS = 30 * 24 * 3600 * 1000

AckMaker = Callable[[MailSource, Inbound, EmailContent], Write | None]


def message_key(raw: bytes) -> str:
    """The de-duplication key: the Message-ID, or a hash of the bytes when there is none."""
    try:
        value = BytesHeaderParser(policy=compat32).parsebytes(raw).get("Message-ID")
    except Exception:  # any header garbage: fall back to the bytes
        value = None
    mid = " ".join(str(value).split()) if value else ""
    if mid:
        return "mid:" + mid
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class Intake:
    def __init__(
        self,
        service: InteractionService,
        store: MailStore,
        *,
        new_id: Callable[[], str],
        ack: AckMaker | None = None,
    ) -> None:
        self.service = service
        self.store = store
        self.new_id = new_id
        self.ack = ack
        self.duplicates = 0  # messages recognised as taken before (outcomes are in the store)

    async def take(self, source: MailSource, raw: bytes) -> Inbound:
        key = message_key(raw)
        known = self.store.inbound(source.name, key)
        if known is not None:
            self.duplicates += 1
            log.info("mail_duplicate", source=source.name, interaction_id=known.interaction_id)
            return known
        now = self.service.clock_ms()
        try:
            parsed = mime.parse(raw)
        except mime.MimeError as exc:
            return await self._keep(source, key, raw, now, QUARANTINED, str(exc))
        if parsed.auto_reason is not None:
            return await self._keep(source, key, raw, now, AUTO, parsed.auto_reason, parsed)
        return await self._offer(source, key, raw, now, parsed)

    async def _keep(
        self,
        source: MailSource,
        key: str,
        raw: bytes,
        now: int,
        outcome: str,
        reason: str,
        parsed: mime.ParsedEmail | None = None,
    ) -> Inbound:
        inbound = Inbound(
            source=source.name,
            key=key,
            outcome=outcome,
            reason=reason,
            interaction_id=None,
            thread_id=None,
            from_address=parsed.from_address.lower() if parsed else "",
            subject_key="",
            received_ms=now,
            raw=raw,
        )
        await self.service.store.save((), {}, [InboundWrite(inbound)])
        event = "mail_quarantined" if outcome == QUARANTINED else "mail_not_offered"
        log.warning(event, source=source.name, reason=reason, size=len(raw))
        return inbound

    async def _offer(
        self, source: MailSource, key: str, raw: bytes, now: int, parsed: mime.ParsedEmail
    ) -> Inbound:
        subject_key = normalize_subject(parsed.subject)
        sender = parsed.from_address.lower()
        found = self.store.thread_by_ids(thread_references(parsed))
        if found is None and subject_key:
            found = self.store.thread_by_subject(
                source.name, sender, subject_key, now - SUBJECT_THREAD_WINDOW_MS
            )
        interaction_id = self.new_id()
        parent_id, thread_id = found if found is not None else (None, interaction_id)
        mailbox = source.address or source.username
        user_data = mime.user_data(parsed, mailbox=mailbox)
        user_data["ThreadId"] = thread_id
        email = EmailContent(
            subject=parsed.subject,
            text=parsed.text,
            html=parsed.html,
            from_address=parsed.from_address,
            from_personal=parsed.from_personal,
            to=list(parsed.to),
            cc=list(parsed.cc),
            message_id=parsed.message_id,
            in_reply_to=parsed.in_reply_to,
            references=list(parsed.references),
        )
        effects = self.service.center.create(
            kind=Kind.EMAIL,
            queue=source.queue,
            now=now,
            user_data=user_data,
            email=email,
            interaction_id=interaction_id,
            parent_id=parent_id,
        )
        inbound = Inbound(
            source=source.name,
            key=key,
            outcome=OFFERED,
            reason="",
            interaction_id=interaction_id,
            thread_id=thread_id,
            from_address=sender,
            subject_key=subject_key,
            received_ms=now,
            raw=raw,
            message_ids=(parsed.message_id,) if parsed.message_id else (),
        )
        writes: list[Write] = [InboundWrite(inbound)]
        if self.ack is not None and source.acknowledge and parent_id is None:
            ack = self.ack(source, inbound, email)
            if ack is not None:
                writes.append(ack)
        await self.service.apply(effects, writes)
        if len(writes) > 1 and self.service.outbox is not None:
            self.service.outbox.wake()
        log.info(
            "mail_offered",
            source=source.name,
            interaction_id=interaction_id,
            thread_id=thread_id,
            attachments=len(parsed.attachments),
            size=len(raw),
        )
        return inbound
