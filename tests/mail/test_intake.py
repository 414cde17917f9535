"""What the intake does with each kind of message, against a real Dovecot mailbox."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from contact.conftest import MakeCenter, make_center  # noqa: F401 (fixture)
from mailservers import ImapProbe, Mailbox

from mail.gateway import (
    agent_and_mail,
    customer_mail,
    mail_section,
    mail_status,
    runtime,
    source,
    state,
    wait_ready,
    wait_until,
)


async def test_auto_replies_bounces_and_lists_are_kept_not_offered(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
) -> None:
    center, desk = await agent_and_mail(make_center, mailbox)
    for headers in (
        {"Auto-Submitted": "auto-replied"},
        {"Precedence": "bulk"},
        {"X-Autoreply": "yes"},
        {"List-Id": "<news.shop.example>"},
        {"Return-Path": "<>"},
    ):
        raw, _ = customer_mail("Out of office", headers=headers)
        await imap.append(raw)
    real, _ = customer_mail("A real question")
    await imap.append(real)
    invited = await desk.next_message(state("Invited"), within=5)
    assert invited["userData"]["Subject"] == "A real question"
    assert await desk.quiet(0.5) == []
    await imap.wait_count("Done", 6)
    status = await mail_status(center.base, center.token)
    assert status["received"] == {"auto": 5, "offered": 1}
    assert status["sources"] == [
        {"name": "support", "connected": True, "connects": 1, "lastError": ""}
    ]


async def test_a_message_that_cannot_be_parsed_is_quarantined_not_dropped(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
) -> None:
    center, desk = await agent_and_mail(make_center, mailbox)
    garbage = b"this is not an email at all\r\nno headers, no sender\r\n"
    await imap.append(garbage)
    await imap.wait_count("Quarantine", 1)
    assert await imap.messages("Quarantine") == [garbage]
    assert await imap.count("INBOX") == 0 and await imap.count("Processing") == 0
    assert await desk.quiet(0.3) == []
    assert (await mail_status(center.base, center.token))["received"] == {"quarantined": 1}
    store = runtime(center.gateway.app).store
    assert store is not None
    [kept] = [m for m in store.db.execute("SELECT outcome, reason, raw FROM mail_in")]
    assert kept[0] == "quarantined" and kept[1] and kept[2] == garbage


async def test_attachments_travel_as_names_and_sizes_and_are_fetched_over_rest(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
) -> None:
    center, desk = await agent_and_mail(make_center, mailbox)
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40
    raw, _ = customer_mail("Invoice", attachment=("facture n°12.pdf", pdf))
    await imap.append(raw)
    invited = await desk.next_message(state("Invited"), within=5)
    user_data = invited["userData"]
    assert user_data["_ContainsAttachment"] == "true"
    assert user_data["_AttachmentFileNames"] == "facture n°12.pdf"
    assert user_data["_AttachmentsSize"] == str(len(pdf))
    assert "JVBERi" not in str(invited)  # no attachment bytes in the notification
    ix = invited["id"]
    await desk.operate(ix, "Accept")
    status, body = await desk.get(f"/api/v2/me/interactions/{ix}/attachments")
    assert status == 200
    [item] = body["attachments"]
    assert item["name"] == "facture n°12.pdf" and item["size"] == len(pdf)
    response = await desk.http.get(center.base + item["uri"])
    assert response.status == 200
    assert response.content_type == "application/pdf"
    assert await response.read() == pdf
    missing = await desk.http.get(center.base + item["uri"][:-1] + "7")
    assert missing.status == 404
    async with aiohttp.ClientSession() as stranger:
        response = await stranger.get(center.base + item["uri"])
        assert response.status == 401


async def test_mail_that_arrived_while_the_gateway_was_down_is_taken_once_at_start(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
) -> None:
    for n in range(3):
        raw, _ = customer_mail(f"Question {n}")
        await imap.append(raw)
    duplicate, _ = customer_mail("Question 0 again", message_id="<same@customer.example>")
    await imap.append(duplicate)
    await imap.append(duplicate)  # the customer's server delivered it twice
    center = await make_center(names=("agent1",), mail=mail_section(mailbox))
    await wait_ready(center.gateway.app)
    await imap.wait_count("Done", 5)
    status = await mail_status(center.base, center.token)
    assert status["received"] == {"offered": 4}
    assert status["duplicates"] == 1


async def test_processed_mail_is_deleted_when_no_output_folder_is_named(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
) -> None:
    center = await make_center(
        names=("agent1",),
        mail=mail_section(mailbox, sources=[source(mailbox, output_folder="")]),
    )
    await wait_ready(center.gateway.app)
    desk = await center.desktop("agent1", "email")
    raw, _ = customer_mail()
    await imap.append(raw)
    await desk.next_message(state("Invited"), within=5)
    await imap.wait_count("INBOX", 0)
    await imap.wait_count("Processing", 0)


@pytest.mark.parametrize("tls", ["tls", "starttls"])
async def test_imaps_and_starttls_with_the_servers_certificate(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
    tls: str,
) -> None:
    port = mailbox.imaps_port if tls == "tls" else mailbox.imap_port
    secure = source(mailbox, tls=tls, port=port, ca_file=str(mailbox.cert_path), host="localhost")
    center = await make_center(names=("agent1",), mail=mail_section(mailbox, sources=[secure]))
    await wait_ready(center.gateway.app)
    desk = await center.desktop("agent1", "email")
    raw, _ = customer_mail("Over TLS")
    await imap.append(raw)
    invited = await desk.next_message(state("Invited"), within=5)
    assert invited["userData"]["Subject"] == "Over TLS"


async def test_an_untrusted_certificate_is_refused_and_retried(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
) -> None:
    untrusted = source(mailbox, tls="tls", port=mailbox.imaps_port, host="localhost")
    center = await make_center(names=("agent1",), mail=mail_section(mailbox, sources=[untrusted]))
    listener = runtime(center.gateway.app).listeners["support"]
    await wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in listener.last_error, within=5)
    assert not listener.ready.is_set()


async def test_engage_style_batching_waits_for_enough_mail(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
) -> None:
    batched = source(mailbox, sync_max_changes=3, sync_max_wait_s=60)
    center = await make_center(names=("agent1",), mail=mail_section(mailbox, sources=[batched]))
    await wait_ready(center.gateway.app)
    for n in range(2):
        raw, _ = customer_mail(f"Batch {n}")
        await imap.append(raw)
    await asyncio.sleep(1.5)  # a negative: Dovecot announces an APPEND after ~0.5 s
    assert await imap.count("INBOX") == 2
    raw, _ = customer_mail("Batch 2")
    await imap.append(raw)
    await imap.wait_count("Done", 3)
    assert (await mail_status(center.base, center.token))["received"] == {"offered": 3}
