"""Websockets on raw sockets: frames written byte for byte, the gateway's frames read as they come.

The contract of :mod:`gateway.bayeux.transports.websocket` (the aiohttp route, ``server.fast_http``
off) and :mod:`gateway.bayeux.transports.fastws` (the edge's own frames, ``fast_http`` on), on both:

* replies to one frame come back as one text frame (a JSON array); fragmented messages are
  joined; frames in the same packet as the upgrade request are handled;
* a frame that is not a Bayeux batch closes with 1007 and a reason, a message over
  ``server.max_body_bytes`` with 1009, a failure of ours with 1011; a ping gets its pong; a
  client's close frame is echoed and the TCP connection closed;
* a refused handshake is a 4xx JSON answer, a forbidden Origin a 403;
* no client stops the gateway: whatever arrives after the upgrade is answered or the
  connection closed, in bounded time, without an error logged; a client that does not read is
  not read either (bounded buffers), and gets every reply, in order, once it reads; a client
  that vanishes leaves no socket behind; a shutdown closes websockets with 1001, in bounded
  time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from mutations import mutate
from rawhttp import post as raw_post
from rawhttp import read_response
from structlog.testing import capture_logs

from gateway.app import HUB, SOCKETS
from gateway.bayeux.security import AllowAll
from gateway.bayeux.transports.websocket import CLOSE_TIMEOUT_S
from gateway.server import RunningGateway

from .test_http_edge import still_serves

FAST = pytest.mark.parametrize("fast_http", [True, False], ids=["fast", "aiohttp"])

#: How long one step (an answer, a close) may take; the gateway answers in milliseconds.
STEP_S = 5.0

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RESERVED_OPCODES = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK_KEY = b"\x37\xfa\x21\x3d"  # RFC 6455 §5.7's: a fixed one keeps examples reproducible
HANDSHAKE = json.dumps(
    [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["websocket"]}]
).encode()


def upgrade(
    path: str = "/cometd",
    *extra: str,
    key: str | None = KEY,
    version: str | None = "13",
    connection: str | None = "Upgrade",
) -> bytes:
    """A websocket upgrade request; ``None`` leaves a header out."""
    lines = [f"GET {path} HTTP/1.1", "Host: t", "Upgrade: websocket"]
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    form: int | None = None,
) -> bytes:
    """One client frame, byte for byte.  ``form`` is the length's encoding: 0 (7 bits), 126
    (16 bits) or 127 (64 bits); the shortest one unless told (the others are not minimal)."""
    n = len(payload)
    if form is None:
        form = 0 if n < 126 else 126 if n < 65536 else 127
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if masked else 0
    if form == 0:
        head.append(bit | n)
    elif form == 126:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if not masked:
        return bytes(head) + payload
    key = MASK_KEY
    mask = (key * (n // 4 + 1))[:n]
    masked_payload = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(
        n, "big"
    )
    return bytes(head) + key + masked_payload


def close_frame(code: int | None = 1000, reason: bytes = b"") -> bytes:
    return frame(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def text(messages: Any) -> bytes:
    return frame(TEXT, json.dumps(messages).encode())


@dataclass
class Frame:
    """A frame of the gateway's."""

    fin: bool
    opcode: int
    data: bytes

    @property
    def code(self) -> int | None:
        """A close frame's code (``None`` when it has none)."""
        assert self.opcode == CLOSE
        return struct.unpack("!H", self.data[:2])[0] if len(self.data) >= 2 else None

    def json(self) -> Any:
        assert self.opcode == TEXT, self
        return json.loads(self.data)


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """One server frame: unmasked, no reserved bit, a known opcode."""
    b0, b1 = await reader.readexactly(2)
    assert b0 & 0x70 == 0, f"reserved bits set: {b0:#x}"
    assert b1 & 0x80 == 0, "a server frame is masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    opcode = b0 & 0x0F
    assert opcode in (TEXT, BINARY, CONT, CLOSE, PING, PONG), f"opcode {opcode:#x}"
    return Frame(bool(b0 & 0x80), opcode, await reader.readexactly(n))


def parse_frames(data: bytes) -> list[Frame]:
    """Every frame of ``data`` (all a connection got), which must end where a frame ends."""
    frames = []
    at = 0
    while at < len(data):
        b0, b1 = data[at : at + 2]
        assert b0 & 0x70 == 0 and b1 & 0x80 == 0, data[at:]
        n, at = b1 & 0x7F, at + 2
        if n == 126:
            n, at = struct.unpack("!H", data[at : at + 2])[0], at + 2
        elif n == 127:
            n, at = struct.unpack("!Q", data[at : at + 8])[0], at + 8
        assert at + n <= len(data), f"a frame cut short: {data[:300]!r}"
        frames.append(Frame(bool(b0 & 0x80), b0 & 0x0F, data[at : at + n]))
        at += n
    return frames


