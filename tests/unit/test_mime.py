"""The inbound email parser (``gateway.mail.mime``) on realistic samples and on hostile bytes.

Samples in ``fixtures/eml``: ``plain`` (Thunderbird, CRLF as fetched over IMAP), ``html_only``
(Outlook, quoted-printable UTF-8), ``alternative_attachment`` (Gmail: mixed > alternative >
related, an inline image and a PDF with an RFC 2231 name, CRLF), ``latin1_qp`` (Mutt,
iso-8859-1), ``gb2312`` and ``shift_jis`` bodies, ``auto_reply`` (Exchange out-of-office),
``bounce`` (Postfix delivery-status report), ``list`` (a newsletter), ``reply`` (a reply with
In-Reply-To and References), ``forward_rfc822`` (a forward with the original attached) and
``no_sender`` (a draft without any sender: unusable).
"""

from __future__ import annotations

import ast
import base64
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mail.mime import (
    Attachment,
    MimeError,
    ParsedEmail,
    attachment,
    auto_reason,
    html_to_text,
    parse,
    user_data,
)

ROOT = Path(__file__).resolve().parents[2]
EML = ROOT / "fixtures" / "eml"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
USABLE = sorted(p.name for p in EML.glob("*.eml") if p.name != "no_sender.eml")


def load(name: str) -> bytes:
    return (EML / name).read_bytes()


def message(headers: str, body: str = "Hello\n", *, sender: str = "From: a@example.com\n") -> bytes:
    """A small message: ``sender``, then ``headers`` (lines ending in a newline), then ``body``."""
    return f"{sender}{headers}\n{body}".encode()


# -- the samples -----------------------------------------------------------------------------


def test_plain_customer_email() -> None:
    raw = load("plain.eml")
    mail = parse(raw)
    assert mail.from_address == "anna.schmidt@example.net"
    assert mail.from_personal == "Anna Schmidt"
    assert mail.sender_address == "anna.schmidt@example.net"
    assert mail.to == ["support@shop.example.com"]
    assert mail.cc == ["billing@shop.example.com"]
    assert mail.reply_to == []
    assert mail.subject == "Order 10482 arrived damaged"
    assert mail.message_id == "<8c1f0a2e-5b7d-4d7e-9a51-3f0c2b6d9e10@example.net>"
    assert mail.date == "Tue, 14 May 2024 09:12:40 +0200"
    assert mail.date_ms == 1_715_670_760_000
    assert mail.text == (
        "Hello,\n\nmy order 10482 arrived today but the box was crushed and the lamp\n"
        "inside is broken. Can you send a replacement?\n\nKind regards,\nAnna Schmidt\n"
    )
    assert mail.html == ""
    assert mail.attachments == ()
    assert mail.auto_reason is None
    assert mail.size == len(raw)


def test_html_only_body_becomes_readable_text() -> None:
    mail = parse(load("html_only.eml"))
    assert mail.from_personal == "José García"
    assert mail.text == (
        "Dear support team,\n\n"
        "I was charged twice for invoice INV-2291 \u2013 once on 3 May and once on 5 May. "
        "Please refund the duplicate payment.\n\n"
        "- Amount: 49,90 €\n"
        "- Card ending 4242\n\n"
        "Thanks & regards,\n"
        "José García"
    )
    assert "trackOpen" not in mail.text and "margin" not in mail.text
    assert mail.html.startswith("<html><head>") and "<b>INV-2291</b>" in mail.html


def test_alternative_with_inline_image_and_attachment() -> None:
    raw = load("alternative_attachment.eml")
    mail = parse(raw)
    assert mail.text.startswith("Hello,\nthe kettle stopped working after two weeks.")
    assert mail.html.startswith('<div dir="ltr">Hello,<br>')
    logo, invoice = mail.attachments
    assert logo == Attachment(
        index=0,
        name="logo.png",
        content_type="image/png",
        size=len(PNG),
        content_id="ii_lw9x1",
        inline=True,
    )
    assert (invoice.index, invoice.name) == (1, "Facture n°12.pdf")
    assert (invoice.content_type, invoice.inline) == ("application/pdf", False)
    assert attachment(raw, 0) == (logo, PNG)
    meta, pdf = attachment(raw, 1)
    assert meta == invoice and pdf.startswith(b"%PDF-1.4") and len(pdf) == invoice.size


