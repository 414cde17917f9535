"""Real mail servers for the mail tests: one Dovecot for the whole session, a fresh mailbox and
an IMAP probe per test, and SMTP sinks on the test's own event loop (see tests/mailservers.py).

A missing Dovecot or openssl makes these fixtures fail with the package to install: never skip.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mailservers import Dovecot, ImapProbe, Mailbox, SelfSignedCert, SmtpSink

MakeSmtpSink = Callable[..., Awaitable[SmtpSink]]


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the session (stopping one costs a fixed ~1.1 s)."""
    with Dovecot() as server:
        yield server


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Mailbox:
    """A fresh user on the session's Dovecot, with an empty INBOX."""
    return dovecot.new_mailbox()


@pytest.fixture
async def imap(mailbox: Mailbox) -> AsyncIterator[ImapProbe]:
    """An IMAP probe logged in as ``mailbox``'s user on the plain port."""
    probe = await ImapProbe.connect(mailbox.imap_port, mailbox.user, mailbox.password)
    yield probe
    await probe.close()


@pytest.fixture(scope="session")
def tls_cert() -> Iterator[SelfSignedCert]:
    """A self-signed certificate for localhost/127.0.0.1 (for SMTP sinks with TLS)."""
    directory = Path(tempfile.mkdtemp(prefix="cert", dir="/tmp"))
    try:
        yield SelfSignedCert.create(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    """A plain SMTP sink (no TLS, no AUTH) on a free port."""
    sink = await SmtpSink().start()
    yield sink
    await sink.stop()


@pytest.fixture
async def make_smtp_sink() -> AsyncIterator[MakeSmtpSink]:
    """``await make_smtp_sink(username=..., password=..., tls_cert=..., ...)`` → a started
    sink (the ``SmtpSink`` keyword arguments); every one is stopped after the test."""
    sinks: list[SmtpSink] = []

    async def make(**options: Any) -> SmtpSink:
        sink = SmtpSink(**options)
        sinks.append(sink)
        return await sink.start()

    yield make
    for sink in reversed(sinks):
        await sink.stop()