class Ws:
    """A websocket on a raw TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.client_id = ""

    @classmethod
    async def open(cls, server: RunningGateway, path: str = "/cometd", *extra: str) -> Ws:
        """Upgrade (``extra``: more header lines), then check the 101."""
        ws = await cls.connect(server, upgrade(path, *extra))
        await ws.switched()
        return ws

    @classmethod
    async def connect(cls, server: RunningGateway, data: bytes) -> Ws:
        """A TCP connection that has sent ``data`` (nothing read yet)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(data)
        return cls(reader, writer)

    async def switched(self) -> None:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), STEP_S)
        assert head.startswith(b"HTTP/1.1 101 "), head

    def send(self, *frames: bytes) -> None:
        """All in one write (one TCP packet on loopback)."""
        self.writer.write(b"".join(frames))

    async def frame(self, within: float = STEP_S) -> Frame:
        return await asyncio.wait_for(read_frame(self.reader), within)

    async def replies(self) -> list[dict[str, Any]]:
        """The next frame, which must be a text frame of Bayeux messages."""
        got = await self.frame()
        assert got.opcode == TEXT and got.fin, got
        messages = got.json()
        assert isinstance(messages, list) and messages, messages
        return messages

    async def handshake(self) -> str:
        self.send(frame(TEXT, HANDSHAKE))
        (reply,) = await self.replies()
        assert reply["channel"] == "/meta/handshake" and reply["successful"] is True, reply
        self.client_id = reply["clientId"]
        return self.client_id

    def message(self, channel: str, ident: str, **fields: Any) -> dict[str, Any]:
        return {"channel": channel, "clientId": self.client_id, "id": ident, **fields}

    async def closed_by_server(self) -> Frame:
        """The gateway closes: its close frame (nothing but text before it), our echo, then
        the end of the TCP connection."""
        while (got := await self.frame()).opcode != CLOSE:
            assert got.opcode == TEXT, got
        self.send(close_frame(got.code) if got.code is not None else close_frame(None))
        assert await self.eof()
        return got

    async def eof(self) -> bool:
        """The gateway closes the TCP connection (and sends nothing more)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), STEP_S)
        except ConnectionResetError:
            return True
        assert rest == b"", rest[:200]
        return True

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        """Vanish with an RST."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


def errors(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry.get("log_level") in ("error", "critical")]


async def no_sockets_left(server: RunningGateway) -> bool:
    for _ in range(150):
        if not server.app[SOCKETS]:
            return True
        await asyncio.sleep(0.02)
    return False


async def ws_still_serves(server: RunningGateway) -> None:
    ws = await Ws.open(server)
    try:
        assert await ws.handshake()
        ws.send(close_frame())
        assert (await ws.frame()).opcode == CLOSE
    finally:
        ws.close()


# -- replies ----------------------------------------------------------------------------------


@FAST
@pytest.mark.parametrize("path", ["/cometd", "/cometd/desk", "/api/v2/notifications"])
async def test_replies_to_one_frame_come_back_as_one_text_frame(
    make_gateway: Any, fast_http: bool, path: str
) -> None:
    server = await make_gateway(server={"fast_http": fast_http})
    ws = await Ws.open(server, path)
    try:
        await ws.handshake()
        ws.send(
            text(
                [
                    ws.message("/meta/subscribe", "1", subscription="/edge/news"),
                    ws.message("/edge/other", "2", data={"n": 1}),
                    ws.message("/edge/other", "3", data={"n": 2}),
                ]
            )
        )
        replies = await ws.replies()
        assert [(r["id"], r["successful"]) for r in replies] == [
            ("1", True),
            ("2", True),
            ("3", True),
        ]
        assert replies[0]["subscription"] == "/edge/news"
        # The next frame answers the next frame of the client's, not the rest of this one.
        ws.send(text([ws.message("/edge/other", "4", data={})]))
        assert [r["id"] for r in await ws.replies()] == ["4"]
    finally:
        ws.close()


@FAST
@pytest.mark.parametrize("split", ["one-write", "write-per-frame"])
async def test_fragmented_message_is_joined(make_gateway: Any, fast_http: bool, split: str) -> None:
    """TEXT fin=0, a ping between fragments, CONT fin=0, CONT fin=1: one message, one reply;
    the cuts fall inside multi-byte UTF-8 characters.  The client is subscribed to the channel
    it publishes on: the event it gets back carries the data whole."""
    server = await make_gateway(server={"fast_http": fast_http})
    ws = await Ws.open(server)
    data = {"text": "é€😀" * 20}
    try:
        await ws.handshake()
        ws.send(text([ws.message("/meta/subscribe", "6", subscription="/edge/frag")]))
        assert (await ws.replies())[0]["successful"] is True
        body = json.dumps([ws.message("/edge/frag", "7", data=data)], ensure_ascii=False).encode()
        euro = body.index("€".encode())
        cuts = [euro + 1, euro + 2 + 40]
        frames = [
            frame(TEXT, body[: cuts[0]], fin=False),
            frame(PING, b"between"),
            frame(CONT, body[cuts[0] : cuts[1]], fin=False),
            frame(CONT, body[cuts[1] :]),
        ]
        if split == "one-write":
            ws.send(*frames)
        else:
            for part in frames:
                ws.send(part)
                await ws.writer.drain()
                await asyncio.sleep(0.02)
        got = [await ws.frame(), await ws.frame()]
        pongs = [f for f in got if f.opcode == PONG]
        assert [p.data for p in pongs] == [b"between"]
        (answer,) = [f for f in got if f.opcode == TEXT]
        assert answer.fin
        messages = answer.json()
        assert [(r["id"], r["successful"]) for r in messages if "successful" in r] == [("7", True)]
        assert [m["data"] for m in messages if "data" in m] == [data], messages
    finally:
        ws.close()


