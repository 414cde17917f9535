"""Thread helpers (``gateway.mail.threads``): subject keys, reply subjects, Message-IDs to try."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mail.mime import parse
from gateway.mail.threads import normalize_subject, reply_subject, thread_references

EML = Path(__file__).resolve().parents[2] / "fixtures" / "eml"


@pytest.mark.parametrize(
    "subject",
    [
        "Hello",
        "  hello  ",
        "Re: AW: Fwd: Hello",
        "RE: RE: Hello",
        "Re:Re:Hello",
        "RE : Hello",  # French spacing
        "Re[2]: Hello",
        "Re(3): Hello",
        "Re^2: Hello",
        "Re - Hello",
        "Re> Hello",
        "FW: Hello",
        "Fwd: Hello (fwd)",
        "WG: AW: Hello",  # German
        "SV: VB: Hello",  # Swedish
        "VS: VL: Hello",  # Finnish
        "RV: Hello",  # Spanish
        "TR: Hello",  # French forward
        "REF: Hello",
        "R: I: RIF: Hello",  # Italian
        "Antw: Doorst: Hello",  # Dutch
        "RES: ENC: Hello",  # Portuguese
        "Odp: PD: Hello",  # Polish
        "YNT: İLT: Hello",  # Turkish
        "ΑΠ: ΠΡΘ: Hello",  # Greek
        "回复: 转发: Hello",
        "答复：Hello",  # noqa: RUF001 (fullwidth colon)
        "回覆: 轉寄: Hello",
        "ＲＥ：Hello",  # noqa: RUF001 (a fullwidth RE and colon, as some CJK mailers send)
        "[EXTERNAL] Re: Hello",
        "Re: [EXTERNAL] Hello",
    ],
)
def test_markers_are_stripped(subject: str) -> None:
    assert normalize_subject(subject) == "hello"


@pytest.mark.parametrize(
    ("subject", "key"),
    [
        ("I need help with my order", "i need help with my order"),
        ("R2D2 spare parts", "r2d2 spare parts"),
        ("I : not a marker", "i : not a marker"),
        ("Order: 123", "order: 123"),
        ("Reply needed", "reply needed"),
        ("Re-open my account", "re-open my account"),
        ("Fwd is broken", "fwd is broken"),
        ("Revenue report: Q2", "revenue report: q2"),
        ("Hello   big\tworld", "hello big world"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),
    ],
)
def test_ordinary_subjects_stay_intact(subject: str, key: str) -> None:
    assert normalize_subject(subject) == key


def test_tags_are_kept_in_front_once() -> None:
    same = ["[users] Hi", "[users] Re: Hi", "Re: [users] Hi", "Re: [users] Re: [Users] Hi"]
    assert {normalize_subject(s) for s in same} == {"[users] hi"}
    assert normalize_subject("[Ticket #123] Re: Printer") == "[ticket #123] printer"
    assert normalize_subject("[Ticket #124] Printer") != normalize_subject("[Ticket #123] Printer")
    assert normalize_subject("Re: [a] [b] x") == "[a] [b] x"
    assert normalize_subject("[SPAM] [users] Re: Hi") == "[users] hi"


@pytest.mark.parametrize("subject", ["", "Re:", "  ", "Re: Fwd:"])
def test_empty_subjects(subject: str) -> None:
    assert normalize_subject(subject) == ""


@given(st.text(max_size=80))
def test_normalizing_is_idempotent(subject: str) -> None:
    key = normalize_subject(subject)
    assert normalize_subject(key) == key


@given(st.text(max_size=80), st.sampled_from(["Re: ", "AW: ", "Fwd: ", "RE[2]: ", "回复: "]))
def test_a_marker_never_changes_the_key(subject: str, marker: str) -> None:
    assert normalize_subject(marker + subject) == normalize_subject(subject)


@pytest.mark.parametrize(
    ("subject", "reply"),
    [
        ("Hello", "Re: Hello"),
        ("  Hello  ", "Re: Hello"),
        ("Re: Hello", "Re: Hello"),
        ("RE[2]: Hello", "RE[2]: Hello"),
        ("AW: Hallo", "AW: Hallo"),
        ("SV: Hej", "SV: Hej"),
        ("R: Ciao", "R: Ciao"),
        ("回复：你好", "回复：你好"),  # noqa: RUF001
        ("Fwd: Hello", "Re: Fwd: Hello"),
        ("I: inoltro", "Re: I: inoltro"),  # Italian forward, not a reply
        ("[users] Re: Hi", "Re: [users] Re: Hi"),
        ("", "Re:"),
    ],
)
def test_reply_subject(subject: str, reply: str) -> None:
    assert reply_subject(subject) == reply


def test_reply_subject_with_another_prefix() -> None:
    assert reply_subject("Hello", prefix="AW:") == "AW: Hello"
    assert reply_subject("Re: Hello", prefix="AW:") == "Re: Hello"


def test_thread_references_most_specific_first() -> None:
    raw = b"From: a@example.com\nIn-Reply-To: <c@x>\nReferences: <a@x> <b@x>\n <c@x>\n\nbody\n"
    assert thread_references(parse(raw)) == ["<c@x>", "<b@x>", "<a@x>"]
    assert thread_references(parse(b"From: a@example.com\n\nnew conversation\n")) == []
    only_refs = parse(b"From: a@example.com\nReferences: <a@x> <b@x>\n\nx\n")
    assert thread_references(only_refs) == ["<b@x>", "<a@x>"]


def test_thread_references_of_the_reply_sample() -> None:
    mail = parse((EML / "reply.eml").read_bytes())
    assert thread_references(mail) == [
        "<reply-0000Ja8V814907JM@shop.example.com>",
        "<8c1f0a2e-5b7d-4d7e-9a51-3f0c2b6d9e10@example.net>",
    ]
    assert normalize_subject(mail.subject) == normalize_subject(
        parse((EML / "plain.eml").read_bytes()).subject
    )
