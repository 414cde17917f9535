"""REST bodies that are not JSON a parser can hold get a 400 with their GWS status, not a 500.

Every JSON body of the REST API goes through one reader (gateway/api/common.py
``read_object``): nesting deeper than msgspec follows and bytes that are not UTF-8 are the
client's fault (``statusCode`` 10, invalid input), answered in the API's own error shape
``{"statusCode", "statusMessage"}``, and they change nothing.
"""

from __future__ import annotations

import aiohttp
import pytest

from contact.conftest import Center, MakeCenter

BODIES = [
    pytest.param(b"[" * 100_000, id="100k-open-brackets"),
    pytest.param(b'{"operationName":' + b"[" * 5_000 + b"]" * 5_000 + b"}", id="deep-value"),
    pytest.param(b'{"operationName":"Ready","\xff":1}', id="invalid-utf8-key"),
    pytest.param(b'{"operationName":"\xc3"}', id="truncated-utf8"),
]
#: (who posts, path): the agent's own operations and the partner's.
TARGETS = [
    pytest.param("agent", "/api/v2/me", id="me"),
    pytest.param("agent", "/api/v2/me/channels/email", id="me-channel"),
    pytest.param("agent", "/api/v2/me/interactions/0000NOSUCHTHING1", id="me-interaction"),
    pytest.param("partner", "/api/v2/interactions", id="interactions"),
    # the partner's own chat: another's, or none, is a 404 before the body is read
    pytest.param("partner", "/api/v2/interactions/{chat}", id="interaction"),
]


async def _post(center: Center, who: str, path: str, body: bytes) -> tuple[int, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if who == "agent":
        agent = await center.desktop("agent1", "email", bayeux=False)
        http, headers["X-CSRF-TOKEN"] = agent.http, agent.csrf
    else:
        http = center.partner.http
        headers.update(center.partner.headers)
    async with http.post(center.base + path, data=body, headers=headers) as r:
        assert r.content_type == "application/json", r.headers
        return r.status, await r.json()


@pytest.mark.parametrize(("who", "path"), TARGETS)
@pytest.mark.parametrize("body", BODIES)
async def test_unreadable_json_is_a_400(
    make_center: MakeCenter, who: str, path: str, body: bytes
) -> None:
    center = await make_center()
    if "{chat}" in path:
        created = (await center.partner.create({"channel": "chat"}))[1]
        path = path.format(chat=created["id"])
    status, answer = await _post(center, who, path, body)
    assert (status, answer["statusCode"]) == (400, 10), answer
    assert isinstance(answer["statusMessage"], str) and answer["statusMessage"]
    # Nothing changed, and the API still answers.
    if who == "agent":
        (agent,) = center.desktops
        _, me = await agent.get("/api/v2/me?subresources=*")
        assert [c["userState"]["state"] for c in me["user"]["channels"]] == ["Ready"]
    assert (await center.partner.create({"channel": "chat"}))[0] == 200


async def test_a_partner_gets_json_even_without_a_body(make_center: MakeCenter) -> None:
    center = await make_center()
    async with aiohttp.ClientSession() as http:
        r = await http.post(center.base + "/api/v2/interactions", headers=center.partner.headers)
        assert r.status == 400 and (await r.json())["statusCode"] == 10
