"""Frozen records of interactions, shared by the center, the store and the wire format."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.interactions.machine import Kind, State

__all__ = ["ChatEvent", "EmailContent", "GwsError", "Interaction", "Status"]


class Status:
    """GWS ``statusCode`` values (domain.md §1.3) with the HTTP status we answer them with."""

    OK = 0
    MISSING_PARAMETER = 1
    INVALID_STATE = 2
    FORBIDDEN = 3
    INTERNAL = 4
    NO_PERMISSION = 5
    NOT_FOUND = 6
    INVALID_INPUT = 10
    NOT_AUTHENTICATED = 20

    HTTP = {0: 200, 1: 400, 2: 409, 3: 403, 4: 500, 5: 403, 6: 404, 10: 400, 20: 401}


class GwsError(Exception):
    """A refused request: nothing changed.  Carries the GWS status code and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ChatEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a chat transcript (a ``chat_notifications`` entry on the wire)."""

    event_id: int
    kind: str  # PARTY_JOINED | NEW_MESSAGE | PARTY_LEFT
    user_id: str
    user_type: str | None = None  # Client | Agent on party events
    nickname: str | None = None
    text: str | None = None
    visibility: str = "All"
    at_ms: int = 0


class EmailContent(msgspec.Struct, frozen=True, kw_only=True):
    subject: str = ""
    text: str = ""
    html: str = ""
    from_address: str = ""
    from_personal: str = ""
    to: list[str] = msgspec.field(default_factory=list)
    cc: list[str] = msgspec.field(default_factory=list)
    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = msgspec.field(default_factory=list)


class Interaction(msgspec.Struct, frozen=True, kw_only=True):
    """An interaction as the store keeps it; replaced, never mutated."""

    id: str
    kind: Kind
    state: State
    queue: str
    queued_ms: int  # its place in the queue: kept when an invitation is taken back
    created_ms: int
    agent: str | None = None  # invited or owning agent
    invite_deadline_ms: int | None = None
    refused_by: tuple[str, ...] = ()
    user_data: dict[str, Any] = msgspec.field(default_factory=dict)
    email: EmailContent | None = None
    chat: tuple[ChatEvent, ...] = ()
    customer_id: str = ""
    customer_nickname: str = ""
    customer_left: bool = False
    parent_id: str | None = None
    ended_ms: int | None = None
    partner: str | None = None  # who created it over the partner API

    @property
    def channel(self) -> str:
        return "chat" if self.kind is Kind.CHAT else "email"
