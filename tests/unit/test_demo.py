"""`gateway serve --demo` prints a demo agent, a partner token and commands that work."""

from __future__ import annotations

import shlex
import stat
import sys
from pathlib import Path

import pytest

from gateway.agents.demo import DEMO_AGENT, DEMO_PASSWORD, DEMO_TOKEN_FILE, prepare_demo
from gateway.agents.users import Directory
from gateway.config import load_config
from gateway.server import gateway_command


def test_demo_adds_the_agent_once_and_keeps_the_partner_token_across_starts(
    tmp_path: Path,
) -> None:
    config = load_config(env={}, overrides={"store": {"data_dir": str(tmp_path)}})
    first = prepare_demo(config)
    second = prepare_demo(config)
    directory = Directory.load(tmp_path / "users.json")
    assert [u.username for u in directory.users] == [DEMO_AGENT]
    assert [p.name for p in directory.partners] == ["demo"]
    assert directory.authenticate(first.agent, DEMO_PASSWORD) is not None
    assert second.password == DEMO_PASSWORD
    assert second.partner_token == first.partner_token  # what a newcomer copied still works
    assert directory.partner_for_token(second.partner_token) is not None
    token_file = tmp_path / DEMO_TOKEN_FILE
    assert second.token_file == token_file
    assert token_file.read_text() == first.partner_token + "\n"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert first.partner_token not in (tmp_path / "users.json").read_text()  # only its hash


@pytest.mark.parametrize("change", ["token file deleted", "partner removed", "token edited"])
def test_a_token_file_that_no_longer_matches_gets_a_new_token(tmp_path: Path, change: str) -> None:
    config = load_config(env={}, overrides={"store": {"data_dir": str(tmp_path)}})
    old = prepare_demo(config).partner_token
    token_file = tmp_path / DEMO_TOKEN_FILE
    if change == "token file deleted":
        token_file.unlink()
    elif change == "partner removed":
        directory = Directory.load(tmp_path / "users.json")
        directory.remove_partner("demo")
        directory.save(tmp_path / "users.json")
    else:
        token_file.write_text("not-the-token\n")
    new = prepare_demo(config).partner_token
    directory = Directory.load(tmp_path / "users.json")
    assert new != old and directory.partner_for_token(new) is not None
    assert directory.partner_for_token(old) is None
    assert token_file.read_text() == new + "\n"


def test_the_printed_gateway_command_is_the_one_that_was_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "my venv" / "bin" / "gateway"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "argv", [str(script), "serve", "--demo"])
    assert gateway_command() == f"'{script}'"
    monkeypatch.setattr(sys, "argv", ["/src/gateway/__main__.py", "serve", "--demo"])
    assert gateway_command() == f"{shlex.quote(sys.executable)} -m gateway"


def test_demo_does_not_claim_a_password_it_did_not_set(tmp_path: Path) -> None:
    directory = Directory()
    directory.add_user(DEMO_AGENT, "something-else")
    directory.save(tmp_path / "users.json")
    config = load_config(env={}, overrides={"store": {"data_dir": str(tmp_path)}})
    assert prepare_demo(config).password is None
