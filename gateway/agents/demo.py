"""``gateway serve --demo``: a demo agent and a fresh partner token, so a newcomer can try
every flow at once.  Only for trying things out: the password is printed and well known."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.agents.users import Directory, users_path
from gateway.config import Config

__all__ = ["DEMO_AGENT", "DEMO_PASSWORD", "Demo", "prepare_demo"]

DEMO_AGENT = "agent1"
DEMO_PASSWORD = "agent1"
DEMO_PARTNER = "demo"


@dataclass(frozen=True)
class Demo:
    agent: str
    password: str | None  # None: the agent existed with another password
    partner_token: str


def prepare_demo(config: Config) -> Demo:
    """Add the demo agent if missing and replace the demo partner's token; save the file."""
    path = users_path(config)
    directory = Directory.load(path)
    if directory.get(DEMO_AGENT) is None:
        directory.add_user(DEMO_AGENT, DEMO_PASSWORD, first_name="Demo", last_name="Agent")
        password: str | None = DEMO_PASSWORD
    else:
        known = directory.authenticate(DEMO_AGENT, DEMO_PASSWORD) is not None
        password = DEMO_PASSWORD if known else None
    directory.remove_partner(DEMO_PARTNER)
    token = directory.add_partner(DEMO_PARTNER)
    directory.save(path)
    return Demo(DEMO_AGENT, password, token)