@pytest.mark.parametrize("index", [2, -1, 99])
def test_missing_attachment_index_is_a_lookup_error(index: int) -> None:
    with pytest.raises(LookupError):
        attachment(load("alternative_attachment.eml"), index)


def test_latin1_quoted_printable_with_encoded_words() -> None:
    mail = parse(load("latin1_qp.eml"))
    assert mail.subject == "Colis abîmé à la livraison"
    assert mail.from_personal == "François Lévesque"
    assert mail.text == (
        "Bonjour,\n\nJ'ai reçu un colis abîmé. À qui dois-je m'adresser ?\n"
        "Merci d'avance,\nFrançois Lévesque\n"
    )


def test_gb2312_base64_body() -> None:
    mail = parse(load("gb2312.eml"))
    assert (mail.subject, mail.from_personal) == ("订单查询", "李明")
    assert mail.text == "您好，\n\n我的订单 10533 还没有发货，请问什么时候发货？\n\n李明\n"  # noqa: RUF001


def test_shift_jis_8bit_body() -> None:
    mail = parse(load("shift_jis.eml"))
    assert (mail.subject, mail.from_personal) == ("配送状況の確認", "山田太郎")
    assert mail.text == (
        "お世話になっております。\n注文番号 10577 の配送状況を教えてください。\n山田太郎\n"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("auto_reply.eml", "auto-submitted"),
        ("bounce.eml", "bounce"),
        ("list.eml", "list"),
        ("plain.eml", None),
        ("reply.eml", None),
    ],
)
def test_loop_guard_on_samples(name: str, reason: str | None) -> None:
    assert parse(load(name)).auto_reason == reason