@FAST
async def test_frames_in_the_upgrade_packet_are_handled(make_gateway: Any, fast_http: bool) -> None:
    server = await make_gateway(server={"fast_http": fast_http})
    ws = await Ws.connect(
        server, upgrade() + frame(TEXT, HANDSHAKE) + frame(PING, b"p") + frame(TEXT, HANDSHAKE)
    )
    try:
        await ws.switched()
        got = [await ws.frame() for _ in range(3)]
        assert [f.data for f in got if f.opcode == PONG] == [b"p"]
        answers = [f.json() for f in got if f.opcode == TEXT]
        assert len(answers) == 2
        for (reply,) in answers:
            assert reply["channel"] == "/meta/handshake" and reply["successful"] is True
        assert answers[0][0]["clientId"] != answers[1][0]["clientId"]
    finally:
        ws.close()


@FAST
async def test_ping_gets_its_pong_and_the_socket_goes_on(
    make_gateway: Any, fast_http: bool
) -> None:
    server = await make_gateway(server={"fast_http": fast_http})
    ws = await Ws.open(server)
    try:
        ws.send(frame(PING, b"are you there"))
        pong = await ws.frame()
        assert (pong.opcode, pong.data) == (PONG, b"are you there")
        ws.send(frame(PING))
        pong = await ws.frame()
        assert (pong.opcode, pong.data) == (PONG, b"")
        ws.send(frame(PONG, b"unsolicited"))  # ignored
        assert await ws.handshake()
    finally:
        ws.close()


@FAST
@pytest.mark.parametrize("after_handshake", [False, True], ids=["fresh", "after-handshake"])
async def test_client_close_is_echoed_and_the_connection_closed(
    make_gateway: Any, fast_http: bool, after_handshake: bool
) -> None:
    server = await make_gateway(server={"fast_http": fast_http})
    ws = await Ws.open(server)
    try:
        if after_handshake:
            await ws.handshake()
        ws.send(close_frame(1000, b"bye"))
        echo = await ws.frame()
        assert echo.opcode == CLOSE
        assert echo.code == 1000
        assert await ws.eof()  # the client does nothing more: the gateway ends the connection
    finally:
        ws.close()
    assert await no_sockets_left(server)
    await still_serves(server)


@FAST
async def test_frames_before_a_close_frame_in_the_same_packet_are_handled(
    make_gateway: Any, fast_http: bool
) -> None:
    """A publish and the close frame right behind it, in one packet: the publish is delivered
    (its reply cannot be sent after the close, but the event must not be lost)."""
    server = await make_gateway(server={"fast_http": fast_http})
    subscriber = await Ws.open(server)
    publisher = await Ws.open(server)
    try:
        await subscriber.handshake()
        subscriber.send(text([subscriber.message("/meta/subscribe", "1", subscription="/edge/x")]))
        assert (await subscriber.replies())[0]["successful"] is True
        await publisher.handshake()
        publisher.send(
            text([publisher.message("/edge/x", "2", data={"last": "words"})]), close_frame(1000)
        )
        while (got := await publisher.frame()).opcode != CLOSE:
            assert got.opcode == TEXT, got  # the publish's reply, if it comes, comes first
        assert got.code == 1000
        assert await publisher.eof()
        # The subscriber's first connect returns at once, with what was queued for it.
        subscriber.send(
            text([subscriber.message("/meta/connect", "3", connectionType="websocket")])
        )
        messages = await subscriber.replies()
        events = [m for m in messages if m.get("channel") == "/edge/x" and "data" in m]
        assert [e["data"] for e in events] == [{"last": "words"}], (
            f"the publish just before the close frame was lost: {messages}"
        )
    finally:
        subscriber.close()
        publisher.close()


# -- closes -----------------------------------------------------------------------------------

NOT_A_BATCH = {
    "not-utf8": b'[{"channel":"/meta/handshake","x":"\xff\xfe"}]',
    "not-json": b'[{"channel":',
    "not-an-array-or-object": b'"/meta/handshake"',
    "empty": b"",
    "empty-batch": b"[]",
    "too-deep": b"[" * 5000 + b"]" * 5000,
    "too-many": json.dumps([{"channel": "/meta/handshake"}] * 6).encode(),
}


@FAST
@pytest.mark.parametrize("payload", NOT_A_BATCH.values(), ids=NOT_A_BATCH.keys())
async def test_frame_that_is_not_a_batch_closes_with_1007(
    make_gateway: Any, fast_http: bool, payload: bytes
) -> None:
    server = await make_gateway(server={"fast_http": fast_http, "max_batch": 5})
    with capture_logs() as logs:
        ws = await Ws.open(server)
        try:
            await ws.handshake()
            ws.send(frame(TEXT, payload))
            got = await ws.closed_by_server()
        finally:
            ws.close()
        assert got.code == 1007
        assert len(got.data) > 2, "a close frame without a reason"
        got.data[2:].decode("utf-8")
        assert await no_sockets_left(server)
    assert errors(logs) == []
    await ws_still_serves(server)


