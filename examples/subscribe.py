"""Subscribe to a channel and print what arrives: the smallest useful CometD client.

    .venv/bin/python examples/subscribe.py http://localhost:8080/cometd /chat/demo

Uses aiocometd (the maintained fork ``aiocometd-noloop``).  Use ``localhost``, not
``127.0.0.1``: aiohttp's default cookie jar drops cookies for IP addresses and the gateway binds
long-polling sessions to their BAYEUX_BROWSER cookie.  ``--count N`` stops after N messages;
``--transport websocket`` or ``long-polling`` picks the transport.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiocometd_noloop import Client, ConnectionType


async def main(url: str, channel: str, count: int, transport: str) -> int:
    kind = ConnectionType.WEBSOCKET if transport == "websocket" else ConnectionType.LONG_POLLING
    async with Client(url, connection_types=[kind], ssl=True) as client:
        await client.subscribe(channel)
        print(json.dumps({"subscribed": channel}), flush=True)
        received = 0
        async for message in client:
            print(json.dumps(message["data"]), flush=True)
            received += 1
            if count and received >= count:
                break
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("channel")
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    parser.add_argument(
        "--transport", choices=["long-polling", "websocket"], default="long-polling"
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.url, args.channel, args.count, args.transport)))
