"""What the REST handlers share, kept on the app under :data:`API`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.agents.sessions import Sessions
from gateway.agents.users import Directory, User, effective_capacity, effective_queues
from gateway.config import AgentsConfig
from gateway.interactions.service import InteractionService

__all__ = ["API", "ApiContext"]


@dataclass(slots=True, kw_only=True)
class ApiContext:
    service: InteractionService
    sessions: Sessions
    directory: Directory
    agents: AgentsConfig
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


API = web.AppKey("api", ApiContext)