def test_bounce_keeps_report_parts_as_attachments() -> None:
    mail = parse(load("bounce.eml"))
    assert mail.from_address == "MAILER-DAEMON@mail.shop.example.com"
    assert mail.text.startswith("I'm sorry to have to inform you")
    assert [a.content_type for a in mail.attachments] == [
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert [a.name for a in mail.attachments] == ["attachment-1.txt", "attachment-2.txt"]
    assert mail.date == "Mon, 20 May 2024 09:05:01 +0200 (CEST)"  # the comment kept
    assert mail.date_ms == 1_716_188_701_000


def test_reply_threading_headers() -> None:
    mail = parse(load("reply.eml"))
    assert mail.subject == "AW: Re: Order 10482 arrived damaged"
    assert mail.from_personal == "Schmidt, Anna"
    assert mail.reply_to == ["anna.private@example.net"]
    assert mail.sender_address == "anna.private@example.net"
    assert mail.in_reply_to == "<reply-0000Ja8V814907JM@shop.example.com>"
    assert mail.references == [
        "<8c1f0a2e-5b7d-4d7e-9a51-3f0c2b6d9e10@example.net>",
        "<reply-0000Ja8V814907JM@shop.example.com>",
    ]


def test_forwarded_message_is_one_eml_attachment() -> None:
    raw = load("forward_rfc822.eml")
    mail = parse(raw)
    assert mail.text == "Please see the message below: I never received this parcel.\n"
    (forwarded,) = mail.attachments
    assert forwarded.name == "Delivery confirmation 10622.eml"
    assert forwarded.content_type == "message/rfc822"
    meta, data = attachment(raw, 0)
    assert meta == forwarded and len(data) == forwarded.size
    inner = parse(data)
    assert (inner.subject, inner.from_address) == (
        "Delivery confirmation 10622",
        "noreply@carrier.example",
    )
    assert inner.text == "Your parcel 10622 was delivered to the front door.\n"


def test_message_without_sender_is_unusable_and_the_error_hides_the_body() -> None:
    with pytest.raises(MimeError, match="sender") as caught:
        parse(load("no_sender.eml"))
    assert "never sent" not in str(caught.value)


@pytest.mark.parametrize("name", USABLE)
def test_crlf_and_lf_give_the_same_email(name: str) -> None:
    raw = load(name)
    lf = raw.replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    a, b = parse(lf), parse(crlf)
    assert msgspec.structs.replace(a, size=0, attachments=()) == msgspec.structs.replace(
        b, size=0, attachments=()
    )
    # text attachments keep the line endings they were sent with, so only their sizes differ
    assert [msgspec.structs.replace(x, size=0) for x in a.attachments] == [
        msgspec.structs.replace(x, size=0) for x in b.attachments
    ]


@pytest.mark.parametrize("name", USABLE)
def test_every_sample_round_trips_through_json(name: str) -> None:
    mail = parse(load(name))
    assert msgspec.json.decode(msgspec.json.encode(mail), type=ParsedEmail) == mail


# -- userData --------------------------------------------------------------------------------


def test_user_data_has_the_email_server_keys() -> None:
    data = user_data(parse(load("plain.eml")), mailbox="support@shop.example.com")
    assert data == {
        "Origination_Source": "Email",
        "Mailbox": "support@shop.example.com",
        "FromAddress": "anna.schmidt@example.net",
        "FromPersonal": "Anna Schmidt",
        "EmailAddress": "anna.schmidt@example.net",
        "To": "support@shop.example.com",
        "Subject": "Order 10482 arrived damaged",
        "Header_Message-ID": "<8c1f0a2e-5b7d-4d7e-9a51-3f0c2b6d9e10@example.net>",
        "Header_Date": "Tue, 14 May 2024 09:12:40 +0200",
        "Header_From": "Anna Schmidt <anna.schmidt@example.net>",
        "Header_To": "Shop Support <support@shop.example.com>",
        "Header_Cc": "billing@shop.example.com",
        "Header_Subject": "Order 10482 arrived damaged",
        "Header_MIME-Version": "1.0",
        "Header_Content-Type": "text/plain; charset=UTF-8",
        "_ContainsAttachment": "false",
        "_AttachmentFileNames": "",
        "_AttachmentsSize": "0",
        "_AutoReplyCount": 0,
    }


def test_user_data_describes_attachments() -> None:
    mail = parse(load("alternative_attachment.eml"))
    data = user_data(mail, mailbox="support@shop.example.com", auto_reply_count=2)
    assert data["_ContainsAttachment"] == "true"
    assert data["_AttachmentFileNames"] == "logo.png, Facture n°12.pdf"
    assert data["_AttachmentsSize"] == str(len(PNG) + mail.attachments[1].size)
    assert data["_AutoReplyCount"] == 2
    assert data["Header_Content-Type"] == 'multipart/mixed; boundary="000000000000mixed"'
    assert all(type(v) in (str, int) for v in data.values())


# -- headers ---------------------------------------------------------------------------------


def test_encoded_words_in_subject_and_from() -> None:
    raw = message(
        "Subject: =?utf-8?b?R3LDvMOfZQ==?= =?utf-8?b?IGF1cw==?=\n   M\xfcnchen\n",
        sender="From: =?iso-8859-1?q?J=F6rg_M=FCller?= <jm@example.de>\n",
    )
    mail = parse(raw)
    assert mail.subject == "Grüße aus München"
    assert mail.from_personal == "Jörg Müller"


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_raw_8bit_headers_are_decoded_not_crashed_on(encoding: str) -> None:
    raw = "From: Zoë <zoe@example.com>\nSubject: Café crème\n\nBonjour\n".encode(encoding)
    mail = parse(raw)
    assert (mail.subject, mail.from_personal) == ("Café crème", "Zoë")
    msgspec.json.encode(mail)  # no lone surrogates left


def test_sender_falls_back_to_sender_then_reply_to() -> None:
    via_sender = parse(message("Sender: Desk <desk@example.com>\n", sender=""))
    assert (via_sender.from_address, via_sender.from_personal) == ("desk@example.com", "Desk")
    via_reply_to = parse(message("Reply-To: r@example.com\n", sender="From: Nobody\n"))
    assert via_reply_to.from_address == via_reply_to.sender_address == "r@example.com"


def test_address_lists_keep_only_usable_addresses() -> None:
    raw = message('To: undisclosed-recipients:;\nCc: "Doe, J" <J.Doe@Example.COM>, bad, <>\n')
    mail = parse(raw)
    assert (mail.to, mail.cc) == ([], ["J.Doe@Example.COM"])


def test_message_ids_dates_and_missing_headers() -> None:
    raw = message(
        "Message-ID:\n <abc@host>  \nIn-Reply-To: Your message of Monday <p@x>\n"
        "References: <r@x> <p@x>\n <r@x>\nDate: 1 Jan 2024 00:00:00 -0000\n"
    )
    mail = parse(raw)
    assert mail.message_id == "<abc@host>"
    assert mail.in_reply_to == "<p@x>"
    assert mail.references == ["<r@x>", "<p@x>"]
    assert mail.date_ms == 1_704_067_200_000  # -0000 is UTC
    bare = parse(message("Date: someday\n"))
    assert (bare.message_id, bare.in_reply_to, bare.references, bare.date_ms) == ("", "", [], None)
    assert bare.subject == "" and "Subject" not in bare.headers


# -- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "body", "text"),
    [
        ("koi8-r", "Привет, мир".encode("koi8-r"), "Привет, мир"),
        ("windows-1252", b"\x93quoted\x94 \x80 5", "“quoted” € 5"),
        ("iso-8859-1", b"\x93smart\x94", "“smart”"),  # windows-1252 sent as latin-1
        ("gbk", "繁體字和简体字".encode("gbk"), "繁體字和简体字"),
        ("x-bogus", "naïve".encode(), "naïve"),  # unknown charset: UTF-8 first
        ("x-bogus", "naïve".encode("latin-1"), "naïve"),  # then latin-1
        ("base64", b"caf\xe9", "café"),  # a codec that is not a text encoding
        ("utf-8", b"ok \xff end", "ok \ufffd end"),  # broken UTF-8: replacement characters
    ],
)
def test_charsets_never_fail(charset: str, body: bytes, text: str) -> None:
    raw = (
        f"From: a@example.com\nContent-Type: text/plain; charset={charset}\n"
        "Content-Transfer-Encoding: 8bit\n\n"
    ).encode() + body
    assert parse(raw).text == text


