"""The users file and `gateway users` / `gateway partners`: real files, real argon2."""

from __future__ import annotations

import getpass
import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from argon2 import PasswordHasher, extract_parameters
from structlog.testing import capture_logs

from gateway import cli
from gateway.agents import users
from gateway.agents.users import (
    Directory,
    ReloadingDirectory,
    User,
    UsersFileError,
    effective_capacity,
    effective_queues,
    hash_password,
    users_path,
)
from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
CHEAP = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
PASSWORD = "correct horse battery staple"


def make_directory() -> Directory:
    directory = Directory()
    directory.add_user(
        "agent1",
        PASSWORD,
        first_name="Ada",
        last_name="Agent",
        queues=["SimpleEmailInQueue"],
        capacity={"email": 2},
        hasher=CHEAP,
    )
    directory.add_user("agent2@example.com", "other password", hasher=CHEAP)
    return directory


# --- the library -------------------------------------------------------------------------


def test_add_save_load_round_trip(tmp_path: Path) -> None:
    directory = make_directory()
    token = directory.add_partner("crm")
    path = tmp_path / "users.json"
    directory.save(path)
    loaded = Directory.load(path)
    assert loaded.users == directory.users
    assert loaded.partners == directory.partners
    agent = loaded.get("agent1")
    assert agent is not None
    assert (agent.first_name, agent.last_name) == ("Ada", "Agent")
    assert agent.queues == ["SimpleEmailInQueue"] and agent.capacity == {"email": 2}
    assert agent.roles == ["ROLE_AGENT"]
    assert len(agent.id) == 16 and agent.id == agent.id.upper()
    int(agent.id, 16)
    assert agent.id != loaded.get("agent2@example.com").id  # type: ignore[union-attr]
    assert loaded.authenticate("agent1", PASSWORD) == agent
    assert loaded.partner_for_token(token) == loaded.partners[0]


def test_missing_file_is_an_empty_directory(tmp_path: Path) -> None:
    directory = Directory.load(tmp_path / "absent.json")
    assert directory.users == [] and directory.partners == []


def test_authenticate_right_wrong_and_unknown() -> None:
    directory = make_directory()
    assert directory.authenticate("agent1", PASSWORD) is directory.get("agent1")
    assert directory.authenticate("agent1", PASSWORD + " ") is None
    assert directory.authenticate("agent1", "") is None
    assert directory.authenticate("agent2@example.com", PASSWORD) is None
    assert directory.authenticate("nobody", PASSWORD) is None


def test_unknown_username_still_spends_a_verify_with_the_users_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    real_verify = users._verify

    def spy(password_hash: str, password: str) -> bool:
        calls.append(password_hash)
        return real_verify(password_hash, password)

    monkeypatch.setattr(users, "_verify", spy)
    directory = make_directory()
    assert directory.authenticate("nobody", PASSWORD) is None
    assert len(calls) == 1
    known_hashes = {user.password_hash for user in directory.users}
    assert calls[0] not in known_hashes
    params = extract_parameters(calls[0])
    assert (params.time_cost, params.memory_cost, params.parallelism) == (1, 8192, 1)


def test_default_hasher_uses_the_library_defaults() -> None:
    directory = Directory()
    user = directory.add_user("agent1", PASSWORD)
    defaults = PasswordHasher()
    params = extract_parameters(user.password_hash)
    assert user.password_hash.startswith("$argon2id$")
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        defaults.time_cost,
        defaults.memory_cost,
        defaults.parallelism,
    )
    assert directory.authenticate("agent1", PASSWORD) == user
    assert directory.authenticate("agent1", "wrong") is None


def test_hashes_are_salted() -> None:
    assert hash_password(PASSWORD, CHEAP) != hash_password(PASSWORD, CHEAP)


def test_file_holds_no_plaintext_password_or_token(tmp_path: Path) -> None:
    directory = make_directory()
    token = directory.add_partner("crm")
    path = tmp_path / "users.json"
    directory.save(path)
    data = path.read_bytes()
    assert PASSWORD.encode() not in data
    assert b"other password" not in data
    assert token.encode() not in data
    assert data.count(b"$argon2id$") == 2
    assert hashlib.sha256(token.encode()).hexdigest().encode() in data


def test_file_is_private_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "users.json"
    make_directory().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    Directory().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Directory.load(path).users == []
    assert os.listdir(path.parent) == ["users.json"]  # no temporary file left behind


