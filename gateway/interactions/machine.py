"""The interaction state machine: one table of states, events and capabilities.

Rules (Genesys Interaction Server semantics, as the desktops expect them; see
``shared/reference/domain.md`` §2 and table (a), and the seed payloads, which win):

* An inbound interaction (email or chat) is **Queued** until the router offers it to one agent:
  it is then **Invited** (capabilities ``Accept``, ``Reject``) and an invite timer runs.
* **Accept** makes it **Accepted**: the agent owns it until Complete, Transfer or
  PlaceInQueue.  Its capabilities are the seed's lists, which differ by channel.
* **Reject**, the invite timer, the agent going NotReady or ending their session take an
  invitation back: the interaction is **Queued** again at its old position, and the agent is
  told ``Rejected`` or ``Revoked``.  Accepted work stays with its agent.
* **Complete** (``StopProcessing`` in the seed's lists) ends it: **Completed**.
* **Transfer** to a queue or **PlaceInQueue** queue it elsewhere; Transfer to an agent invites
  that agent directly.
* A chat customer leaving ends a chat nobody has accepted (**Completed**); an accepted chat
  stays with its agent, who completes it.
* **Reply** / **ReplyAll** on an accepted email create a *draft*, an outbound interaction of its
  own in **Composing**; **Send** hands it to the mail sender: the agent is told **Completed**
  at once, while the draft waits in **Sending** until the SMTP server accepts it (then it is
  **Completed**); **Cancel** ends it as **Canceled**.  A reply the mail server refuses for good
  goes back to its agent in **Composing**, with the error, to correct and Send again or Cancel.

Everything here is data: :data:`TRANSITIONS` maps (kind, state, event) to the next state, and
:func:`capabilities` gives the operations an agent may request in a state.  An event that the
table does not list for a state raises :class:`IllegalTransition`, naming both; the API turns
that into GWS ``statusCode`` 2 and changes nothing.
"""

from __future__ import annotations

import enum

__all__ = [
    "OPERATIONS",
    "TRANSITIONS",
    "Event",
    "IllegalTransition",
    "Kind",
    "State",
    "capabilities",
    "event_for",
    "is_terminal",
    "next_state",
]


class Kind(enum.Enum):
    EMAIL = "email"  # an inbound email
    CHAT = "chat"
    DRAFT = "draft"  # an agent's reply to an email, until sent or cancelled


class State(enum.Enum):
    QUEUED = "Queued"  # internal: agents never see it
    INVITED = "Invited"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    COMPOSING = "Composing"
    CANCELED = "Canceled"
    SENDING = "Sending"  # internal: a sent draft until the SMTP server accepts it


class Event(enum.Enum):
    ROUTE = "route"  # the router offers it to an agent
    ACCEPT = "Accept"
    REJECT = "Reject"
    REVOKE = "revoke"  # invite timeout, agent NotReady / logged out, restart
    COMPLETE = "Complete"
    TRANSFER_TO_QUEUE = "TransferToQueue"  # Transfer with a queue, and PlaceInQueue
    TRANSFER_TO_AGENT = "TransferToAgent"
    REPLY = "Reply"  # Reply and ReplyAll: the parent stays, a draft is made
    UPDATE_USER_DATA = "UpdateUserData"
    SEND_MESSAGE = "SendMessage"  # chat, from the agent
    CUSTOMER_MESSAGE = "customer_message"
    CUSTOMER_LEFT = "customer_left"
    SEND = "Send"  # draft
    CANCEL = "Cancel"  # draft
    SENT = "sent"  # draft: the SMTP server accepted it
    SEND_FAILED = "send_failed"  # draft: the SMTP server refused it for good


Q, INV, A, C = State.QUEUED, State.INVITED, State.ACCEPTED, State.COMPLETED

_INBOUND: dict[tuple[State, Event], State] = {
    (Q, Event.ROUTE): INV,
    (INV, Event.ACCEPT): A,
    (INV, Event.REJECT): Q,
    (INV, Event.REVOKE): Q,
    (A, Event.COMPLETE): C,
    (A, Event.TRANSFER_TO_QUEUE): Q,
    (A, Event.TRANSFER_TO_AGENT): INV,
    (A, Event.UPDATE_USER_DATA): A,
}
_CHAT_ONLY: dict[tuple[State, Event], State] = {
    (Q, Event.CUSTOMER_MESSAGE): Q,
    (INV, Event.CUSTOMER_MESSAGE): INV,
    (A, Event.CUSTOMER_MESSAGE): A,
    (A, Event.SEND_MESSAGE): A,
    (Q, Event.CUSTOMER_LEFT): C,
    (INV, Event.CUSTOMER_LEFT): C,
    (A, Event.CUSTOMER_LEFT): A,  # the agent still completes it
}