def test_transfer_encodings_and_default_content_type() -> None:
    b64 = message(
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n",
        base64.b64encode("Grüß Gott\r\n".encode()).decode() + "\n",
    )
    qp = message(
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n",
        "a long line that was=\n soft-broken =C3=A9\n",
    )
    assert parse(b64).text == "Grüß Gott\n"
    assert parse(qp).text == "a long line that was soft-broken é\n"
    assert parse(message("")).text == "Hello\n"  # no Content-Type: text/plain


def test_very_long_lines() -> None:
    raw = message(f"Subject: {'x' * 5000}\n", "y" * 200_000 + "\n")
    mail = parse(raw)
    assert len(mail.subject) == 5000 and len(mail.text) == 200_001


def multipart(kind: str, *parts: str, boundary: str = "b1") -> str:
    """A multipart body: headers line then the parts between boundaries."""
    inner = "".join(f"--{boundary}\n{part}\n" for part in parts)
    return f"Content-Type: multipart/{kind}; boundary={boundary}\n\n{inner}--{boundary}--\n"


def test_body_split_around_an_inline_image_is_joined() -> None:
    body = multipart(
        "mixed",
        "Content-Type: text/plain\n\nbefore",
        "Content-Type: image/png\nContent-Disposition: inline\n"
        "Content-ID: <img1@x>\nContent-Transfer-Encoding: base64\n\n"
        + base64.b64encode(PNG).decode(),
        "Content-Type: text/plain\n\nafter",
    )
    mail = parse(("From: a@example.com\nMIME-Version: 1.0\n" + body).encode())
    assert mail.text == "before\nafter"
    (image,) = mail.attachments
    assert (image.name, image.inline, image.content_id) == ("attachment-1.png", True, "img1@x")


