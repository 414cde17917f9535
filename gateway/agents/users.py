"""The users file: agents with salted argon2id password hashes, and partner tokens.

The file is JSON, written by ``gateway users`` and ``gateway partners``::

    {"users": [{"username": "agent1", "id": "009B51CDF65418CC",
                "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$...",
                "first_name": "Ada", "last_name": "Agent",
                "queues": ["SimpleEmailInQueue"], "capacity": {"email": 1, "chat": 3},
                "roles": ["ROLE_AGENT"]}],
     "partners": [{"name": "crm", "token_sha256": "<64 hex digits>"}]}

Rules:

- A password is kept only as an argon2id hash (argon2-cffi).  Each hash string carries its own
  salt and parameters, so hashes made with different parameters all verify.
- A partner token is 256 random bits, kept only as its SHA-256 (a slow hash adds nothing to a
  secret nobody chose); it is shown once, when it is made.
- ``queues`` null means the configuration's ``agents.default_queues``; ``capacity`` null means
  ``agents.default_capacity``, and a given capacity overrides the default channel by channel.
- Usernames and partner names are 1-64 ASCII letters, digits, ``.``, ``_``, ``-``, ``@``.
- The file is replaced atomically and is readable by its owner only (0600).
- Nothing here logs or prints a password, a hash or a token; the records' ``repr`` hides them.

Verifying a password costs tens of milliseconds of CPU with the library's default parameters:
an asyncio caller runs :meth:`Directory.authenticate` in an executor.

The running gateway reads the file through :class:`ReloadingDirectory`, which reads it again
when it changes: ``gateway users add`` and ``gateway partners add|remove`` take effect
without a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated

import msgspec
import structlog
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.config import AgentsConfig, Config

__all__ = [
    "Directory",
    "Partner",
    "ReloadingDirectory",
    "User",
    "UsersFileError",
    "check_name",
    "effective_capacity",
    "effective_queues",
    "hash_password",
    "users_path",
]

NAME_PATTERN = r"\A[A-Za-z0-9._@-]{1,64}\Z"
_NAME = re.compile(NAME_PATTERN)

Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
UserId = Annotated[str, msgspec.Meta(pattern=r"\A[0-9A-F]{16}\Z")]
Argon2Hash = Annotated[str, msgspec.Meta(pattern=r"\A\$argon2(id|i|d)\$")]
Sha256Hex = Annotated[str, msgspec.Meta(pattern=r"\A[0-9a-f]{64}\Z")]
Count = Annotated[int, msgspec.Meta(ge=0)]

log = structlog.get_logger("gateway.agents.users")

_SECRET_FIELDS = frozenset({"password_hash", "token_sha256"})


class UsersFileError(ValueError):
    """The users file, or a change asked of it, is not valid; the message is one line."""


class _Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}=<hidden>" if name in _SECRET_FIELDS else f"{name}={getattr(self, name)!r}"
            for name in self.__struct_fields__
        )
        return f"{type(self).__name__}({fields})"


class User(_Record, frozen=True):
    """An agent who may log in."""

    username: Name
    id: UserId
    password_hash: Argon2Hash
    first_name: str = ""
    last_name: str = ""
    queues: list[str] | None = None
    capacity: dict[str, Count] | None = None
    roles: list[str] = msgspec.field(default_factory=lambda: ["ROLE_AGENT"])


class Partner(_Record, frozen=True):
    """A system (a CRM, a chat front end) that calls the partner API with a bearer token."""

    name: Name
    token_sha256: Sha256Hex


class _UsersFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    users: list[User] = msgspec.field(default_factory=list)
    partners: list[Partner] = msgspec.field(default_factory=list)


_DECODER = msgspec.json.Decoder(_UsersFile)
_ENCODER = msgspec.json.Encoder()
_DEFAULT_HASHER = PasswordHasher()
_DUMMY_PASSWORD = "not a password: spends the time of a verify for unknown usernames"
_dummy_hashes: dict[str, str] = {}


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    """A salted argon2 hash of ``password`` (library default parameters unless ``hasher``)."""
    return (hasher or _DEFAULT_HASHER).hash(password)


def users_path(config: Config) -> Path:
    """Where the users file is: ``agents.users_file``, relative to ``store.data_dir``."""
    file = Path(config.agents.users_file)
    return file if file.is_absolute() else Path(config.store.data_dir) / file


def effective_queues(user: User, agents: AgentsConfig) -> list[str]:
    """The user's queues, or the configured default when the users file gives none."""
    return list(agents.default_queues if user.queues is None else user.queues)


