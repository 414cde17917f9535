"""Faults: the IMAP server restarting, a connection cut mid-FETCH, the SMTP server down or
refusing, the gateway killed between two steps.  In each: nothing lost, nothing duplicated."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from contact.conftest import MakeCenter, make_center  # noqa: F401 (fixture)
from contact.desktop import Desktop, write_users
from gateway_process import Process
from mailservers import Dovecot, ImapProbe, Mailbox, SmtpSink

from gateway.failpoints import EXIT_STATUS
from mail.gateway import (
    agent_and_mail,
    customer_mail,
    mail_section,
    mail_status,
    reply_to_next,
    runtime,
    source,
    state,
    wait_ready,
    wait_until,
)


async def test_imap_server_restarting_during_idle(
    make_center: MakeCenter,  # noqa: F811
    dovecot: Dovecot,
    mailbox: Mailbox,
    imap: ImapProbe,
) -> None:
    center = await make_center(names=("agent1",), mail=mail_section(mailbox))
    app = center.gateway.app
    await wait_ready(app)
    desk = await center.desktop("agent1", "email")
    listener = runtime(app).listeners["support"]
    await dovecot.arestart()  # the listener is in IDLE: it gets BYE, then a refused connect
    await wait_until(lambda: listener.connects == 2 and listener.ready.is_set(), what="back")
    probe = await ImapProbe.connect(mailbox.imap_port, mailbox.user, mailbox.password)
    try:
        raw, _ = customer_mail("After the restart")
        await probe.append(raw)
        invited = await desk.next_message(state("Invited"), within=5)
        assert invited["userData"]["Subject"] == "After the restart"
        await probe.wait_count("Done", 1)
    finally:
        await probe.close()
    assert runtime(app).status()["received"] == {"offered": 1}


class CuttingProxy:
    """A TCP proxy to the IMAP server that cuts the connection the first time the client
    sends a ``UID FETCH``, before the server sees it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in self._writers:
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        handler = asyncio.current_task()
        assert handler is not None
        self._tasks.add(handler)  # cancelled at exit even while it is still connecting
        handler.add_done_callback(self._tasks.discard)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.append(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, client: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if client and b"UID FETCH" in data.upper() and self.cuts == 0:
                        self.cuts += 1
                        break
                    dst.write(data)
                    await dst.drain()
            for w in (writer, up_writer):
                w.close()

        for coro in (pipe(reader, up_writer, True), pipe(up_reader, writer, False)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def test_connection_cut_during_fetch(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
) -> None:
    raw, _ = customer_mail("Cut mid-fetch")
    await imap.append(raw)  # waiting before the gateway starts: fetched during catch-up
    async with CuttingProxy(mailbox.imap_port) as proxy:
        via_proxy = source(mailbox, port=proxy.port)
        center = await make_center(
            names=("agent1",), mail=mail_section(mailbox, sources=[via_proxy])
        )
        await wait_ready(center.gateway.app, within=15)
        assert proxy.cuts == 1
        listener = runtime(center.gateway.app).listeners["support"]
        assert listener.connects == 2
        await imap.wait_count("Done", 1)
        assert await imap.count("INBOX") == 0
        assert runtime(center.gateway.app).status()["received"] == {"offered": 1}


async def accept_reply_send(desk: Desktop, imap: ImapProbe, text: str) -> str:
    raw, _ = customer_mail("Need help")
    await imap.append(raw)
    ix, draft = await reply_to_next(desk, text)
    await desk.next_message(state("Completed", draft))
    await desk.operate(ix, "Complete")
    return draft


async def test_smtp_server_down_then_back(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
    smtp_sink: SmtpSink,
) -> None:
    center, desk = await agent_and_mail(make_center, mailbox, smtp_sink)
    mail = runtime(center.gateway.app)
    await smtp_sink.stop()
    draft = await accept_reply_send(desk, imap, "Sent while the server was down")
    await wait_until(lambda: mail.store is not None and mail.store.outgoing(draft).attempts >= 2)
    outgoing = mail.store.outgoing(draft)  # type: ignore[union-attr]
    assert outgoing is not None and outgoing.status == "queued"
    assert "Connect" in outgoing.last_error or "refused" in outgoing.last_error.lower()
    await smtp_sink.start()  # same port
    [sent] = await smtp_sink.wait_for(1, 10)
    assert b"Sent while the server was down" in sent.content
    await wait_until(lambda: mail.status()["outbox"] == {"sent": 1})
    await asyncio.sleep(0.5)
    assert len(smtp_sink.messages) == 1


async def test_temporary_refusal_is_retried_permanent_one_goes_back_to_the_agent(
    make_center: MakeCenter,  # noqa: F811
    mailbox: Mailbox,
    imap: ImapProbe,
    smtp_sink: SmtpSink,
) -> None:
    center, desk = await agent_and_mail(make_center, mailbox, smtp_sink)
    mail = runtime(center.gateway.app)

    smtp_sink.fail_with(451, "4.3.0 try again later", times=2)
    await accept_reply_send(desk, imap, "Third time lucky")
    [sent] = await smtp_sink.wait_for(1, 10)
    assert smtp_sink.rejected == 2 and b"Third time lucky" in sent.content

    smtp_sink.fail_with(550, "5.1.1 no such user here")
    draft = await accept_reply_send(desk, imap, "This one bounces")
    back = await desk.next_message(state("Composing", draft), within=10)
    assert back["notificationType"] == "Error"
    assert "550" in back["errorMessage"] and "no such user" in back["errorMessage"]
    assert "Send" in back["capabilities"]
    assert back["userData"]["_SendError"] == back["errorMessage"]
    status = mail.status()
    assert status["outbox"] == {"sent": 1, "failed": 1}
    assert status["failed"][0]["interactionId"] == draft

    smtp_sink.clear_failures()  # the agent fixes it and sends again
    status_code, _ = await desk.operate(draft, "Send", to=["jane@customer.example"])
    assert status_code == 200
    await smtp_sink.wait_for(2, 10)
    await wait_until(lambda: mail.status()["outbox"] == {"sent": 2})


# -- killed between two steps (a real process, GATEWAY_FAILPOINT) ------------------------------


@pytest.fixture
async def gateway_process(tmp_path: Path) -> AsyncIterator[Process]:
    process = Process(tmp_path, config=tmp_path / "gateway.toml")
    yield process
    process.stop()
    print(process.log())  # shown when the test fails


def start_armed(
    process: Process, mailbox: Mailbox, failpoint: str, sink: SmtpSink | None = None
) -> str:
    """Agent1, a config watching ``mailbox`` (sending through ``sink``), and the gateway
    started to die at ``failpoint``; the partner token."""
    _, token = write_users(process.data_dir, ["agent1"])
    assert process.config is not None
    write_config(process.config, mailbox, sink)
    process.start(GATEWAY_FAILPOINT=failpoint)
    return token


def write_config(path: Path, mailbox: Mailbox, sink: SmtpSink | None = None) -> None:
    section = mail_section(mailbox, sink)
    lines = ["[mail]"]
    for key, value in section.items():
        if key not in ("sources", "senders"):
            lines.append(f"{key} = {json.dumps(value)}")
    for kind in ("sources", "senders"):
        for entry in section[kind]:
            lines.append(f"[[mail.{kind}]]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in entry.items())
    path.write_text("\n".join(lines) + "\n")


async def test_killed_between_claim_and_interaction(
    gateway_process: Process, mailbox: Mailbox, imap: ImapProbe
) -> None:
    token = start_armed(gateway_process, mailbox, "mail.after_claim")
    raw, _ = customer_mail("Claimed, then the lights went out")
    await imap.append(raw)
    status = await asyncio.to_thread(gateway_process.wait_exit)
    assert status == EXIT_STATUS
    assert await imap.count("Processing") == 1  # claimed, not yet an interaction
    assert await imap.count("INBOX") == 0

    gateway_process.start()
    await imap.wait_count("Done", 1)
    assert await imap.count("Processing") == 0
    assert (await mail_status(gateway_process.base, token))["received"] == {"offered": 1}


async def test_killed_after_the_interaction_before_filing(
    gateway_process: Process, mailbox: Mailbox, imap: ImapProbe
) -> None:
    token = start_armed(gateway_process, mailbox, "mail.after_take")
    raw, _ = customer_mail("Taken, not yet filed")
    await imap.append(raw)
    assert await asyncio.to_thread(gateway_process.wait_exit) == EXIT_STATUS
    assert await imap.count("Processing") == 1

    gateway_process.start()
    await imap.wait_count("Done", 1)
    status = await mail_status(gateway_process.base, token)
    assert status["received"] == {"offered": 1}
    assert status["duplicates"] == 1  # recognised by its Message-ID, only filed


async def test_killed_between_send_and_smtp_acceptance(
    gateway_process: Process, mailbox: Mailbox, imap: ImapProbe, smtp_sink: SmtpSink
) -> None:
    token = start_armed(gateway_process, mailbox, "mail.before_smtp", smtp_sink)
    desk = Desktop(gateway_process.base, "agent1")
    try:
        status, _ = await desk.login()
        assert status == 200
        await desk.connect_bayeux()
        await desk.start("email")
        raw, _ = customer_mail("Reply lost in a crash?")
        await imap.append(raw)
        ix = (await desk.next_message(state("Invited"), within=5))["id"]
        await desk.operate(ix, "Accept")
        await desk.operate(ix, "Reply")
        draft = (await desk.next_message(state("Composing")))["id"]
        with contextlib.suppress(aiohttp.ClientError):
            await desk.operate(draft, "Send", bodyAsPlainText="Survives the crash")
    finally:
        await desk.close()
    assert await asyncio.to_thread(gateway_process.wait_exit) == EXIT_STATUS
    assert smtp_sink.messages == []

    gateway_process.start()
    [sent] = await smtp_sink.wait_for(1, 10)
    reply = message_from_bytes(sent.content, policy=policy.default)
    assert reply.get_content().strip() == "Survives the crash"
    for _ in range(50):
        if (await mail_status(gateway_process.base, token))["outbox"] == {"sent": 1}:
            break
        await asyncio.sleep(0.1)
    assert (await mail_status(gateway_process.base, token))["outbox"] == {"sent": 1}
    assert len(smtp_sink.messages) == 1
