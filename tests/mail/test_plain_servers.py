"""A server with neither IDLE nor MOVE nor UIDPLUS (Dovecot told to advertise only IMAP4rev1):
the listener polls, claims by COPY + \\Deleted + EXPUNGE, and still takes each message once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from contact.conftest import MakeCenter, make_center  # noqa: F401 (fixture)
from mailservers import Dovecot, ImapProbe

from mail.gateway import customer_mail, mail_section, mail_status, runtime, state, wait_ready


@pytest.fixture(scope="module")
def bare_dovecot() -> Iterator[Dovecot]:
    with Dovecot(extra_config="protocol imap {\n  imap_capability = IMAP4rev1\n}") as server:
        yield server


async def test_polling_and_copy_claims_without_idle_move_or_uidplus(
    make_center: MakeCenter,  # noqa: F811
    bare_dovecot: Dovecot,
) -> None:
    mailbox = bare_dovecot.new_mailbox()
    imap = await ImapProbe.connect(mailbox.imap_port, mailbox.user, mailbox.password)
    try:
        assert not imap.client.has_capability("IDLE")
        assert not imap.client.has_capability("MOVE")
        center = await make_center(
            names=("agent1",), mail=mail_section(mailbox, poll_interval_s=0.2)
        )
        await wait_ready(center.gateway.app)
        desk = await center.desktop("agent1", "email")
        for n in range(2):
            raw, _ = customer_mail(f"Polled {n}")
            await imap.append(raw)
        invited = await desk.next_message(state("Invited"), within=5)
        assert invited["userData"]["Subject"] == "Polled 0"
        await imap.wait_count("Done", 2)
        assert await imap.count("INBOX") == 0
        assert await imap.count("Processing") == 0
        status = await mail_status(center.base, center.token)
        assert status["received"] == {"offered": 2}
        assert runtime(center.gateway.app).listeners["support"].connects == 1
    finally:
        await imap.close()