LIMIT = 4096


def publish_of_size(size: int, client_id: str = "") -> bytes:
    """A publish batch of exactly ``size`` bytes."""
    short = json.dumps([{"channel": "/edge/big", "clientId": client_id, "id": "1", "data": ""}])
    pad = size - len(short.encode())
    assert pad >= 0
    return json.dumps(
        [{"channel": "/edge/big", "clientId": client_id, "id": "1", "data": "x" * pad}]
    ).encode()


def in_fragments(body: bytes, fragments: int) -> list[bytes]:
    """``body`` as one message in ``fragments`` frames (TEXT, then CONT)."""
    step = -(-len(body) // fragments)
    parts = [body[i : i + step] for i in range(0, len(body), step)]
    return [
        frame(TEXT if i == 0 else CONT, part, fin=i == len(parts) - 1)
        for i, part in enumerate(parts)
    ]


@FAST
@pytest.mark.parametrize("fragments", [1, 3], ids=["one-frame", "fragmented"])
async def test_message_over_the_limit_closes_with_1009(
    make_gateway: Any, fast_http: bool, fragments: int
) -> None:
    """Over ``server.max_body_bytes``, whole or in fragments each under it: 1009."""
    server = await make_gateway(server={"fast_http": fast_http, "max_body_bytes": LIMIT})
    with capture_logs() as logs:
        ws = await Ws.open(server)
        try:
            await ws.handshake()
            ws.send(*in_fragments(publish_of_size(LIMIT + 1, ws.client_id), fragments))
            got = await ws.closed_by_server()
        finally:
            ws.close()
        assert got.code == 1009
        assert await no_sockets_left(server)
    assert errors(logs) == []
    await ws_still_serves(server)


@FAST
@pytest.mark.parametrize("fragments", [1, 3], ids=["one-frame", "fragmented"])
async def test_message_at_the_limit_is_answered(
    make_gateway: Any, fast_http: bool, fragments: int
) -> None:
    """``server.max_body_bytes`` is the largest message taken, as it is the largest body."""
    server = await make_gateway(server={"fast_http": fast_http, "max_body_bytes": LIMIT})
    ws = await Ws.open(server)
    try:
        await ws.handshake()
        ws.send(*in_fragments(publish_of_size(LIMIT, ws.client_id), fragments))
        got = await ws.frame()
        assert got.opcode == TEXT, f"a message of exactly max_body_bytes was refused: {got}"
        assert [(r["id"], r["successful"]) for r in got.json()] == [("1", True)]
    finally:
        ws.close()
    # The same limit over HTTP: a body of exactly max_body_bytes is served.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(raw_post("/cometd", publish_of_size(LIMIT)))
        status, _, body = await read_response(reader)
        assert status == 200, body
    finally:
        writer.close()


class _BrokenPolicy(AllowAll):
    async def can_publish(self, session: Any, channel: str, message: Any) -> bool:
        raise RuntimeError("a policy bug")


@FAST
async def test_failure_of_ours_closes_with_1011(make_gateway: Any, fast_http: bool) -> None:
    server = await make_gateway(policy=_BrokenPolicy(), server={"fast_http": fast_http})
    with capture_logs() as logs:
        ws = await Ws.open(server)
        try:
            await ws.handshake()
            ws.send(text([ws.message("/edge/boom", "1", data=1)]))
            got = await ws.closed_by_server()
        finally:
            ws.close()
        assert got.code == 1011
        assert await no_sockets_left(server)
    assert [e["event"] for e in errors(logs)] == ["websocket_failed"]
    await ws_still_serves(server)


# -- the opening handshake --------------------------------------------------------------------

REFUSED = {
    "bad-key": upgrade(key="not a key"),
    "short-key": upgrade(key="c2hvcnQ="),
    "no-key": upgrade(key=None),
    "version-12": upgrade(version="12"),
    "no-version": upgrade(version=None),
    "no-connection": upgrade(connection=None),
    "connection-keep-alive": upgrade(connection="keep-alive"),
}


@FAST
@pytest.mark.parametrize("data", REFUSED.values(), ids=REFUSED.keys())
async def test_refused_handshake_is_a_4xx_json_answer(
    make_gateway: Any, fast_http: bool, data: bytes
) -> None:
    server = await make_gateway(server={"fast_http": fast_http})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        status, headers, body = await read_response(reader)
    finally:
        writer.close()
    assert 400 <= status < 500, (status, body)
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["error"] == "invalid_websocket_handshake", answer
    assert isinstance(answer["detail"], str) and answer["detail"], answer
    assert not server.app[SOCKETS]
    await ws_still_serves(server)


@FAST
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://evil.example", False),
        ("null", False),
        ("https://app.example", True),
        ("http://t", True),  # the same host as the request's
        (None, True),  # not a browser
    ],
)
async def test_origin_is_checked_before_the_upgrade(
    make_gateway: Any, fast_http: bool, origin: str | None, allowed: bool
) -> None:
    server = await make_gateway(
        server={"fast_http": fast_http}, cors={"allow_origins": ["https://app.example"]}
    )
    extra = [f"Origin: {origin}"] if origin is not None else []
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(upgrade("/cometd", *extra))
        if allowed:
            ws = Ws(reader, writer)
            await ws.switched()
            assert await ws.handshake()
        else:
            status, _, body = await read_response(reader)
            assert status == 403
            assert json.loads(body)["error"] == "origin_forbidden"
            assert not server.app[SOCKETS]
    finally:
        writer.close()