def test_duplicate_username_is_refused() -> None:
    directory = make_directory()
    before = directory.get("agent1")
    with pytest.raises(UsersFileError, match="'agent1' already exists"):
        directory.add_user("agent1", "another", hasher=CHEAP)
    assert directory.get("agent1") == before
    assert len(directory.users) == 2


@pytest.mark.parametrize(
    "username",
    ["", "a b", "x" * 65, "agént", "a/b", "agent\n", "../etc"],
    ids=["empty", "space", "too-long", "non-ascii", "slash", "newline", "dots-slash"],
)
def test_invalid_username_is_refused(username: str) -> None:
    directory = Directory()
    with pytest.raises(UsersFileError, match="bad username"):
        directory.add_user(username, PASSWORD, hasher=CHEAP)
    assert directory.users == []


def test_valid_usernames_edges() -> None:
    directory = Directory()
    for username in ["x" * 64, "a.b_c-d@e", "A1"]:
        assert directory.add_user(username, PASSWORD, hasher=CHEAP).username == username


def test_empty_password_and_negative_capacity_are_refused() -> None:
    directory = Directory()
    with pytest.raises(UsersFileError, match="password is empty"):
        directory.add_user("agent1", "", hasher=CHEAP)
    with pytest.raises(UsersFileError, match="bad capacity"):
        directory.add_user("agent1", PASSWORD, capacity={"chat": -1}, hasher=CHEAP)
    assert directory.users == []


def test_remove_user() -> None:
    directory = make_directory()
    assert directory.remove_user("agent1") is True
    assert directory.remove_user("agent1") is False
    assert directory.get("agent1") is None
    assert directory.authenticate("agent1", PASSWORD) is None
    assert [user.username for user in directory.users] == ["agent2@example.com"]


def test_partner_tokens() -> None:
    directory = Directory()
    crm = directory.add_partner("crm")
    chat = directory.add_partner("chat-frontend")
    assert crm != chat and len(crm) >= 43
    assert directory.partner_for_token(crm) == directory.partners[0]
    assert directory.partner_for_token(chat) == directory.partners[1]
    assert directory.partner_for_token(crm[:-1]) is None
    assert directory.partner_for_token("") is None
    assert directory.partners[0].token_sha256 == hashlib.sha256(crm.encode()).hexdigest()
    assert crm not in repr(directory.partners) + msgspec.json.encode(directory.partners).decode()
    with pytest.raises(UsersFileError, match="'crm' already exists"):
        directory.add_partner("crm")
    with pytest.raises(UsersFileError, match="bad partner name"):
        directory.add_partner("no spaces")
    assert directory.remove_partner("crm") is True
    assert directory.partner_for_token(crm) is None
    assert directory.partner_for_token(chat) is not None


def test_repr_hides_the_hash() -> None:
    user = make_directory().get("agent1")
    assert user is not None
    assert user.password_hash not in repr(user)
    assert "agent1" in repr(user) and "<hidden>" in repr(user)


def good_user(**changes: object) -> dict[str, object]:
    user = msgspec.to_builtins(make_directory().get("agent1"))
    assert isinstance(user, dict)
    return {**user, **changes}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"users": [', "is not valid JSON"),
        (b"", "is not valid JSON"),
        (b"[]", "Expected `object`, got `array`"),
        (msgspec.json.encode({"users": [good_user(id=None)]}), "users[0].id"),
        (msgspec.json.encode({"users": [good_user(password_hash="hunter2")]}), "password_hash"),
        (msgspec.json.encode({"users": [good_user(username="a b")]}), "users[0].username"),
        (msgspec.json.encode({"users": [good_user(capacity={"chat": -1})]}), "capacity"),
        (msgspec.json.encode({"users": [good_user(), good_user()]}), "appears twice"),
        (msgspec.json.encode({"users": [good_user(pasword="x")]}), "unknown field `pasword`"),
        (msgspec.json.encode({"partners": [{"name": "crm", "token_sha256": "x"}]}), "token"),
    ],
    ids=[
        "truncated",
        "empty",
        "array",
        "null-id",
        "plaintext-password",
        "bad-username",
        "negative-capacity",
        "duplicate-user",
        "unknown-field",
        "bad-token-hash",
    ],
)
def test_bad_users_file_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "users.json"
    path.write_bytes(content)
    with pytest.raises(UsersFileError) as caught:
        Directory.load(path)
    message = str(caught.value)
    assert str(path) in message and problem in message
    assert "\n" not in message