def effective_capacity(user: User, agents: AgentsConfig) -> dict[str, int]:
    """The configured default capacity, overridden channel by channel by the user's."""
    return {**agents.default_capacity, **(user.capacity or {})}


class Directory:
    """The agents and partners of one users file, in memory."""

    def __init__(self, users: Iterable[User] = (), partners: Iterable[Partner] = ()) -> None:
        self._users: dict[str, User] = {}
        self._ids: set[str] = set()
        self._partners: dict[str, Partner] = {}
        for user in users:
            self._add(user)
        for partner in partners:
            if partner.name in self._partners:
                raise UsersFileError(f"partner {partner.name!r} appears twice")
            self._partners[partner.name] = partner

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Directory:
        """Read a users file; a missing file is an empty directory."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls()
        except OSError as exc:
            raise UsersFileError(f"cannot read users file {path}: {exc.strerror}") from None
        try:
            parsed = _DECODER.decode(data)
        except msgspec.ValidationError as exc:
            raise UsersFileError(f"users file {path}: {_explain(exc)}") from None
        except msgspec.DecodeError as exc:
            raise UsersFileError(f"users file {path} is not valid JSON: {exc}") from None
        try:
            return cls(parsed.users, parsed.partners)
        except UsersFileError as exc:
            raise UsersFileError(f"users file {path}: {exc}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Replace the file at ``path`` atomically (mode 0600), creating its directory."""
        path = Path(path)
        document = _UsersFile(users=self.users, partners=self.partners)
        data = msgspec.json.format(_ENCODER.encode(document), indent=2) + b"\n"
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _write_atomically(path, data)
        except OSError as exc:
            raise UsersFileError(f"cannot write users file {path}: {exc.strerror}") from None

    @property
    def users(self) -> list[User]:
        return list(self._users.values())

    @property
    def partners(self) -> list[Partner]:
        return list(self._partners.values())

    def get(self, username: str) -> User | None:
        return self._users.get(username)

    def add_user(
        self,
        username: str,
        password: str,
        *,
        first_name: str = "",
        last_name: str = "",
        queues: Sequence[str] | None = None,
        capacity: Mapping[str, int] | None = None,
        hasher: PasswordHasher | None = None,
    ) -> User:
        """Add an agent with a new id and a salted hash of ``password``."""
        check_name(username, "username")
        if username in self._users:
            raise UsersFileError(f"an agent named {username!r} already exists")
        if not password:
            raise UsersFileError("the password is empty")
        if queues is not None and not all(queues):
            raise UsersFileError("a queue name is empty")
        if capacity is not None:
            for channel, count in capacity.items():
                if not channel or count < 0:
                    raise UsersFileError(f"bad capacity {channel!r}: {count}")
        user = User(
            username=username,
            id=self._new_id(),
            password_hash=hash_password(password, hasher),
            first_name=first_name,
            last_name=last_name,
            queues=None if queues is None else list(queues),
            capacity=None if capacity is None else dict(capacity),
        )
        self._add(user)
        return user

    def remove_user(self, username: str) -> bool:
        user = self._users.pop(username, None)
        if user is None:
            return False
        self._ids.discard(user.id)
        return True

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if ``password`` is theirs; ``None`` otherwise, in about the same time."""
        user = self._users.get(username)
        if user is None:
            # Verify against a fixed dummy hash anyway: an unknown username costs as much as a
            # wrong password, so response times do not tell which usernames exist.
            _verify(self._dummy_hash(), password)
            return None
        if not _verify(user.password_hash, password):
            return None
        # PasswordHasher.check_needs_rehash may be true here (a hash made with older or cheaper
        # parameters).  We ignore it on purpose: a login only reads the users file, so it never
        # races `gateway users`; re-adding the agent re-hashes with today's parameters.
        return user

    def add_partner(self, name: str) -> str:
        """Add a partner; return its new token, which is kept only as a SHA-256."""
        check_name(name, "partner name")
        if name in self._partners:
            raise UsersFileError(f"a partner named {name!r} already exists")
        token = secrets.token_urlsafe(32)
        self._partners[name] = Partner(name=name, token_sha256=_sha256(token))
        return token

    def remove_partner(self, name: str) -> bool:
        return self._partners.pop(name, None) is not None

    def partner_for_token(self, token: str) -> Partner | None:
        """The partner whose token this is; every partner is compared, in constant time each."""
        digest = _sha256(token)
        found = None
        for partner in self._partners.values():
            if hmac.compare_digest(partner.token_sha256, digest) and found is None:
                found = partner
        return found

    def _add(self, user: User) -> None:
        if user.username in self._users:
            raise UsersFileError(f"agent {user.username!r} appears twice")
        if user.id in self._ids:
            raise UsersFileError(f"agent id {user.id} appears twice")
        self._users[user.username] = user
        self._ids.add(user.id)

    def _new_id(self) -> str:
        while True:
            new = secrets.token_hex(8).upper()
            if new not in self._ids:
                return new

    def _dummy_hash(self) -> str:
        """A hash of a fixed password with the parameters of this directory's hashes."""
        sample = next(iter(self._users.values()), None)
        hasher = _DEFAULT_HASHER
        key = ""
        if sample is not None:
            with contextlib.suppress(InvalidHashError):
                hasher = PasswordHasher.from_parameters(extract_parameters(sample.password_hash))
                key = sample.password_hash.rsplit("$", 2)[0]
        if key not in _dummy_hashes:
            _dummy_hashes[key] = hasher.hash(_DUMMY_PASSWORD)
        return _dummy_hashes[key]


