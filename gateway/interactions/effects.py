"""What the center decides, as data: notices to agents, channel changes, emails to send."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.interactions.model import Interaction

__all__ = ["AgentView", "ChannelChanged", "Effects", "Notice", "QueueInfo", "SendEmail"]


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    channel: str
    in_queues: tuple[str, ...] = ()
    out_queues: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Notice:
    """Tell ``agent`` about ``interaction``; ``shown`` is the state they see."""

    agent: str
    interaction: Interaction
    shown: str
    reference_id: int | None = None
    chat_from: int | None = None  # send transcript events with EventId >= this (None: none)
    error: str | None = None  # an error notification (a reply the mail server refused)


@dataclass(frozen=True, slots=True)
class ChannelChanged:
    agent: str


@dataclass(frozen=True, slots=True)
class SendEmail:
    draft: Interaction


@dataclass(slots=True)
class Effects:
    saved: dict[str, Interaction] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    channels: list[ChannelChanged] = field(default_factory=list)
    emails: list[SendEmail] = field(default_factory=list)
    reference_id: int | None = None
    created: Interaction | None = None


@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent's state as the REST API shows it."""

    username: str
    user_id: str
    session: bool
    ready: Mapping[str, bool]
    reasons: Mapping[str, str | None]
    load: Mapping[str, int]
    capacity: Mapping[str, int]
