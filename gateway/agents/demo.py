"""``gateway serve --demo``: a demo agent and a partner token, so a newcomer can try every flow
at once.  Only for trying things out: the password is printed and well known.

The partner token is kept in ``DATA_DIR/demo-partner-token`` (mode 0600) and stays the same
from one start to the next, so a token a newcomer copied into a shell keeps working after a
restart.  The users file keeps only its hash, as for every partner; if the two disagree (the
file deleted, the partner removed or replaced), a new token is made.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.agents.users import Directory, UsersFileError, users_path
from gateway.config import Config

__all__ = ["DEMO_AGENT", "DEMO_PASSWORD", "DEMO_TOKEN_FILE", "Demo", "prepare_demo"]

DEMO_AGENT = "agent1"
DEMO_PASSWORD = "agent1"
DEMO_PARTNER = "demo"
DEMO_TOKEN_FILE = "demo-partner-token"


@dataclass(frozen=True)
class Demo:
    agent: str
    password: str | None  # None: the agent existed with another password
    partner_token: str
    token_file: Path


def prepare_demo(config: Config) -> Demo:
    """Add the demo agent if missing, and the demo partner with its kept token; save both."""
    path = users_path(config)
    directory = Directory.load(path)
    if directory.get(DEMO_AGENT) is None:
        directory.add_user(DEMO_AGENT, DEMO_PASSWORD, first_name="Demo", last_name="Agent")
        password: str | None = DEMO_PASSWORD
    else:
        known = directory.authenticate(DEMO_AGENT, DEMO_PASSWORD) is not None
        password = DEMO_PASSWORD if known else None
    token_file = Path(config.store.data_dir) / DEMO_TOKEN_FILE
    token = _read_token(token_file)
    partner = directory.partner_for_token(token) if token else None
    if token is None or partner is None or partner.name != DEMO_PARTNER:
        directory.remove_partner(DEMO_PARTNER)
        token = directory.add_partner(DEMO_PARTNER)
        _write_token(token_file, token)
    directory.save(path)
    return Demo(DEMO_AGENT, password, token, token_file)


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsersFileError(f"cannot read the demo partner token {path}: {exc}") from None


def _write_token(path: Path, token: str) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a new file is made 0600 whatever the old one was
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(token + "\n")
    except OSError as exc:
        raise UsersFileError(f"cannot write the demo partner token {path}: {exc}") from None