# -- clients that do not read, that vanish; shutdown ------------------------------------------

#: Publishes of ~8 kB whose replies are as big (the id is echoed): a client that does not read
#: backs up the gateway's writes as fast as it sends.
PAD = 8_000
FLOOD_LIMIT = 48 * 1024 * 1024
BUFFER_BOUND = 1024 * 1024


def _publish_frame(client_id: str, n: int) -> bytes:
    ident = f"{n:08d}" + "a" * PAD
    return text([{"channel": "/edge/flood", "clientId": client_id, "id": ident, "data": {}}])


def _open_blocking(port: int) -> tuple[socket.socket, str]:
    """A websocket with small kernel buffers on our side, Bayeux handshake done."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(STEP_S)
    sock.sendall(upgrade() + frame(TEXT, HANDSHAKE))
    stream = sock.makefile("rb")
    while stream.readline() != b"\r\n":
        pass
    (reply,) = _read_text(stream)
    return sock, reply["clientId"]


def _read_text(stream: Any) -> Any:
    b0, b1 = stream.read(2)
    assert (b0 & 0x0F, b1 & 0x80) == (TEXT, 0), (b0, b1)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", stream.read(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", stream.read(8))[0]
    return json.loads(stream.read(n))


def _flood(sock: socket.socket, client_id: str) -> tuple[int, int, bytes]:
    """Send publishes, reading nothing, until the gateway takes no more for a second: how many
    bytes went out, how many publishes were begun, and the unsent rest of them."""
    sock.settimeout(1.0)
    sent = 0
    begun = 0
    pending = b""
    try:
        while sent < FLOOD_LIMIT:
            if not pending:
                pending = b"".join(_publish_frame(client_id, begun + i) for i in range(16))
                begun += 16
            taken = sock.send(pending)
            sent += taken
            pending = pending[taken:]
    except TimeoutError:
        pass
    return sent, begun, pending


def _read_replies(sock: socket.socket, count: int) -> list[str]:
    sock.settimeout(STEP_S)
    stream = sock.makefile("rb")
    ids: list[str] = []
    while len(ids) < count:
        for reply in _read_text(stream):
            assert reply["successful"] is True, reply
            ids.append(reply["id"])
    return ids


@FAST
async def test_client_that_does_not_read_is_not_read_either(
    make_gateway: Any, fast_http: bool
) -> None:
    """Publishes keep coming, replies are never read: the gateway stops reading, what it
    buffers stays bounded; once the client reads, every publish has its reply, in order."""
    server: RunningGateway = await make_gateway(server={"fast_http": fast_http})
    sock, client_id = await asyncio.to_thread(_open_blocking, server.port)
    most = 0
    flooding = True

    def held() -> int:
        """What the gateway holds for its connections: unsent bytes, bytes read and not yet
        handled (the edge's buffer, the messages a fast websocket has waiting)."""
        peers = server.app[SOCKETS]
        waiting = sum(len(m) for peer in peers for m in getattr(peer, "_waiting", ()))
        return (
            sum(peer.buffered_bytes for peer in peers)
            + waiting
            + sum(len(c._buffer) for c in server.fast.connections)
        )

    async def sample() -> None:
        nonlocal most
        while flooding:
            most = max(most, held())
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    try:
        with capture_logs() as logs:
            sent, begun, rest = await asyncio.to_thread(_flood, sock, client_id)
            flooding = False
            await sampler
            assert sent < FLOOD_LIMIT, "the gateway never stopped reading"
            assert sent > BUFFER_BOUND, f"only {sent} bytes sent: the bound below says nothing"
            assert most < BUFFER_BOUND, f"{most} bytes held for a client that sent {sent}"
            # The client reads (and finishes the publishes it had begun): every reply.
            reading = asyncio.create_task(asyncio.to_thread(_read_replies, sock, begun))
            await asyncio.to_thread(sock.sendall, rest)
            ids = await reading
        assert [int(i[:8]) for i in ids] == list(range(begun))
        assert errors(logs) == []
    finally:
        flooding = False
        sock.close()
    assert await no_sockets_left(server)
    await ws_still_serves(server)


@FAST
@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("when", ["mid-frame", "after-many-frames", "mid-fragmented-message"])
async def test_client_that_vanishes_leaves_no_socket(
    make_gateway: Any, fast_http: bool, how: str, when: str
) -> None:
    server = await make_gateway(server={"fast_http": fast_http})
    with capture_logs() as logs:
        ws = await Ws.open(server)
        await ws.handshake()
        publish = text([ws.message("/edge/gone", "1", data={"x": "y" * 500})])
        if when == "mid-frame":
            ws.send(publish[: len(publish) // 2])
        elif when == "after-many-frames":
            ws.send(publish * 300)
        else:
            ws.send(frame(TEXT, b'[{"channel":', fin=False), frame(CONT, b'"/edge', fin=False))
        await ws.writer.drain()
        if how == "rst":
            ws.reset()
        else:
            ws.close()
        assert await no_sockets_left(server)
        await still_serves(server)
        await ws_still_serves(server)
    assert errors(logs) == []


@FAST
async def test_shutdown_closes_websockets_with_1001(make_gateway: Any, fast_http: bool) -> None:
    """An idle socket, one whose connect is held, one that reads but never answers the close:
    each gets 1001, and the shutdown ends within the close time-out."""
    server = await make_gateway(
        server={"fast_http": fast_http}, bayeux={"timeout_ms": 60_000, "max_interval_ms": 90_000}
    )
    idle, holding, mute = [await Ws.open(server) for _ in range(3)]
    sockets = [idle, holding, mute]
    try:
        for ws in sockets:
            await ws.handshake()
        holding.send(text([holding.message("/meta/connect", "1", connectionType="websocket")]))
        assert (await holding.replies())[-1]["successful"] is True  # the first returns at once
        holding.send(text([holding.message("/meta/connect", "2", connectionType="websocket")]))
        for _ in range(250):
            if server.app[HUB].held_count == 1:
                break
            await asyncio.sleep(0.02)
        assert server.app[HUB].held_count == 1

        async def close_code(ws: Ws) -> int | None:
            return (await ws.closed_by_server()).code

        async def mute_close_code() -> int | None:
            while (got := await mute.frame()).opcode != CLOSE:
                pass
            assert await mute.eof()  # cut off without our close frame
            return got.code

        codes = asyncio.gather(close_code(idle), close_code(holding), mute_close_code())
        started = time.monotonic()
        with capture_logs() as logs:
            await asyncio.wait_for(server.close(), CLOSE_TIMEOUT_S + STEP_S)
        took = time.monotonic() - started
        assert list(await asyncio.wait_for(codes, STEP_S)) == [1001, 1001, 1001]
        assert took < CLOSE_TIMEOUT_S + 2.0, took
        assert not server.app[SOCKETS]
        assert errors(logs) == []
    finally:
        for ws in sockets:
            ws.close()


# -- any frames -------------------------------------------------------------------------------

FUZZ_LIMIT = 1024
FUZZ_BATCH = 5
#: Close codes a client may send (RFC 6455 §7.4), ones it may not, and ones on which the two
#: paths disagree (aiohttp takes 1006 and codes from 5000 up).
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1015, 1016, 2000, 2999]
LOOSE_CODES = [1006, 5000, 65535]
SERVER_CODES = {*range(1000, 1004), *range(1007, 1015), *range(3000, 5000)}

#: Bayeux payloads: the number of replies each gets, or ``None`` for a close with 1007.
CONTENTS: dict[bytes, int | None] = {
    HANDSHAKE: 1,
    json.dumps(
        [
            {"channel": "/meta/handshake", "supportedConnectionTypes": ["websocket"]},
            {"channel": "/edge/fuzz", "data": 1, "id": "2"},
        ]
    ).encode(): 2,
    b'[{"channel":': None,
    b'["\xff"]': None,
    json.dumps([{"channel": "/meta/handshake"}] * (FUZZ_BATCH + 1)).encode(): None,
    b"": None,
    b"[" + b" " * (FUZZ_LIMIT + 100) + b"]": None,  # too big: 1009
}


@dataclass(frozen=True)
class Out:
    """A client frame to send."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    masked: bool = True
    form: int | None = None

    def encode(self) -> bytes:
        return frame(
            self.opcode,
            self.payload,
            fin=self.fin,
            rsv=self.rsv,
            masked=self.masked,
            form=self.form,
        )


@dataclass
class Expected:
    """What the gateway does with a sequence of frames (:func:`expect`)."""

    replies: list[int] = field(default_factory=list)  # messages in each reply frame
    least_replies: int = 0  # how many of them must come (fewer than all: a close cut them)
    pongs: list[bytes] = field(default_factory=list)
    least_pongs: int = 0
    close_codes: set[int | None] | None = None  # None: it stays open
    we_closed: bool = False
    unfinished: bool = False  # a fragmented message is under way at the end


def _close_codes(payload: bytes) -> set[int | None]:
    """The codes the gateway may answer a client's close frame with."""
    if not payload:
        return {None, 1000}
    if len(payload) == 1:
        return {1002}
    code = struct.unpack("!H", payload[:2])[0]
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        bad_reason = True
    else:
        bad_reason = False
    codes: set[int | None] = {1007} if bad_reason else set()
    if code in INVALID_CODES or not (code in VALID_CODES or code in LOOSE_CODES or code >= 3000):
        return codes | {1002}
    return codes | {code, 1000} | ({1002} if code in LOOSE_CODES else set())


def expect(frames: list[Out], strict: bool) -> Expected:
    """The gateway's answers, frame by frame, as RFC 6455 and the Bayeux contract say.

    ``strict`` is websockets' parser (the edge's own path); aiohttp's (the legacy path) takes
    unmasked frames, and after a message begun with empty fragments and no continuation it
    takes a new message rather than closing with 1002 (it keeps the fragmented one open)."""
    result = Expected()
    started = False  # a fragmented message is under way
    partial = b""  # its fragments so far
    bayeux_close = False  # a message closed with 1007: what follows may or may not be read
    for out in frames:
        problems: set[int | None] = set()
        if out.rsv or out.opcode in RESERVED_OPCODES or (strict and not out.masked):
            problems.add(1002)
        if out.opcode >= CLOSE and (not out.fin or len(out.payload) > 125):
            problems.add(1002)
        if out.opcode == CONT and not started:
            problems.add(1002)
        if out.opcode in (TEXT, BINARY) and started and (strict or partial or not out.fin):
            problems.add(1002)
        if out.opcode in (CONT, TEXT, BINARY) and len(partial) + len(out.payload) > FUZZ_LIMIT:
            problems.add(1009)
        if not problems and out.opcode == CLOSE:
            problems = _close_codes(out.payload)
            if started:  # websockets: "incomplete fragmented message"
                problems.add(1002)
            result.we_closed = True
        if problems:
            result.close_codes = problems | (result.close_codes or set())
            # A frame breaking a rule (or a close) ends the connection as soon as it is
            # parsed: what came before it in the same read may go unanswered.
            result.least_replies = result.least_pongs = 0
            return result
        if out.opcode == PING:
            result.pongs.append(out.payload)  # after a 1007, it may be read (and answered)
            result.least_pongs += 0 if bayeux_close else 1
        elif out.opcode in (TEXT, BINARY, CONT):
            if not out.fin:
                started = True
                partial += out.payload
                continue
            message, partial = partial + out.payload, b""
            if out.opcode == CONT:
                started = False
            replies = CONTENTS.get(message)
            if bayeux_close:
                continue  # not read, or read and not handled
            if replies is None:
                bayeux_close = True
                result.close_codes = {1007}
                result.least_replies = len(result.replies)
            else:
                result.replies.append(replies)
    result.unfinished = started
    if not bayeux_close:
        result.least_replies = len(result.replies)
    return result


CONTROL_PAYLOADS = st.binary(max_size=125)


@st.composite
def a_message(draw: st.DrawFn) -> list[Out]:
    """A Bayeux payload in one or more fragments, pings and pongs between them, perhaps not
    finished (its last fragment left out)."""
    valid = [content for content, replies in CONTENTS.items() if replies is not None]
    content = draw(st.sampled_from(valid * 4 + list(CONTENTS)))
    cuts = sorted(draw(st.lists(st.integers(0, len(content)), max_size=3)))
    parts = [content[a:b] for a, b in zip([0, *cuts], [*cuts, len(content)], strict=True)]
    first = draw(st.sampled_from([TEXT, TEXT, BINARY]))
    frames: list[Out] = []
    for i, part in enumerate(parts):
        if i and draw(st.booleans()):
            frames.append(Out(draw(st.sampled_from([PING, PONG])), draw(CONTROL_PAYLOADS)))
        form = draw(st.sampled_from([None, None, None, 126, 127]))
        frames.append(Out(first if i == 0 else CONT, part, fin=i == len(parts) - 1, form=form))
    if draw(st.integers(0, 19)) == 0:
        frames.pop()
    return frames


def _close_payloads() -> st.SearchStrategy[bytes]:
    codes = st.sampled_from(VALID_CODES + INVALID_CODES + LOOSE_CODES)
    reasons = st.sampled_from([b"", b"bye", b"\xff", "ça".encode()])
    return (
        st.builds(lambda c, r: struct.pack("!H", c) + r, codes, reasons)
        | st.just(b"")
        | st.just(b"x")
    )


FINE_CONTROLS = st.builds(Out, st.sampled_from([PING, PONG]), CONTROL_PAYLOADS)
#: A frame of any opcode, reserved bits, masked or not, final or not: mostly breaking a rule.
ODD_FRAMES = st.builds(
    Out,
    st.sampled_from([*RESERVED_OPCODES, CONT, TEXT, BINARY, CLOSE, PING, PONG]),
    st.binary(max_size=130),
    fin=st.booleans(),
    rsv=st.integers(0, 7),
    masked=st.booleans(),
)
CLOSES = st.builds(Out, st.just(CLOSE), _close_payloads())


@st.composite
def sequences(draw: st.DrawFn) -> list[Out]:
    """Messages mostly, controls between them, now and then a frame breaking a rule; perhaps a
    close frame at the end."""
    frames: list[Out] = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.integers(0, 7))
        if kind < 5:
            frames.extend(draw(a_message()))
        elif kind < 7:
            frames.append(draw(FINE_CONTROLS))
        else:
            frames.append(draw(ODD_FRAMES))
    if draw(st.integers(0, 3)) == 0:
        frames.append(draw(CLOSES))
    return frames


SEQUENCES = sequences()


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A frame sequence with a few bytes inserted, replaced or deleted."""
    data = b"".join(f.encode() for f in draw(SEQUENCES))
    return mutate(draw, data) if len(data) > 3 else data


ANY_BYTES = st.binary(max_size=300) | mangled()


@pytest.fixture
async def fuzzed(make_gateway: Any, fast_http: bool) -> RunningGateway:
    """One gateway per test, shared by all its examples: each must leave it working."""
    server: RunningGateway = await make_gateway(
        server={"fast_http": fast_http, "max_body_bytes": FUZZ_LIMIT, "max_batch": FUZZ_BATCH}
    )
    return server


async def _after_example(server: RunningGateway, logs: list[MutableMapping[str, Any]]) -> None:
    assert errors(logs) == [], errors(logs)
    assert await no_sockets_left(server), "a websocket was left open"
    await still_serves(server)
    await ws_still_serves(server)


FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FAST
@FUZZ
@given(frames=SEQUENCES)
@example(frames=[Out(TEXT, HANDSHAKE), Out(PING, b"x"), Out(TEXT, b"[")])
@example(frames=[Out(TEXT, HANDSHAKE[:9], fin=False), Out(PING), Out(TEXT, HANDSHAKE)])
@example(frames=[Out(TEXT, HANDSHAKE, form=127), Out(CLOSE, struct.pack("!H", 4000))])
async def test_any_frames_are_answered_as_rfc_6455_says(
    fuzzed: RunningGateway, fast_http: bool, frames: list[Out]
) -> None:
    """Well-formed frames, valid or not: every message answered by one frame, every ping by
    its pong, a rule broken by a close with its code, and nothing else."""
    want = expect(frames, strict=fast_http)
    event(f"closed with {sorted(want.close_codes, key=str)}" if want.close_codes else "open")
    event(f"{len(want.replies)} answered")
    with capture_logs() as logs:
        ws = await Ws.open(fuzzed)
        try:
            ws.send(*(f.encode() for f in frames))
            replies: list[list[dict[str, Any]]] = []
            pongs: list[bytes] = []

            def take(got: Frame) -> None:
                if got.opcode == TEXT:
                    replies.append(got.json())
                else:
                    assert got.opcode == PONG, got
                    pongs.append(got.data)

            if want.close_codes is None:
                while len(replies) < len(want.replies) or len(pongs) < len(want.pongs):
                    take(await ws.frame())
                ws.send(close_frame(1000))
                while (got := await ws.frame()).opcode != CLOSE:
                    take(got)
                # A close amid a fragmented message: websockets calls that message broken.
                assert got.code in ({1000, 1002} if want.unfinished else {1000}), got
                assert await ws.eof()
            else:
                while (got := await ws.frame()).opcode != CLOSE:
                    take(got)
                assert got.code in want.close_codes, (got, want)
                if got.code is not None:
                    assert got.code in SERVER_CODES, got
                if not want.we_closed:
                    ws.send(close_frame(got.code))
                assert await ws.eof()
        finally:
            ws.close()
        assert len(want.replies) >= len(replies) >= want.least_replies, (replies, want)
        for batch, count in zip(replies, want.replies, strict=False):
            assert isinstance(batch, list) and len(batch) == count, batch
            assert all(isinstance(m.get("successful"), bool) for m in batch), batch
            assert batch[0]["channel"] == "/meta/handshake" and batch[0]["successful"], batch
        assert pongs == want.pongs[: len(pongs)] and len(pongs) >= want.least_pongs, (pongs, want)
        await _after_example(fuzzed, logs)


@FAST
@FUZZ
@given(data=ANY_BYTES)
@example(data=b"\x81\xff" + struct.pack("!Q", 2**63) + b"abcd")
@example(data=b"\x81\xfe\x00")
async def test_any_bytes_after_the_upgrade_end_in_bounded_time(
    fuzzed: RunningGateway, data: bytes
) -> None:
    """Arbitrary bytes, then a half-close: what comes back is whole frames (Bayeux replies,
    pongs, at most one close frame with a valid code, last), then the connection ends."""
    with capture_logs() as logs:
        ws = await Ws.open(fuzzed)
        try:
            ws.send(data)
            ws.writer.write_eof()
            try:
                answer = await asyncio.wait_for(ws.reader.read(), STEP_S)
            except ConnectionResetError:
                answer = None
        finally:
            ws.close()
        event("reset" if answer is None else f"{len(parse_frames(answer))} frames back")
        if answer is not None:
            frames = parse_frames(answer)
            for got in frames[:-1]:
                assert got.opcode in (TEXT, PONG), frames
            for got in frames:
                if got.opcode == TEXT:
                    batch = got.json()
                    assert isinstance(batch, list) and batch, batch
                    assert all(isinstance(m.get("successful"), bool) for m in batch), batch
                elif got.opcode == CLOSE:
                    assert got.code is None or got.code in SERVER_CODES, got
                    got.data[2:].decode("utf-8")
        await _after_example(fuzzed, logs)
