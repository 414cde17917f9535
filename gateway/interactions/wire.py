"""``InteractionStateMessage`` and ``ChannelStateChangeMessageV2`` in the desktops' wire format.

The shapes follow the seed payloads (``fixtures/seed/*.json``): an Invited or Revoked email
carries ``email_object`` with only ``interactionId``; an Accepted email carries the whole
``email_object`` and ``inQueues`` / ``outQueues``; a chat carries ``chat_notifications``,
``inQueues`` and ``sessionId`` once accepted (the transcript so far on Accept, then only what is
new).  We add ``sequence`` (per agent, increasing) to every message, ``referenceId`` to the
one that answers a REST operation, and ``notificationType: "Error"`` with ``errorMessage`` to one
reporting a failure (GWS's Error notification); clients ignore keys they do not know.
"""

from __future__ import annotations

from typing import Any

from gateway.interactions.center import AgentView, QueueInfo
from gateway.interactions.machine import Kind, State, capabilities
from gateway.interactions.model import ChatEvent, Interaction

__all__ = [
    "EXTRA_KEYS",
    "channel_list",
    "channel_message",
    "interaction_message",
    "resource",
    "transcript",
]

EXTRA_KEYS = frozenset(
    {"sequence", "referenceId", "parentInteractionId", "notificationType", "errorMessage"}
)

_SHOWN_STATES = {"Invited": State.INVITED, "Accepted": State.ACCEPTED, "Composing": State.COMPOSING}


def interaction_message(
    ix: Interaction,
    shown: str,
    queue: QueueInfo | None,
    *,
    sequence: int | None = None,
    reference_id: int | None = None,
    chat_from: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The ``data`` of a ``/v2/me/interactions`` message telling an agent ``shown``."""
    state = _SHOWN_STATES.get(shown)
    caps = capabilities(ix.kind, state) if state is ix.state else []
    full = shown in ("Accepted", "Composing")
    data: dict[str, Any] = {
        "messageType": "InteractionStateMessage",
        "id": ix.id,
        "channel": ix.channel,
        "state": shown,
        "capabilities": caps,
        "interactionType": "Outbound" if ix.kind is Kind.DRAFT else "Inbound",
        "interactionSubType": "OutboundReply" if ix.kind is Kind.DRAFT else "InboundNew",
        "currentQueue": ix.queue,
        "userData": ix.user_data,
    }
    if ix.kind is not Kind.CHAT:
        data["email_object"] = _email_object(ix, full)
        if full:
            data["inQueues"] = _queue_map(queue.in_queues if queue else ())
            data["outQueues"] = _queue_map(queue.out_queues if queue else ())
    elif full:
        data["chat_notifications"] = transcript(ix, chat_from) if chat_from is not None else []
        data["inQueues"] = _queue_map(queue.in_queues if queue else ())
        data["sessionId"] = ix.id
    if ix.parent_id is not None:
        data["parentInteractionId"] = ix.parent_id
    if reference_id is not None:
        data["referenceId"] = reference_id
    if error is not None:
        data["notificationType"] = "Error"
        data["errorMessage"] = error
    if sequence is not None:
        data["sequence"] = sequence
    return data


def resource(ix: Interaction, queue: QueueInfo | None) -> dict[str, Any]:
    """An interaction as ``GET .../interactions`` lists it: the notification shape, now."""
    shown = ix.state.value
    return interaction_message(ix, shown, queue, chat_from=1)


def channel_message(agent: AgentView, *, sequence: int | None = None) -> dict[str, Any]:
    """The ``data`` of a ``/v2/me/channels`` message (GWS ``ChannelStateChangeMessageV2``)."""
    data: dict[str, Any] = {
        "messageType": "ChannelStateChangeMessageV2",
        "channels": channel_list(agent),
    }
    if sequence is not None:
        data["sequence"] = sequence
    return data


def channel_list(agent: AgentView) -> list[dict[str, Any]]:
    channels = []
    for name, ready in agent.ready.items():
        state = "Ready" if ready else "NotReady"
        user_state: dict[str, Any] = {"id": state, "displayName": state, "state": state}
        reason = agent.reasons.get(name)
        if reason:
            user_state["reason"] = reason
        channels.append(
            {
                "channel": name,
                "dndState": "Off",
                "userState": user_state,
                "capacity": agent.capacity.get(name, 0),
                "activeInteractions": agent.load.get(name, 0),
            }
        )
    return channels


def _email_object(ix: Interaction, full: bool) -> dict[str, Any]:
    if not full or ix.email is None:
        return {"interactionId": ix.id}
    email = ix.email
    return {
        "text": email.text,
        "interactionId": ix.id,
        "fromAddress": email.from_address,
        "toAddress": ", ".join(email.to),
        "subject": email.subject,
    }


def _queue_map(names: tuple[str, ...]) -> dict[str, str]:
    return {name: "" for name in names}


def transcript(ix: Interaction, first: int = 1) -> list[dict[str, Any]]:
    """The chat's events from EventId ``first`` on, as ``chat_notifications`` entries."""
    return [_chat_event(e) for e in ix.chat if e.event_id >= first]


def _chat_event(event: ChatEvent) -> dict[str, Any]:
    return {
        "EventId": event.event_id,
        "NoticeText": None,
        "NoticeType": None,
        "MessageText": event.text,
        "UserId": event.user_id,
        "MessageType": event.kind,
        "UserType": event.user_type,
        "Visibility": event.visibility,
        "NickName": event.nickname,
    }