TRANSITIONS: dict[tuple[Kind, State, Event], State] = {
    **{(Kind.EMAIL, s, e): n for (s, e), n in _INBOUND.items()},
    (Kind.EMAIL, A, Event.REPLY): A,
    **{(Kind.CHAT, s, e): n for (s, e), n in {**_INBOUND, **_CHAT_ONLY}.items()},
    (Kind.DRAFT, State.COMPOSING, Event.SEND): State.SENDING,
    (Kind.DRAFT, State.SENDING, Event.SENT): C,
    (Kind.DRAFT, State.SENDING, Event.SEND_FAILED): State.COMPOSING,
    (Kind.DRAFT, State.COMPOSING, Event.CANCEL): State.CANCELED,
    (Kind.DRAFT, State.COMPOSING, Event.UPDATE_USER_DATA): State.COMPOSING,
}

TERMINAL = frozenset({State.COMPLETED, State.CANCELED})

# The capability lists of the seed payloads, verbatim and in their order.
_CAPABILITIES: dict[tuple[Kind, State], tuple[str, ...]] = {
    (Kind.EMAIL, INV): ("Accept", "Reject"),
    (Kind.CHAT, INV): ("Accept", "Reject"),
    (Kind.EMAIL, A): (
        "Transfer",
        "PlaceInQueue",
        "StopProcessing",
        "PlaceInWorkbin",
        "UpdateProperties",
        "Reply",
        "ReplyAll",
    ),
    (Kind.CHAT, A): (
        "Transfer",
        "PlaceInQueue",
        "StopProcessing",
        "PlaceInWorkbin",
        "UpdateProperties",
        "Reply",
    ),
    (Kind.DRAFT, State.COMPOSING): ("Send", "Cancel", "UpdateProperties"),
}

# REST ``operationName`` -> event.  The seed's capability names and the GWS operation names
# both work: ``StopProcessing`` is ``Complete``, ``UpdateProperties`` is ``UpdateUserData``, and
# a chat ``Reply`` sends a message.  Transfer and PlaceInQueue are resolved by the service
# (to an agent or to a queue) before they reach the table.
OPERATIONS: dict[str, Event] = {
    "Accept": Event.ACCEPT,
    "Reject": Event.REJECT,
    "Complete": Event.COMPLETE,
    "StopProcessing": Event.COMPLETE,
    "Reply": Event.REPLY,
    "ReplyAll": Event.REPLY,
    "UpdateUserData": Event.UPDATE_USER_DATA,
    "UpdateProperties": Event.UPDATE_USER_DATA,
    "SendMessage": Event.SEND_MESSAGE,
    "Send": Event.SEND,
    "Cancel": Event.CANCEL,
}


class IllegalTransition(Exception):
    """``event`` is not allowed in ``state`` for this kind of interaction."""

    def __init__(self, kind: Kind, state: State, event: Event) -> None:
        super().__init__(f"{event.value} is not valid for {kind.value} in state {state.value}")
        self.kind = kind
        self.state = state
        self.event = event


def event_for(kind: Kind, operation: str) -> Event | None:
    """The event a REST ``operationName`` means for this kind (``None``: no such operation)."""
    if kind is Kind.CHAT and operation == "Reply":
        return Event.SEND_MESSAGE
    return OPERATIONS.get(operation)


def next_state(kind: Kind, state: State, event: Event) -> State:
    try:
        return TRANSITIONS[kind, state, event]
    except KeyError:
        raise IllegalTransition(kind, state, event) from None


def capabilities(kind: Kind, state: State) -> list[str]:
    """What the agent may do now (``[]`` in every state not listed, terminal ones included)."""
    return list(_CAPABILITIES.get((kind, state), ()))


def is_terminal(state: State) -> bool:
    return state in TERMINAL
