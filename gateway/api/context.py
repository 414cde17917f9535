"""What the REST handlers share, kept on the app under :data:`API`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from gateway.agents.sessions import Sessions
from gateway.agents.users import Directory, User
from gateway.interactions.service import InteractionService

__all__ = ["API", "ApiContext"]


@dataclass(slots=True, kw_only=True)
class ApiContext:
    service: InteractionService
    sessions: Sessions
    directory: Directory
    cookie_name: str
    default_queues: Sequence[str]
    default_capacity: Mapping[str, int]
    clock_ms: Callable[[], int]

    def register(self, user: User) -> None:
        """Make a logged-in user known to the center, with their queues and capacity."""
        self.service.center.add_agent(
            user.username,
            user_id=user.id,
            nickname=" ".join(p for p in (user.first_name, user.last_name) if p) or user.username,
            queues=user.queues if user.queues is not None else self.default_queues,
            capacity={**self.default_capacity, **(user.capacity or {})},
        )


API = web.AppKey("api", ApiContext)
