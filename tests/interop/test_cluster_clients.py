"""The official CometD JavaScript client against two gateway nodes on one Redis, through a
balancer without stickiness, and through the death of the node it was talking to.

The balancer (below) gives each new TCP connection to the next node in turn, skipping a node
that refuses: the client's long-polling connections (one for the held connect, one for the
rest) land on different nodes, and every reconnection may land on either.  When a node stops,
the client's next requests go to the other one and continue the same session: no
re-handshake, every event once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redisproc import RedisServer, redis_server

from gateway.app import HUB
from gateway.server import RunningGateway

pytestmark = pytest.mark.interop

CHANNEL = "/chat/demo"
TRANSPORTS = ("long-polling", "websocket")


class Balancer:
    """Round-robin TCP, a connection at a time, on 127.0.0.1; a refused node is skipped."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.turn = itertools.count()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()
        self.picked: list[int] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.ports)):
            port = self.ports[next(self.turn) % len(self.ports)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.picked.append(port)
            for task in (
                asyncio.create_task(_pipe(reader, up_writer)),
                asyncio.create_task(_pipe(up_reader, writer)),
            ):
                self.pipes.add(task)
                task.add_done_callback(self.pipes.discard)
            return
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def cluster(
    make_gateway: Any, redis: RedisServer
) -> AsyncIterator[tuple[list[RunningGateway], Balancer, str]]:
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    nodes = [
        await make_gateway(
            engine={"kind": "redis", "redis_url": redis.url, "node_id": n, "key_prefix": prefix},
            bayeux={"timeout_ms": 3000},
        )
        for n in "ab"
    ]
    balancer = Balancer([node.port for node in nodes])
    port = await balancer.start()
    yield nodes, balancer, f"http://127.0.0.1:{port}/cometd"
    await balancer.close()


async def messages(client: Any, count: int) -> list[Any]:
    return [(await client.expect("message", within=10))["data"] for _ in range(count)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_cometd_client_on_two_nodes_and_through_a_node_death(
    cluster: tuple[list[RunningGateway], Balancer, str], node_client: Any, transport: str
) -> None:
    nodes, balancer, url = cluster
    a, b = nodes
    client = await node_client(url, transport, channels=[CHANNEL])
    handshake = await client.expect("handshake")
    assert handshake["successful"] is True, handshake
    assert handshake["transport"] == transport
    client_id = handshake["clientId"]
    assert (await client.expect("subscribed"))["successful"] is True

    # Published on either node, every event arrives once, in order.
    for n in range(6):
        assert await nodes[n % 2].app[HUB].publish(CHANNEL, {"n": n}) == 1
    assert await messages(client, 6) == [{"n": n} for n in range(6)]
    assert len(set(balancer.picked)) == 2 or transport == "websocket"

    # The node the client is connected to stops (a held connect is answered at once); the
    # client's next connection goes to the other node, with the same session.
    talking = a if a.app[HUB].held_count else b
    survivor = b if talking is a else a
    await talking.close()
    for n in range(6, 9):
        assert await survivor.app[HUB].publish(CHANNEL, {"n": n}) == 1
    assert await messages(client, 3) == [{"n": n} for n in range(6, 9)]
    assert [e for e in client.events if e["event"] == "handshake"] == [handshake]
    message_events = [e for e in client.events if e["event"] == "message"]
    assert {e["clientId"] for e in message_events} == {client_id}
    assert [e["data"] for e in message_events] == [{"n": n} for n in range(9)]

    await client.send("disconnect")
    assert (await client.expect("disconnected"))["successful"] is True
