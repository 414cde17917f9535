"""A customer's email through a real Dovecot to an agent's CometD desktop, and the reply out
through SMTP, as a contact center would see it."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from contact.conftest import MakeCenter, make_center  # noqa: F401 (fixture)
from mailservers import ImapProbe, Mailbox, SmtpSink
from wire_shape import assert_same_shape

from gateway.interactions.wire import EXTRA_KEYS
from gateway.mail.store import OFFERED
from mail.gateway import (
    agent_and_mail,
    customer_mail,
    mail_section,
    reply_to_next,
    runtime,
    source,
    state,
    wait_ready,
    wait_until,
)

Msg = dict[str, Any]
SEED = Path(__file__).resolve().parents[2] / "fixtures" / "seed"


def assert_seed_shape(name: str, data: Msg) -> None:
    """The seed payload's shape, but for userData: a real email's keys are its own."""
    expected = json.loads((SEED / f"{name}.json").read_text())[0]["data"]
    expected["userData"] = data["userData"]
    assert_same_shape(expected, data, extra_keys=EXTRA_KEYS)


@pytest.mark.parametrize("transport", ["long-polling", "websocket"])
async def test_customer_email_to_agent_and_reply_to_customer(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
    smtp_sink: SmtpSink,
    transport: str,
) -> None:
    center = await make_center(names=("agent1",), mail=mail_section(mailbox, smtp_sink))
    app = center.gateway.app
    await wait_ready(app)
    desk = await center.desktop("agent1", "email", transport=transport)

    raw, message_id = customer_mail(
        "Where is my order?", "Hello,\nmy order 1234 has not arrived.\nJane"
    )
    await imap.append(raw)
    invited = await desk.next_message(state("Invited"), within=5)
    ix = invited["id"]
    assert_seed_shape("email_invited", invited)
    user_data = invited["userData"]
    assert user_data["FromAddress"] == "jane@customer.example"
    assert user_data["FromPersonal"] == "Jane Doe"
    assert user_data["EmailAddress"] == "jane@customer.example"
    assert user_data["Subject"] == "Where is my order?"
    assert user_data["Mailbox"] == f"{mailbox.user}@example.test"
    assert user_data["Origination_Source"] == "Email"
    assert user_data["Header_Message-ID"] == message_id
    assert user_data["_ContainsAttachment"] == "false"
    assert user_data["ThreadId"] == ix

    status, _ = await desk.operate(ix, "Accept")
    assert status == 200
    accepted = await desk.next_message(state("Accepted", ix))
    assert_seed_shape("email_accepted", accepted)
    assert accepted["email_object"] == {
        "text": "Hello,\nmy order 1234 has not arrived.\nJane\n",
        "interactionId": ix,
        "fromAddress": "jane@customer.example",
        "toAddress": "support@example.test",
        "subject": "Where is my order?",
    }
    # claimed once, then filed: nothing left in INBOX or the processing folder
    await imap.wait_count("Done", 1)
    assert await imap.count("INBOX") == 0
    assert await imap.count("Processing") == 0

    status, _ = await desk.operate(ix, "Reply")
    assert status == 200
    composing = await desk.next_message(state("Composing"))
    draft = composing["id"]
    status, _ = await desk.operate(
        draft, "Send", email={"bodyAsPlainText": "Your parcel left today.", "body": "<p>Hi</p>"}
    )
    assert status == 200
    await desk.next_message(state("Completed", draft))

    [sent] = await smtp_sink.wait_for(1)
    assert sent.rcpt_tos == ("jane@customer.example",)
    assert sent.mail_from == f"{mailbox.user}@example.test"
    reply = message_from_bytes(sent.content, policy=policy.default)
    assert reply["Subject"] == "Re: Where is my order?"
    assert reply["In-Reply-To"] == message_id
    assert reply["References"] == message_id
    assert reply["From"] == f"{mailbox.user}@example.test"
    assert str(reply["Message-ID"]).startswith(f"<{draft}.")
    assert reply.get_body(("plain",)).get_content().strip() == "Your parcel left today."
    assert reply.get_body(("html",)).get_content().strip() == "<p>Hi</p>"
    mail = runtime(app)
    await wait_until(lambda: mail.status()["outbox"] == {"sent": 1}, what="outbox marks it sent")
    assert mail.status()["received"] == {OFFERED: 1}


async def test_a_customer_answering_our_reply_joins_the_thread(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
    smtp_sink: SmtpSink,
) -> None:
    _, desk = await agent_and_mail(make_center, mailbox, smtp_sink)
    raw, _ = customer_mail("Broken kettle")
    await imap.append(raw)
    first, draft = await reply_to_next(desk, "Please send a photo.")
    await desk.operate(first, "Complete")
    [sent] = await smtp_sink.wait_for(1)
    ours = message_from_bytes(sent.content, policy=policy.default)

    # the customer's mail program answers with In-Reply-To (subject changed on purpose)
    answer, _ = customer_mail(
        "photo attached", "Here it is.", headers={"In-Reply-To": str(ours["Message-ID"])}
    )
    await imap.append(answer)
    second = await desk.next_message(state("Invited"), within=5)
    assert second["id"] != first
    assert second["userData"]["ThreadId"] == first
    assert second["parentInteractionId"] == draft

    # a new mail with only the subject in common (reply prefix in another language)
    again, _ = customer_mail("AW: Broken kettle", "Any news?")
    await imap.append(again)
    await desk.operate(second["id"], "Accept")
    await desk.operate(second["id"], "Complete")
    third = await desk.next_message(state("Invited"), within=5)
    assert third["userData"]["ThreadId"] == first

    # another customer with the same subject starts a thread of their own
    other, _ = customer_mail("Broken kettle", sender="bob@elsewhere.example")
    await imap.append(other)
    await desk.operate(third["id"], "Accept")
    await desk.operate(third["id"], "Complete")
    fourth = await desk.next_message(state("Invited"), within=5)
    assert fourth["userData"]["ThreadId"] == fourth["id"]


async def test_acknowledgement_sent_folder_copy_and_xoauth2_sender(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
    make_smtp_sink: Any,
) -> None:
    sink = await make_smtp_sink(oauth_token="tok-123", require_auth=True)
    section = mail_section(
        mailbox,
        sink,
        sources=[source(mailbox, acknowledge=True, sent_folder="Sent")],
    )
    section["senders"][0]["username"] = "support@example.test"
    section["senders"][0]["oauth_token_command"] = "printf tok-123"
    center = await make_center(names=("agent1",), mail=section)
    await wait_ready(center.gateway.app)
    desk = await center.desktop("agent1", "email")
    raw, message_id = customer_mail("Refund please")
    await imap.append(raw)
    [ack] = await sink.wait_for(1)
    assert ack.auth_mechanism == "XOAUTH2"
    receipt = message_from_bytes(ack.content, policy=policy.default)
    assert receipt["Auto-Submitted"] == "auto-replied"
    assert receipt["In-Reply-To"] == message_id
    assert ack.rcpt_tos == ("jane@customer.example",)

    ix, _ = await reply_to_next(desk, "Refunded.")
    await sink.wait_for(2)
    await imap.wait_count("Sent", 2)  # the acknowledgement and the reply
    assert any(b"Refunded." in copy for copy in await imap.messages("Sent"))
    # a follow-up in the same thread gets no second acknowledgement
    again, _ = customer_mail("Re: Refund please", headers={"In-Reply-To": message_id})
    await imap.append(again)
    await desk.operate(ix, "Complete")
    await desk.next_message(state("Invited"), within=5)
    assert len(sink.messages) == 2


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_replies_over_starttls_or_tls_with_auth(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
    make_smtp_sink: Any,
    tls_cert: Any,
    tls: str,
) -> None:
    sink = await make_smtp_sink(
        username="mailer",
        password="s3cret",
        require_auth=True,
        tls_cert=tls_cert.cert_path,
        tls_key=tls_cert.key_path,
        implicit_tls=tls == "tls",
    )
    section = mail_section(mailbox, sink)
    section["senders"][0].update(
        tls=tls, username="mailer", password="s3cret", ca_file=str(tls_cert.cert_path)
    )
    center = await make_center(names=("agent1",), mail=section)
    await wait_ready(center.gateway.app)
    desk = await center.desktop("agent1", "email")
    raw, _ = customer_mail("Secure please")
    await imap.append(raw)
    await reply_to_next(desk, "Sent securely.")
    [sent] = await sink.wait_for(1)
    assert sent.tls is True
    assert sent.auth_mechanism in ("PLAIN", "LOGIN") and sent.auth_login == "mailer"
