"""The contact center, pure: agents, routing, operations and timers.  No IO, time passed in.

Each call takes ``now`` (ms) and returns what happened as :class:`Effects`: interactions to
store, notifications to agents, channel changes, emails to send.  The service stores, then
notifies.  :meth:`Center.next_deadline` / :meth:`Center.tick` drive the invite timer.

Routing rules:

* An interaction is offered to an agent of its queue who has a contact-center session, is
  Ready on its channel and has free capacity there (pending invitations count); among them the
  one idle longest on that channel (last Ready, invited, or freed) gets it.
* Queued interactions are offered oldest first; one taken back (Reject, timeout, NotReady,
  logout, restart) keeps its place.
* An agent who rejected an interaction, or let its invitation time out, is offered it again
  only when no other agent of the queue is Ready on that channel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.interactions.effects import (
    AgentView,
    ChannelChanged,
    Effects,
    Notice,
    QueueInfo,
    SendEmail,
)
from gateway.interactions.machine import (
    Event,
    IllegalTransition,
    Kind,
    State,
    event_for,
    is_terminal,
    next_state,
)
from gateway.interactions.model import ChatEvent, EmailContent, GwsError, Interaction, Status
from gateway.interactions.routing import Available

__all__ = ["AgentView", "Center", "ChannelChanged", "Effects", "Notice", "QueueInfo", "SendEmail"]

CHANNELS = ("email", "chat")
_REPLY_PREFIX = re.compile(r"^\s*re\s*:", re.IGNORECASE)


@dataclass(slots=True)
class _Agent:
    username: str
    user_id: str
    nickname: str
    queues: frozenset[str]
    capacity: dict[str, int]
    session: bool = False
    ready: dict[str, bool] = field(default_factory=dict)
    reasons: dict[str, str | None] = field(default_factory=dict)
    idle_since: dict[str, int] = field(default_factory=dict)
    load: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in CHANNELS})
    next_reference: int = 1


def _check_params(event: Event, params: Mapping[str, Any]) -> None:
    """Refuse an operation whose parameters are missing or of the wrong type."""
    if event is Event.UPDATE_USER_DATA and not isinstance(params.get("userData"), dict):
        raise GwsError(Status.MISSING_PARAMETER, "userData (an object) is required")
    if event is Event.SEND_MESSAGE:
        text = params.get("text", params.get("message"))
        if not isinstance(text, str) or not text:
            raise GwsError(Status.MISSING_PARAMETER, "text is required")


class Center:
    def __init__(
        self,
        queues: Iterable[QueueInfo],
        invite_timeout_ms: int,
        new_id: Callable[[], str],
    ) -> None:
        self.queues = {q.name: q for q in queues}
        self.invite_timeout_ms = invite_timeout_ms
        self.new_id = new_id
        self._agents: dict[str, _Agent] = {}
        self._members: dict[str, set[str]] = {q: set() for q in self.queues}
        self.active: dict[str, Interaction] = {}  # every non-terminal interaction
        self._queued: dict[str, Interaction] = {}
        self._invited: dict[str, int] = {}  # id -> deadline
        self._available = Available(self.queues, self._can_take_from)

    # -- agents -------------------------------------------------------------------------------

    def add_agent(
        self,
        username: str,
        *,
        user_id: str,
        nickname: str,
        queues: Iterable[str],
        capacity: Mapping[str, int],
    ) -> None:
        """Register (or refresh) an agent; their load is recomputed from owned work."""
        old = self._agents.get(username)
        agent = _Agent(
            username=username,
            user_id=user_id,
            nickname=nickname,
            queues=frozenset(q for q in queues if q in self.queues),
            capacity={c: int(capacity.get(c, 0)) for c in CHANNELS},
        )
        if old is not None:
            agent.session, agent.ready, agent.reasons = old.session, old.ready, old.reasons
            agent.idle_since, agent.next_reference = old.idle_since, old.next_reference
            for queue in old.queues:
                self._members[queue].discard(username)
        for queue in agent.queues:
            self._members[queue].add(username)
        for ix in self.active.values():
            owned = ix.agent == username and ix.kind is not Kind.DRAFT
            if owned and ix.state in (State.INVITED, State.ACCEPTED):
                agent.load[ix.channel].add(ix.id)
        self._agents[username] = agent
        self._touch(agent)

    def agent_view(self, username: str) -> AgentView:
        a = self._agent(username)
        return AgentView(
            username=a.username,
            user_id=a.user_id,
            session=a.session,
            ready=dict(a.ready),
            reasons=dict(a.reasons),
            load={c: len(ids) for c, ids in a.load.items()},
            capacity=dict(a.capacity),
        )

    def has_agent(self, username: str) -> bool:
        return username in self._agents

    def start_session(self, username: str, channels: Iterable[str], now: int) -> Effects:
        a = self._agent(username)
        wanted = list(channels) or list(CHANNELS)
        unknown = [c for c in wanted if c not in CHANNELS]
        if unknown:
            raise GwsError(Status.INVALID_INPUT, f"unknown channel {unknown[0]!r}")
        effects = Effects()
        a.session = True
        for channel in wanted:
            a.ready.setdefault(channel, False)
            a.reasons.setdefault(channel, None)
        self._touch(a)
        effects.channels.append(ChannelChanged(username))
        effects.reference_id = self._reference(a)
        return effects

    def end_session(self, username: str, now: int) -> Effects:
        """Logout (or session expiry): invitations go back to their queues; owned work stays."""
        a = self._agent(username)
        effects = Effects()
        self._revoke_invites(a, None, now, effects)
        a.session = False
        a.ready = {}
        a.reasons = {}
        self._touch(a)
        effects.channels.append(ChannelChanged(username))
        effects.reference_id = self._reference(a)
        self._route(now, effects)
        return effects

    def set_channel(
        self, username: str, channel: str, ready: bool, reason: str | None, now: int
    ) -> Effects:
        a = self._agent(username)
        if channel not in CHANNELS:
            raise GwsError(Status.NOT_FOUND, f"no channel {channel!r}")
        if not a.session:
            raise GwsError(Status.INVALID_STATE, "start a contact center session first")
        effects = Effects()
        was = a.ready.get(channel, False)
        a.ready[channel] = ready
        a.reasons[channel] = None if ready else reason
        if ready and not was:
            a.idle_since[channel] = now
        if not ready:
            self._revoke_invites(a, channel, now, effects)
        self._touch(a)
        effects.channels.append(ChannelChanged(username))
        effects.reference_id = self._reference(a)
        self._route(now, effects)
        return effects

    # -- interactions -------------------------------------------------------------------------

    def create(
        self,
        *,
        kind: Kind,
        queue: str,
        now: int,
        user_data: Mapping[str, Any] | None = None,
        email: EmailContent | None = None,
        customer_nickname: str = "",
        partner: str | None = None,
        interaction_id: str | None = None,
        parent_id: str | None = None,
    ) -> Effects:
        info = self.queues.get(queue)
        if info is None:
            raise GwsError(Status.NOT_FOUND, f"no queue {queue!r}")
        channel = "chat" if kind is Kind.CHAT else "email"
        if info.channel != channel:
            raise GwsError(Status.INVALID_INPUT, f"queue {queue!r} takes {info.channel}")
        ix = Interaction(
            id=interaction_id or self.new_id(),
            kind=kind,
            state=State.QUEUED,
            queue=queue,
            queued_ms=now,
            created_ms=now,
            user_data=dict(user_data or {}),
            email=email if kind is Kind.EMAIL else None,
            partner=partner,
            parent_id=parent_id,
        )
        if kind is Kind.CHAT:
            customer_id = self.new_id()
            ix = msgspec.structs.replace(
                ix,
                customer_id=customer_id,
                customer_nickname=customer_nickname,
                chat=(
                    ChatEvent(
                        event_id=1,
                        kind="PARTY_JOINED",
                        user_id=customer_id,
                        user_type="Client",
                        nickname=customer_nickname,
                        at_ms=now,
                    ),
                ),
            )
        effects = Effects()
        self._save(ix, effects)
        effects.created = ix
        self._route(now, effects)
        return effects

    def operate(
        self,
        username: str,
        interaction_id: str,
        operation: str,
        params: Mapping[str, Any],
        now: int,
    ) -> Effects:
        """An agent's ``POST /api/v2/me/interactions/{id}``; raises :class:`GwsError`."""
        a = self._agent(username)
        ix = self.active.get(interaction_id)
        if ix is None or ix.agent != username:
            raise GwsError(Status.NOT_FOUND, f"no interaction {interaction_id} for this agent")
        if operation in ("Transfer", "PlaceInQueue"):
            return self._transfer(a, ix, operation, params, now)
        event = event_for(ix.kind, operation)
        if operation == "PlaceInWorkbin":
            raise GwsError(Status.INVALID_INPUT, "PlaceInWorkbin is not supported yet")
        if event is None:
            raise GwsError(Status.INVALID_INPUT, f"unknown operation {operation!r}")
        try:
            state = next_state(ix.kind, ix.state, event)
        except IllegalTransition as exc:
            raise GwsError(Status.INVALID_STATE, str(exc)) from None
        _check_params(event, params)  # before the reference id: a refusal changes nothing
        ref = self._reference(a)
        effects = Effects(reference_id=ref)
        if event is Event.ACCEPT:
            self._accept(a, ix, ref, now, effects)
        elif event is Event.REJECT:
            self._take_back(a, ix, "Rejected", now, effects, ref)
        elif event is Event.COMPLETE:
            done = self._end(ix, now, state)
            if ix.kind is Kind.CHAT and not ix.customer_left:
                done = self._chat_add(done, "PARTY_LEFT", a.user_id, "Agent", a.nickname, None, now)
            self._release(a, ix, now)
            self._save(done, effects)
            effects.notices.append(Notice(username, done, "Completed", ref))
        elif event is Event.UPDATE_USER_DATA:
            updated = msgspec.structs.replace(ix, user_data={**ix.user_data, **params["userData"]})
            self._save(updated, effects)
            effects.notices.append(Notice(username, updated, updated.state.value, ref))
        elif event is Event.SEND_MESSAGE:
            text = params.get("text", params.get("message"))
            first = len(ix.chat) + 1
            said = self._chat_add(ix, "NEW_MESSAGE", a.user_id, None, None, text, now)
            self._save(said, effects)
            effects.notices.append(Notice(username, said, said.state.value, ref, first))
        elif event is Event.REPLY:
            self._reply(a, ix, operation == "ReplyAll", params, ref, now, effects)
        elif event is Event.SEND:
            sending = msgspec.structs.replace(self._draft_edit(ix, params), state=state)
            self._save(sending, effects)
            effects.emails.append(SendEmail(sending))
            effects.notices.append(Notice(username, sending, "Completed", ref))
        elif event is Event.CANCEL:
            done = self._end(ix, now, state)
            self._save(done, effects)
            effects.notices.append(Notice(username, done, "Canceled", ref))
        else:  # pragma: no cover - every agent operation of the table is handled above
            raise GwsError(Status.INTERNAL, f"unhandled {event}")
        self._route(now, effects)
        return effects

    def sent(self, draft_id: str, now: int) -> Effects:
        """The SMTP server accepted a sent reply: it is Completed (its agent already saw that)."""
        effects = Effects()
        draft = self.active.get(draft_id)
        if draft is not None and draft.state is State.SENDING:
            self._save(
                self._end(draft, now, next_state(draft.kind, draft.state, Event.SENT)), effects
            )
        return effects

    def send_failed(self, draft_id: str, error: str, now: int) -> Effects:
        """The mail server refused a sent reply for good: it goes back to its agent, who sees
        it in Composing again with the error (as ``userData._SendError`` too)."""
        effects = Effects()
        draft = self.active.get(draft_id)
        if draft is None or draft.state is not State.SENDING:
            return effects
        back = msgspec.structs.replace(
            draft,
            state=next_state(draft.kind, draft.state, Event.SEND_FAILED),
            user_data={**draft.user_data, "_SendError": error},
        )
        self._save(back, effects)
        if back.agent is not None and back.agent in self._agents:
            effects.notices.append(Notice(back.agent, back, "Composing", error=error))
        return effects

    def customer_message(self, interaction_id: str, text: str, now: int) -> Effects:
        ix = self._chat(interaction_id)
        if ix.customer_left:
            raise GwsError(Status.INVALID_STATE, "the customer has left this chat")
        first = len(ix.chat) + 1
        said = self._chat_add(ix, "NEW_MESSAGE", ix.customer_id, None, None, text, now)
        effects = Effects()
        self._save(said, effects)
        if said.state is State.ACCEPTED and said.agent is not None:
            effects.notices.append(Notice(said.agent, said, said.state.value, None, first))
        return effects

    def customer_left(self, interaction_id: str, now: int) -> Effects:
        ix = self._chat(interaction_id)
        if ix.customer_left:
            return Effects()
        first = len(ix.chat) + 1
        left = self._chat_add(
            ix, "PARTY_LEFT", ix.customer_id, "Client", ix.customer_nickname, None, now
        )
        left = msgspec.structs.replace(left, customer_left=True)
        effects = Effects()
        if left.state is State.ACCEPTED and left.agent is not None:
            self._save(left, effects)
            effects.notices.append(Notice(left.agent, left, left.state.value, None, first))
            return effects
        agent = self._agents.get(left.agent) if left.agent else None
        done = self._end(left, now, State.COMPLETED)
        if agent is not None and left.state is State.INVITED:
            self._release(agent, left, now)
            effects.notices.append(Notice(agent.username, done, "Revoked"))
        self._save(done, effects)
        self._route(now, effects)
        return effects

    def restore(self, interactions: Iterable[Interaction], now: int) -> Effects:
        """After a restart: invitations go back to their queue at their old place."""
        effects = Effects()
        for ix in interactions:
            if is_terminal(ix.state):
                continue
            if ix.state is State.INVITED:
                ix = msgspec.structs.replace(
                    ix, state=State.QUEUED, agent=None, invite_deadline_ms=None
                )
                self._save(ix, effects)
            else:
                self._index(ix)
        self._route(now, effects)
        return effects

    def interactions_of(self, username: str) -> list[Interaction]:
        return [
            ix
            for ix in self.active.values()
            if ix.agent == username and ix.state not in (State.QUEUED, State.SENDING)
        ]

    # -- timers -------------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        return min(self._invited.values(), default=None)

    def tick(self, now: int) -> Effects:
        effects = Effects()
        for interaction_id, deadline in list(self._invited.items()):
            if deadline <= now:
                ix = self.active[interaction_id]
                agent = self._agents.get(ix.agent or "")
                if agent is not None:
                    self._take_back(agent, ix, "Revoked", now, effects)
        self._route(now, effects)
        return effects

    # -- internals ----------------------------------------------------------------------------

    def _agent(self, username: str) -> _Agent:
        agent = self._agents.get(username)
        if agent is None:
            raise GwsError(Status.NOT_AUTHENTICATED, f"unknown agent {username!r}")
        return agent

    def _chat(self, interaction_id: str) -> Interaction:
        ix = self.active.get(interaction_id)
        if ix is None or ix.kind is not Kind.CHAT:
            raise GwsError(Status.NOT_FOUND, f"no active chat {interaction_id}")
        return ix

    @staticmethod
    def _reference(agent: _Agent) -> int:
        ref = agent.next_reference
        agent.next_reference += 1
        return ref

    def _index(self, ix: Interaction) -> None:
        self._queued.pop(ix.id, None)
        self._invited.pop(ix.id, None)
        if is_terminal(ix.state):
            self.active.pop(ix.id, None)
            return
        self.active[ix.id] = ix
        if ix.state is State.QUEUED:
            self._queued[ix.id] = ix
        elif ix.state is State.INVITED and ix.invite_deadline_ms is not None:
            self._invited[ix.id] = ix.invite_deadline_ms

    def _save(self, ix: Interaction, effects: Effects) -> None:
        self._index(ix)
        effects.saved[ix.id] = ix

    @staticmethod
    def _end(ix: Interaction, now: int, state: State) -> Interaction:
        return msgspec.structs.replace(ix, state=state, invite_deadline_ms=None, ended_ms=now)

    def _release(self, agent: _Agent, ix: Interaction, now: int) -> None:
        load = agent.load[ix.channel]
        if ix.id in load:
            load.discard(ix.id)
            agent.idle_since[ix.channel] = now
            self._touch(agent)

    def _invite(self, agent: _Agent, ix: Interaction, now: int, effects: Effects) -> None:
        invited = msgspec.structs.replace(
            ix,
            state=State.INVITED,
            agent=agent.username,
            invite_deadline_ms=now + self.invite_timeout_ms,
            user_data={
                **ix.user_data,
                "RTargetAgentSelected": agent.username,
                "RTargetPlaceSelected": agent.username,
            },
        )
        agent.load[ix.channel].add(ix.id)
        agent.idle_since[ix.channel] = now
        self._touch(agent)
        self._save(invited, effects)
        effects.notices.append(Notice(agent.username, invited, "Invited"))

    def _accept(self, a: _Agent, ix: Interaction, ref: int, now: int, effects: Effects) -> None:
        accepted = msgspec.structs.replace(ix, state=State.ACCEPTED, invite_deadline_ms=None)
        chat_from = None
        if ix.kind is Kind.CHAT:
            accepted = self._chat_add(
                accepted, "PARTY_JOINED", a.user_id, "Agent", a.nickname, None, now
            )
            chat_from = 1  # the whole transcript so far
        self._save(accepted, effects)
        effects.notices.append(Notice(a.username, accepted, "Accepted", ref, chat_from))

    def _take_back(
        self,
        agent: _Agent,
        ix: Interaction,
        shown: str,
        now: int,
        effects: Effects,
        ref: int | None = None,
    ) -> None:
        """Reject, timeout, NotReady, logout: back to the queue at its old place."""
        queued = msgspec.structs.replace(
            ix,
            state=State.QUEUED,
            agent=None,
            invite_deadline_ms=None,
            refused_by=tuple(dict.fromkeys((*ix.refused_by, agent.username))),
        )
        self._release(agent, ix, now)
        self._save(queued, effects)
        effects.notices.append(Notice(agent.username, ix, shown, ref))

    def _revoke_invites(
        self, agent: _Agent, channel: str | None, now: int, effects: Effects
    ) -> None:
        for ix in list(self.active.values()):
            if (
                ix.agent == agent.username
                and ix.state is State.INVITED
                and (channel is None or ix.channel == channel)
            ):
                self._take_back(agent, ix, "Revoked", now, effects)

    def _transfer(
        self, a: _Agent, ix: Interaction, operation: str, params: Mapping[str, Any], now: int
    ) -> Effects:
        event = Event.TRANSFER_TO_QUEUE
        target_agent = None
        queue = params.get("queueName", params.get("queue"))
        user = params.get("userName", params.get("agent", params.get("userUri")))
        if operation == "Transfer" and user is not None:
            if not isinstance(user, str) or not user:
                raise GwsError(Status.INVALID_INPUT, "userName must be a user name")
            target_agent = self._find_agent(user.rstrip("/").rsplit("/", 1)[-1])
            event = Event.TRANSFER_TO_AGENT
        elif queue is None:
            raise GwsError(Status.MISSING_PARAMETER, "queueName (or userName) is required")
        try:
            next_state(ix.kind, ix.state, event)
        except IllegalTransition as exc:
            raise GwsError(Status.INVALID_STATE, str(exc)) from None
        if target_agent is not None:
            if target_agent is a:
                raise GwsError(Status.INVALID_INPUT, "cannot transfer to yourself")
            if not self._can_take(target_agent, ix.channel):
                raise GwsError(Status.INVALID_STATE, f"{target_agent.username} cannot take it now")
        elif not isinstance(queue, str) or queue not in self.queues:
            raise GwsError(Status.NOT_FOUND, f"no queue {queue!r}")
        elif self.queues[queue].channel != ix.channel:
            raise GwsError(
                Status.INVALID_INPUT, f"queue {queue!r} takes {self.queues[queue].channel}"
            )
        ref = self._reference(a)
        effects = Effects(reference_id=ref)
        self._release(a, ix, now)
        effects.notices.append(Notice(a.username, ix, "Completed", ref))
        if ix.kind is Kind.CHAT and not ix.customer_left:
            ix = self._chat_add(ix, "PARTY_LEFT", a.user_id, "Agent", a.nickname, None, now)
        moved = msgspec.structs.replace(
            ix,
            state=State.QUEUED,
            agent=None,
            refused_by=(),
            queue=queue if target_agent is None and isinstance(queue, str) else ix.queue,
            queued_ms=now,
        )
        if target_agent is not None:
            self._invite(target_agent, moved, now, effects)
        else:
            self._save(moved, effects)
        self._route(now, effects)
        return effects

    def _find_agent(self, name: str) -> _Agent:
        for agent in self._agents.values():
            if name in (agent.username, agent.user_id):
                return agent
        raise GwsError(Status.NOT_FOUND, f"no agent {name!r}")

    def _reply(
        self,
        a: _Agent,
        parent: Interaction,
        reply_all: bool,
        params: Mapping[str, Any],
        ref: int,
        now: int,
        effects: Effects,
    ) -> None:
        original = parent.email or EmailContent()
        subject = original.subject
        if not _REPLY_PREFIX.match(subject):
            subject = f"{params.get('subjectPrefix', 'Re:')} {subject}".strip()
        mailbox = str(parent.user_data.get("Mailbox") or (original.to[0] if original.to else ""))
        to = [original.from_address] if original.from_address else []
        cc: list[str] = []
        if reply_all:
            seen = {mailbox.lower(), *(t.lower() for t in to)}
            for address in (*original.to, *original.cc):
                if address.lower() not in seen:
                    seen.add(address.lower())
                    cc.append(address)
        text = params.get("bodyAsPlainText", params.get("text", ""))
        info = self.queues.get(parent.queue)
        draft = Interaction(
            id=self.new_id(),
            kind=Kind.DRAFT,
            state=State.COMPOSING,
            queue=(info.out_queues[0] if info and info.out_queues else parent.queue),
            queued_ms=now,
            created_ms=now,
            agent=a.username,
            user_data=dict(parent.user_data),
            email=EmailContent(
                subject=subject,
                text=text if isinstance(text, str) else "",
                from_address=mailbox,
                to=to,
                cc=cc,
                in_reply_to=original.message_id,
                references=[*original.references, original.message_id]
                if original.message_id
                else list(original.references),
            ),
            parent_id=parent.id,
        )
        self._save(draft, effects)
        effects.created = draft
        effects.notices.append(Notice(a.username, draft, "Composing", ref))

    @staticmethod
    def _draft_edit(ix: Interaction, params: Mapping[str, Any]) -> Interaction:
        """The draft as Send gives it: top-level fields, or GWS's ``email{...}`` object."""
        email = ix.email or EmailContent()
        nested = params.get("email")
        if isinstance(nested, Mapping):
            params = {**params, **nested}
        changes: dict[str, Any] = {}
        for key, name in (
            ("subject", "subject"),
            ("bodyAsPlainText", "text"),
            ("text", "text"),
            ("body", "html"),
        ):
            value = params.get(key)
            if isinstance(value, str):
                changes[name] = value
        for key in ("to", "cc"):
            value = params.get(key)
            if isinstance(value, str) and value:
                value = [value]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                changes[key] = value
        if not changes:
            return ix
        return msgspec.structs.replace(ix, email=msgspec.structs.replace(email, **changes))

    @staticmethod
    def _chat_add(
        ix: Interaction,
        kind: str,
        user_id: str,
        user_type: str | None,
        nickname: str | None,
        text: str | None,
        now: int,
    ) -> Interaction:
        event = ChatEvent(
            event_id=len(ix.chat) + 1,
            kind=kind,
            user_id=user_id,
            user_type=user_type,
            nickname=nickname,
            text=text,
            at_ms=now,
        )
        return msgspec.structs.replace(ix, chat=(*ix.chat, event))

    def _can_take(self, agent: _Agent, channel: str) -> bool:
        return (
            agent.session
            and agent.ready.get(channel, False)
            and len(agent.load[channel]) < agent.capacity.get(channel, 0)
        )

    def _touch(self, agent: _Agent) -> None:
        """The agent's availability or idle time changed: index them anew."""
        self._available.touch(
            agent.username,
            {q: agent.idle_since.get(self.queues[q].channel, 0) for q in agent.queues},
        )

    def _can_take_from(self, username: str, queue: str) -> bool:
        agent = self._agents.get(username)
        return agent is not None and self._can_take(agent, self.queues[queue].channel)

    def _route(self, now: int, effects: Effects) -> None:
        """Offer queued interactions, oldest first, while anyone can take them.

        A first pass offers each only to agents who have not refused it; a second pass lets
        an agent who refused have it back when nobody else of its queue is Ready.  So an
        agent who rejects one gets the next new one rather than the same one again.
        """
        if not self._queued:
            return
        waiting = {ix.queue for ix in self._queued.values()}
        if not any(self._available.anyone(queue) for queue in waiting):
            return
        ordered = sorted(self._queued.values(), key=lambda i: (i.queued_ms, i.id))
        for second_pass in (False, True):
            for ix in ordered:
                if ix.id not in self._queued or (second_pass and not ix.refused_by):
                    continue
                if second_pass and self._others_ready(ix):
                    continue
                chosen = self._available.pick(ix.queue, () if second_pass else ix.refused_by)
                if chosen is not None:
                    self._invite(self._agents[chosen], ix, now, effects)

    def _others_ready(self, ix: Interaction) -> bool:
        """Is an agent of its queue who has not refused it Ready on its channel?"""
        for name in self._members.get(ix.queue, ()):
            agent = self._agents[name]
            if name not in ix.refused_by and agent.session and agent.ready.get(ix.channel):
                return True
        return False
