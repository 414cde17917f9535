"""HTTP/1.1 on raw sockets, for the tests of the edge: requests byte for byte, answers read as
they come (Content-Length or chunked)."""

from __future__ import annotations

import asyncio

HANDSHAKE = b'[{"channel":"/meta/handshake","supportedConnectionTypes":["long-polling"]}]'


def post(path: str, body: bytes, *extra: str, version: str = "HTTP/1.1") -> bytes:
    """A JSON ``POST`` with a Content-Length; ``extra`` header lines follow the usual ones."""
    headers = "".join(f"{h}\r\n" for h in extra)
    return (
        f"POST {path} {version}\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer: status, headers (lower-case names, first of each), body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
    if headers.get("transfer-encoding") == "chunked":  # aiohttp's streamed answers
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), 10)
    return status, headers, body