class ReloadingDirectory(Directory):
    """The users file as the running gateway sees it: read again when it changes on disk.

    Before a lookup the file's inode, size and modification time are compared with what was
    read, at most once per ``min_interval_s``; and at once when a lookup finds nobody, so an
    agent or partner just added is known at their first attempt.  Someone removed may go on
    for up to ``min_interval_s``.  A file that cannot be read or parsed leaves the last good
    directory in place; that is logged once per change of the file.

    :meth:`authenticate` runs in executor threads: a lock keeps to one reload at a time, and a
    reload replaces the tables whole, so a lookup sees the old ones or the new ones.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        min_interval_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._stamp = _stamp(self.path)  # before reading: a change in between is seen later
        loaded = Directory.load(self.path)
        super().__init__(loaded.users, loaded.partners)
        self._checked_at = clock()

    def get(self, username: str) -> User | None:
        self.refresh()
        user = super().get(username)
        if user is None and self.refresh(force=True):
            user = super().get(username)
        return user

    def authenticate(self, username: str, password: str) -> User | None:
        self.refresh()
        if username not in self._users:
            self.refresh(force=True)
        return super().authenticate(username, password)

    def partner_for_token(self, token: str) -> Partner | None:
        self.refresh()
        partner = super().partner_for_token(token)
        if partner is None and self.refresh(force=True):
            partner = super().partner_for_token(token)
        return partner

    def refresh(self, *, force: bool = False) -> bool:
        """Read the file again if it changed (checked at most once per interval unless
        ``force``); whether it was read."""
        now = self._clock()
        if not force and now - self._checked_at < self._min_interval_s:
            return False
        with self._lock:
            self._checked_at = now
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return False
            self._stamp = stamp  # a broken file is read, and logged, once
            try:
                loaded = Directory.load(self.path)
            except UsersFileError as exc:
                log.warning("users_file_not_reloaded", error=str(exc))
                return False
            self._users, self._ids, self._partners = loaded._users, loaded._ids, loaded._partners
        log.info("users_file_reloaded", agents=len(self._users), partners=len(self._partners))
        return True


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or written: inode, size, mtime (ns)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _DEFAULT_HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str, what: str) -> None:
    """Raise :class:`UsersFileError` unless ``name`` is a valid username or partner name."""
    if not _NAME.search(name):
        raise UsersFileError(f"bad {what} {name!r}: use 1-64 letters, digits, '.', '_', '-' or '@'")


def _explain(exc: msgspec.ValidationError) -> str:
    text, _, where = str(exc).partition(" - at `$")
    return f"{where.rstrip('`').lstrip('.')}: {text}" if where else text


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)  # mkstemp makes it 0600 already; say it anyway
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable, where supported
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
