"""What the REST handlers share, kept on the app under :data:`API`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.agents.sessions import ApiSession, Sessions
from gateway.agents.users import Directory, User, effective_capacity, effective_queues
from gateway.config import AgentsConfig, PartnersConfig
from gateway.interactions.service import InteractionService

__all__ = ["API", "ApiContext"]


@dataclass(slots=True, kw_only=True)
class ApiContext:
    service: InteractionService
    sessions: Sessions
    directory: Directory
    agents: AgentsConfig
    partners: PartnersConfig
    clock_ms: Callable[[], int]

    @property
    def cookie_name(self) -> str:
        return self.agents.session_cookie

    def register(self, user: User) -> None:
        """Make a logged-in user known to the center, with their queues and capacity."""
        self.service.center.add_agent(
            user.username,
            user_id=user.id,
            nickname=" ".join(p for p in (user.first_name, user.last_name) if p) or user.username,
            queues=effective_queues(user, self.agents),
            capacity=effective_capacity(user, self.agents),
        )

    async def end_login(self, session: ApiSession) -> None:
        """A login ends (logout, or idle past ``agents.session_idle_timeout_s``): its cookie and
        token stop working at once and the CometD sessions it granted end.  When it was the
        agent's last login, the contact-center session ends too, as EndContactCenterSession
        (invitations go back to their queues, owned work stays), before the agent's CometD
        sessions end: a held connect carries those last messages with its final reply."""
        service, username = self.service, session.username
        self.sessions.drop(session.id)
        if self.sessions.of_user(username):
            await service.disconnect_agent(username, login=session.login_id)
            return
        if service.center.has_agent(username):
            await service.apply(service.center.end_session(username, self.clock_ms()))
        await service.disconnect_agent(username)


API = web.AppKey("api", ApiContext)
