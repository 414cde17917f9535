"""`gateway serve --demo` prints a demo agent and a partner token that work."""

from __future__ import annotations

from pathlib import Path

from gateway.agents.demo import DEMO_AGENT, DEMO_PASSWORD, prepare_demo
from gateway.agents.users import Directory
from gateway.config import load_config


def test_demo_adds_the_agent_once_and_a_fresh_partner_token_each_start(tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"store": {"data_dir": str(tmp_path)}})
    first = prepare_demo(config)
    second = prepare_demo(config)
    directory = Directory.load(tmp_path / "users.json")
    assert [u.username for u in directory.users] == [DEMO_AGENT]
    assert directory.authenticate(first.agent, DEMO_PASSWORD) is not None
    assert second.password == DEMO_PASSWORD
    assert directory.partner_for_token(second.partner_token) is not None
    assert directory.partner_for_token(first.partner_token) is None  # replaced


def test_demo_does_not_claim_a_password_it_did_not_set(tmp_path: Path) -> None:
    directory = Directory()
    directory.add_user(DEMO_AGENT, "something-else")
    directory.save(tmp_path / "users.json")
    config = load_config(env={}, overrides={"store": {"data_dir": str(tmp_path)}})
    assert prepare_demo(config).password is None