def test_other_renderings_in_an_alternative_are_not_attachments() -> None:
    body = multipart(
        "alternative",
        "Content-Type: text/plain\n\nMeeting at 10",
        "Content-Type: text/html\n\n<p>Meeting at <b>10</b></p>",
        "Content-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR",
    )
    mail = parse(("From: a@example.com\n" + body).encode())
    assert (mail.text, mail.attachments) == ("Meeting at 10", ())
    assert mail.html == "<p>Meeting at <b>10</b></p>"


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('Content-Disposition: attachment; filename="C:\\\\Users\\\\ann\\\\scan.pdf"', "scan.pdf"),
        ('Content-Disposition: attachment; filename="=?UTF-8?B?w6l0w6kucGRm?="', "été.pdf"),
        (
            "Content-Disposition: attachment;\n filename*0*=utf-8''%E6%97%A5%E6%9C%AC;\n"
            ' filename*1="-list.txt"',
            "日本-list.txt",
        ),
        ('Content-Type: application/pdf; name="../../etc/passwd"', "passwd"),
        ("Content-Disposition: attachment", "attachment-1.bin"),
    ],
)
def test_attachment_names(header: str, name: str) -> None:
    default = (
        "" if header.startswith("Content-Type") else "Content-Type: application/octet-stream\n"
    )
    raw = f"From: a@example.com\n{default}{header}\n\nDATA"
    (found,) = parse(raw.encode()).attachments
    assert found.name == name
    assert attachment(raw.encode(), 0)[1] == b"DATA"


def test_text_with_a_filename_is_an_inline_attachment() -> None:
    raw = message('Content-Type: text/plain\nContent-Disposition: inline; filename="notes.txt"\n')
    mail = parse(raw)
    assert mail.text == ""
    assert mail.attachments == (
        Attachment(index=0, name="notes.txt", content_type="text/plain", size=6, inline=True),
    )


def test_multipart_without_boundary_is_read_as_text() -> None:
    mail = parse(message("Content-Type: multipart/mixed\n", "just some text\n"))
    assert (mail.text, mail.attachments) == ("just some text\n", ())


def test_nesting_limit() -> None:
    body = "Content-Type: text/plain\n\ndeep"
    for level in range(10):
        body = multipart("mixed", body, boundary=f"n{level}")
    assert parse(("From: a@example.com\n" + body).encode()).text == "deep"
    for level in range(10, 80):
        body = multipart("mixed", body, boundary=f"n{level}")
    with pytest.raises(MimeError, match="nested"):
        parse(("From: a@example.com\n" + body).encode())


# -- HTML to text ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two</p>", "One\n\nTwo"),
        ("a<br>b<br><br>c", "a\nb\n\nc"),
        ("<div>x</div>\n  <div>  y  z </div>", "x\ny z"),
        (
            "<table><tr><td>Qty</td><td>2</td></tr><tr><td>Total</td><td>9</td></tr></table>",
            "Qty 2\nTotal 9",
        ),
        ("<pre>  keep\n    indent</pre>after", "  keep\n    indent\n\nafter"),
        ("<html><head><title>T</title><body>Body text", "Body text"),  # <head> never closed
        ("&lt;b&gt; &amp; &eacute;&#233;&#xe9; &nbsp;x", "<b> & ééé x"),
        ("<a href='https://x.example'>the link</a>", "the link"),
        ("<![if !supportLists]>1.<![endif]> item", "1. item"),  # Outlook conditionals
        ("<![bogus]>kept <b>text</b>", "kept text"),  # html.parser gives up: tags stripped
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


@given(st.text(max_size=300))
def test_html_to_text_accepts_anything(html: str) -> None:
    assert isinstance(html_to_text(html), str)


# -- loop guard ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("Auto-Submitted: auto-replied\n", "auto-submitted"),
        ("Auto-Submitted: Auto-Generated; owner-email=x@y\n", "auto-submitted"),
        ("Auto-Submitted: no\n", None),
        ("Auto-Submitted: No (sent by a person)\n", None),
        ("Precedence: bulk\n", "precedence"),
        ("Precedence: LIST\n", "precedence"),
        ("Precedence: junk\n", "precedence"),
        ("Precedence: first-class\n", None),
        ("X-Autoreply: yes\n", "x-autoreply"),
        ("X-Autoreply: no\n", None),
        ("X-Autorespond: Vacation\n", "x-autoreply"),
        ("Return-Path: <>\n", "bounce"),
        ("Return-Path: < >\n", "bounce"),
        ("Return-Path: <a@example.com>\n", None),
        ("Content-Type: multipart/report; report-type=delivery-status; boundary=z\n", "bounce"),
        (
            "Content-Type: multipart/report; report-type=disposition-notification; boundary=z\n",
            None,
        ),
        ("List-Id: <users.lists.example.org>\n", "list"),
        ("List-Unsubscribe: <mailto:u@example.org>\n", "list"),
        ("Precedence: list\nList-Id: <users.lists.example.org>\n", "precedence"),
        ("X-Auto-Response-Suppress: All\n", None),
        ("Subject: Out of office?\n", None),
    ],
)
def test_auto_reason(headers: str, reason: str | None) -> None:
    assert parse(message(headers)).auto_reason == reason