def test_unreadable_users_file(tmp_path: Path) -> None:
    with pytest.raises(UsersFileError, match=f"cannot read users file {tmp_path}"):
        Directory.load(tmp_path)  # a directory, not a file


def test_users_path_and_effective_values(tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"store": {"data_dir": str(tmp_path)}})
    assert users_path(config) == tmp_path / "users.json"
    absolute = load_config(env={}, overrides={"agents": {"users_file": "/etc/gw/users.json"}})
    assert users_path(absolute) == Path("/etc/gw/users.json")
    directory = make_directory()
    agent1, agent2 = directory.get("agent1"), directory.get("agent2@example.com")
    assert isinstance(agent1, User) and isinstance(agent2, User)
    assert effective_queues(agent1, config.agents) == ["SimpleEmailInQueue"]
    assert effective_queues(agent2, config.agents) == config.agents.default_queues
    assert effective_capacity(agent1, config.agents) == {"email": 2, "chat": 3}
    assert effective_capacity(agent2, config.agents) == {"email": 1, "chat": 3}


# --- the running gateway's view: the file read again when it changes ----------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def add_to_file(path: Path, username: str) -> None:
    """What `gateway users add` does while the gateway runs."""
    directory = Directory.load(path)
    directory.add_user(username, PASSWORD, hasher=CHEAP)
    directory.save(path)