@pytest.mark.parametrize("daemon", ["MAILER-DAEMON@mx.example.com", "postmaster@example.com"])
def test_report_from_a_mail_daemon_is_a_bounce(daemon: str) -> None:
    headers = "Content-Type: multipart/report; report-type=x-unknown; boundary=z\n"
    assert parse(message(headers, sender=f"From: {daemon}\n")).auto_reason == "bounce"


def test_auto_reason_takes_an_email_package_message() -> None:
    from email import message_from_bytes, policy

    msg = message_from_bytes(message("Precedence: bulk\n"), policy=policy.default)
    assert auto_reason(msg) == "precedence"


# -- unusable and hostile input --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"  \r\n\r\n", "empty"),
        (b"\x00\xff\xfe garbage \x80\x81", "header"),
        (b"\n\nFrom: a@example.com\n\nbody after an empty header section", "header"),
        (b"Subject: hi\nTo: b@example.com\n\nno author", "sender"),
        (b"From: undisclosed\n\nno domain in the only address", "sender"),
        (b"From: <>\n\nnull address", "sender"),
    ],
)
def test_unusable_messages(raw: bytes, reason: str) -> None:
    with pytest.raises(MimeError, match=reason):
        parse(raw)


HEADER_LINES = st.sampled_from(
    [
        b"From: a@example.com\n",
        b"From: =?x?q?a?= <@>\n",
        b'To: <>, @, "\n',
        b"Subject: =?utf-8?b?\xff?=\n",
        b"Date: 99 Foo 99999 99:99\n",
        b"References: <a> <b@c> <\n",
        b"Content-Type: multipart/mixed; boundary=x\n",
        b"Content-Type: multipart/alternative; boundary=y\n",
        b"Content-Type: message/rfc822\n",
        b"Content-Type: text/html; charset=bogus\n",
        b"Content-Transfer-Encoding: base64\n",
        b"Content-Disposition: attachment; filename*=utf-8''%ff\n",
        b"Content-ID: <\n",
        b"Return-Path: <>\n",
        b"--x\n",
        b"--x--\n",
        b"--y\n",
        b"\n",
        b"<![foo]><p>x",
    ]
)


def check(raw: bytes) -> None:
    """``parse`` returns a ParsedEmail or raises MimeError; attachments read back the same."""
    try:
        mail = parse(raw)
    except MimeError:
        return
    assert isinstance(mail, ParsedEmail)
    msgspec.json.encode(mail)
    for meta in mail.attachments:
        found, data = attachment(raw, meta.index)
        assert found == meta and len(data) == meta.size


@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_an_email_or_mime_error(raw: bytes) -> None:
    check(raw)


@given(st.lists(HEADER_LINES | st.binary(max_size=12), max_size=30))
def test_header_and_body_mixtures_give_an_email_or_mime_error(chunks: list[bytes]) -> None:
    check(b"".join(chunks))


@given(st.text(max_size=60), st.text(max_size=200))
def test_any_subject_and_body_text(subject: str, body: str) -> None:
    raw = b"From: a@example.com\nSubject: " + subject.encode("utf-8", "surrogatepass")
    check(raw + b"\n\n" + body.encode("utf-8", "surrogatepass"))


def test_parser_modules_are_pure() -> None:
    forbidden = {"asyncio", "aiohttp", "logging", "structlog", "socket", "time"}
    for name in ("mime.py", "threads.py"):
        tree = ast.parse((ROOT / "gateway" / "mail" / name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert imported.isdisjoint(forbidden), name