def test_an_agent_added_to_the_file_is_known_at_their_first_login(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    make_directory().save(path)
    clock = Clock()
    live = ReloadingDirectory(path, clock=clock)
    add_to_file(path, "newcomer")
    # no time has passed: the miss itself makes it look at the file
    assert live.authenticate("newcomer", PASSWORD) is not None
    assert live.get("newcomer") is not None
    assert live.authenticate("agent1", PASSWORD) is not None  # the others are still there


def test_a_removal_takes_effect_within_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    make_directory().save(path)
    clock = Clock()
    live = ReloadingDirectory(path, clock=clock, min_interval_s=1.0)
    changed = Directory.load(path)
    changed.remove_user("agent1")
    changed.save(path)
    clock.now += 0.5
    assert live.get("agent1") is not None  # not looked at again yet
    clock.now += 0.5
    assert live.get("agent1") is None
    assert live.authenticate("agent1", PASSWORD) is None


def test_a_partner_added_or_removed_while_running(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    directory = make_directory()
    old = directory.add_partner("crm")
    directory.save(path)
    clock = Clock()
    live = ReloadingDirectory(path, clock=clock)
    directory.remove_partner("crm")
    new = directory.add_partner("crm")
    directory.save(path)
    assert live.partner_for_token(new) is not None
    assert live.partner_for_token(old) is None


def test_a_broken_file_keeps_the_last_good_directory_and_is_logged_once(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    make_directory().save(path)
    clock = Clock()
    live = ReloadingDirectory(path, clock=clock)
    path.write_text('{"users": [')
    with capture_logs() as logs:
        assert live.get("nobody") is None
        assert live.get("nobody") is None
        clock.now += 5
        assert live.authenticate("agent1", PASSWORD) is not None
    assert [e["event"] for e in logs] == ["users_file_not_reloaded"]
    assert "not valid JSON" in logs[0]["error"]
    fixed = make_directory()
    fixed.add_user("fixed", PASSWORD, hasher=CHEAP)
    fixed.save(path)
    with capture_logs() as logs:
        assert live.get("fixed") is not None
    assert logs == [
        {"event": "users_file_reloaded", "agents": 3, "partners": 0, "log_level": "info"}
    ]


# --- the command line --------------------------------------------------------------------


def gateway(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        input=stdin,
        text=True,
        capture_output=True,
        env={**env, "GATEWAY_STORE__DATA_DIR": str(data_dir)},
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gateway: "), result.stderr
    assert text in lines[0]


def test_cli_users_add_list_remove(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    added = gateway(
        tmp_path,
        *("users", "add", "agent1", "--first-name", "Ada", "--queue", "SimpleChatInQueue"),
        *("--capacity", "chat=5", "--password-stdin"),
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    agent = Directory.load(path).get("agent1")
    assert agent is not None
    assert added.stdout == f"added agent agent1 (id {agent.id}) to {path}\n"
    assert Directory.load(path).authenticate("agent1", PASSWORD) == agent  # newline stripped
    assert agent.first_name == "Ada" and agent.queues == ["SimpleChatInQueue"]
    assert agent.capacity == {"chat": 5}
    assert PASSWORD not in added.stdout + added.stderr

    assert (
        gateway(tmp_path, "users", "add", "agent2", "--password-stdin", stdin="pw").returncode == 0
    )
    listed = gateway(tmp_path, "users", "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split() == [
        "agent1",
        f"id={agent.id}",
        "queues=SimpleChatInQueue",
        "capacity=email:1,chat:5",
    ]
    assert lines[1].startswith("agent2 ") and "(default)" in lines[1]
    assert "$argon2" not in listed.stdout

    removed = gateway(tmp_path, "users", "remove", "agent1")
    assert removed.returncode == 0 and "removed agent agent1" in removed.stdout
    assert [user.username for user in Directory.load(path).users] == ["agent2"]
    assert_one_line_error(gateway(tmp_path, "users", "remove", "agent1"), 1, "no agent")


def test_cli_partners_add_list(tmp_path: Path) -> None:
    added = gateway(tmp_path, "partners", "add", "crm")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert "\n" not in token and "shown only once" in added.stderr
    directory = Directory.load(tmp_path / "users.json")
    assert directory.partner_for_token(token) == directory.partners[0]
    assert token not in (tmp_path / "users.json").read_text()
    assert gateway(tmp_path, "partners", "add", "chat").returncode == 0
    listed = gateway(tmp_path, "partners", "list")
    assert listed.returncode == 0 and listed.stdout.splitlines() == ["crm", "chat"]
    assert_one_line_error(gateway(tmp_path, "partners", "add", "crm"), 2, "already exists")


@pytest.mark.parametrize(
    ("args", "stdin", "text"),
    [
        (("--capacity", "email=x"), "pw\n", "bad --capacity 'email=x'"),
        (("--capacity", "email"), "pw\n", "bad --capacity 'email'"),
        (("--capacity", "fax=1"), "pw\n", "unknown channel"),
        (("--queue", "NoSuchQueue"), "pw\n", "unknown queue 'NoSuchQueue'"),
        ((), "\n", "no password given"),
    ],
    ids=["not-a-number", "no-count", "unknown-channel", "unknown-queue", "empty-password"],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], stdin: str, text: str
) -> None:
    result = gateway(tmp_path, "users", "add", "agent1", *args, "--password-stdin", stdin=stdin)
    assert_one_line_error(result, 2, text)
    assert not (tmp_path / "users.json").exists()


def test_cli_duplicate_user_and_bad_file_exit_2(tmp_path: Path) -> None:
    assert gateway(tmp_path, "users", "add", "a", "--password-stdin", stdin="pw").returncode == 0
    before = (tmp_path / "users.json").read_bytes()
    duplicate = gateway(tmp_path, "users", "add", "a", "--password-stdin", stdin="other")
    assert_one_line_error(duplicate, 2, "'a' already exists")
    assert (tmp_path / "users.json").read_bytes() == before
    (tmp_path / "users.json").write_text("{not json")
    assert_one_line_error(gateway(tmp_path, "users", "list"), 2, "users.json is not valid JSON")


def test_cli_users_help_explains_each_action(tmp_path: Path) -> None:
    result = gateway(tmp_path, "users", "--help")
    assert result.returncode == 0
    for action in ("add", "list", "remove"):
        assert f"    {action} " in result.stdout
    assert "store.data_dir" in result.stdout
    bare = gateway(tmp_path, "users")
    assert bare.returncode == 2 and "ACTION" in bare.stdout


def test_cli_prompts_twice_and_refuses_a_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_STORE__DATA_DIR", str(tmp_path))
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # keep pytest's SIGPIPE
    answers = iter(["first", "second", PASSWORD, PASSWORD])
    monkeypatch.setattr(getpass, "getpass", lambda prompt: next(answers))
    assert cli.main(["users", "add", "agent1"]) == 2
    assert capsys.readouterr().err == "gateway: the passwords do not match\n"
    assert not (tmp_path / "users.json").exists()
    assert cli.main(["users", "add", "agent1"]) == 0
    assert Directory.load(tmp_path / "users.json").authenticate("agent1", PASSWORD) is not None
