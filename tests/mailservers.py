"""Throwaway real mail servers for tests: Dovecot (IMAP, IMAPS, STARTTLS) as a child process,
an aiosmtpd SMTP sink on the running asyncio loop, and an IMAP probe that plays the customer's
mail server side.

Everything listens on 127.0.0.1 only, on free ports, and lives in a temp dir that is removed
afterwards; every process started here is stopped by its PID.  A missing binary is an error
(never a skip): the message says which package to install.

Dovecot notes, measured on Debian 12 / Dovecot 2.3.19:

* IDLE notifications come about 500 ms after a change made by another connection (Dovecot's
  hard-coded ``NOTIFY_DELAY_MSECS``): wait for them with a timeout of a few seconds.
* ``stop()`` sends SIGTERM to the master's whole process group (it is started in a session of
  its own): to the master alone, a mail process kept serving its IDLE client after the master
  had gone, so a restart did not disconnect anybody.  A stop takes 10 ms to 1.1 s.
* Users live in one passwd-file *per user* (``passwd/%u``).  A single shared passwd-file is only
  re-read when Dovecot stats it in a later second than its previous lookup, so a user added right
  after another login was refused; a per-user file that did not exist before is always read
  fresh, so ``add_user`` takes effect at once, with no reload.
* A failed login is answered after up to 0.5 s (Dovecot flushes failures every 500 ms even with
  ``auth_failure_delay = 0``).  The anvil "auth penalty" (up to 15 s per client IP, i.e. for the
  whole test session on 127.0.0.1) is disabled: its socket gets mode 0, so it is not created.
* ``service_count = 0`` on imap-login: with a login process per connection, a stop just after
  the start-up probe found a new imap-login still starting and took 6 s instead of 1.1 s.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import grp
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import aioimaplib
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


def find_exe(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin dirs (not on a normal user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """True when a listener could bind ``port`` (SO_REUSEADDR, as servers do: TIME_WAIT is ok)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


# --- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SelfSignedCert:
    """A self-signed certificate for ``localhost`` / ``127.0.0.1``; it is its own CA."""

    cert_path: Path
    key_path: Path

    @classmethod
    def create(cls, directory: Path) -> SelfSignedCert:
        openssl = find_exe("openssl")
        if openssl is None:
            raise FileNotFoundError("openssl is not installed: apt-get install openssl")
        cert, key = directory / "cert.pem", directory / "key.pem"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "3650", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        key.chmod(0o644)  # Dovecot reads it as root, but a non-root test run must read it too
        return cls(cert_path=cert, key_path=key)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts exactly this certificate (hostname checked)."""
        return ssl.create_default_context(cafile=str(self.cert_path))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


# --- Dovecot --------------------------------------------------------------------------------

_DOVECOT_CONF = """\
# Throwaway Dovecot 2.3 instance (tests/mailservers.py): nothing outside {d} is written.
instance_name = {instance}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = {host}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{ssl_dh}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
auth_failure_delay = 0
# one account for every process: the invoking user, or nobody when run as root
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
mail_uid = {user}
mail_gid = {group}
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/passwd/%u
  default_fields = home={d}/mail/%u
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
  # one long-lived login process: with a new one per connection (the default), a stop right
  # after the start-up probe caught a fresh imap-login starting and took 6 s instead of 1.1 s
  service_count = 0
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""

_USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True, kw_only=True)
class Mailbox:
    """One user on a Dovecot instance, with what a client needs to reach it."""

    user: str
    password: str
    host: str
    imap_port: int
    imaps_port: int
    cert_path: Path


class Dovecot:
    """A real Dovecot on free loopback ports: ``imap_port`` (STARTTLS offered) and
    ``imaps_port``, Maildir storage, users added at runtime with ``add_user``.

    ``stop()`` keeps the data and ports so ``start()`` (or ``restart()``) brings the same
    server back; ``close()`` (also the context manager's exit) stops it and removes its dir.
    ``astop``/``astart``/``arestart`` run the blocking calls in a thread, so an application on
    the test's event loop keeps running meanwhile (and sees its connections drop).
    """

    def __init__(self, *, binary: str = "dovecot", extra_config: str = "") -> None:
        self._binary = binary
        self._extra_config = extra_config  # appended to dovecot.conf (e.g. imap_capability)
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._cert: SelfSignedCert | None = None
        self._imap_port = 0
        self._imaps_port = 0

    @property
    def host(self) -> str:
        return HOST

    @property
    def imap_port(self) -> int:
        return self._imap_port

    @property
    def imaps_port(self) -> int:
        return self._imaps_port

    @property
    def cert(self) -> SelfSignedCert:
        if self._cert is None:
            raise RuntimeError("Dovecot has not been started")
        return self._cert

    @property
    def cert_path(self) -> Path:
        """The server certificate, to be used as the clients' CA file."""
        return self.cert.cert_path

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> Self:
        """Start (the first time: create the dir, cert and config; later: same ports and data)."""
        binary = find_exe(self._binary)
        if binary is None:
            raise FileNotFoundError(
                f"{self._binary!r} not found: apt-get install dovecot-imapd (Dovecot 2.3)"
            )
        if self.pid is not None:
            return self
        first = self._dir is None
        if first:
            self._prepare()
            atexit.register(self.close)
        else:
            self._wait_ports_free()
        d = self._directory()
        with open(d / "master.out", "ab") as out:  # the master's own stdout/stderr
            # -F: stay in the foreground, so we are the master's parent and can reap it
            self._proc = subprocess.Popen(
                [binary, "-F", "-c", str(d / "dovecot.conf")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_greeting()
        except Exception as exc:
            log = self.log()
            if first:
                self.close()
            else:
                self.stop()
            raise RuntimeError(f"Dovecot did not start: {exc}\n{log}") from exc
        return self

    def stop(self) -> None:
        """SIGTERM every Dovecot process (the master's own process group), wait for the master.

        Like a service manager's stop: clients are disconnected (an IDLE one gets ``* BYE``).
        SIGTERM to the master alone left a mail process serving its IDLE client after the
        master had exited, so a "restart" did not disconnect anyone.  Takes 10 ms to 1.1 s.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group Popen(start_new_session) made
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # SIGKILL only when SIGTERM did not work in 10 s
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def restart(self) -> None:
        """Stop, then start again on the same ports with the same users and mail."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove every file (a later ``start()`` makes a new, empty instance)."""
        self.stop()
        atexit.unregister(self.close)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def astart(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def arestart(self) -> None:
        await asyncio.to_thread(self.restart)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def add_user(self, name: str, password: str) -> None:
        """Add a user; it can log in at once, with no reload (one passwd-file per user).

        Replacing an existing user's password also works, but Dovecot re-reads a file it has
        already read at most once a second, so the change may take up to a second.
        """
        if not _USER_NAME.fullmatch(name):
            # auth_username_format = %Ln lowercases and drops "@domain" before the lookup
            raise ValueError(f"user name must be lowercase [a-z0-9._-], not {name!r}")
        if any(c in password for c in ":\r\n\0"):
            raise ValueError("password must not contain ':', CR, LF or NUL (passwd-file format)")
        path = self._directory() / "passwd" / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(f"{name}:{{PLAIN}}{password}::::::\n")
        tmp.chmod(0o644)
        tmp.replace(path)  # atomic: Dovecot never reads a half-written file

    def new_mailbox(self, prefix: str = "u") -> Mailbox:
        """A fresh user with a random name and password."""
        user = f"{prefix}{secrets.token_hex(5)}"
        password = secrets.token_urlsafe(12)
        self.add_user(user, password)
        return Mailbox(
            user=user, password=password, host=HOST, imap_port=self.imap_port,
            imaps_port=self.imaps_port, cert_path=self.cert_path,
        )  # fmt: skip

    def log(self) -> str:
        """Dovecot's log file, then anything the master printed itself."""
        if self._dir is None:
            return ""
        return "".join(
            p.read_text(errors="replace")
            for p in (self._dir / "dovecot.log", self._dir / "master.out")
            if p.exists()
        )

    def _directory(self) -> Path:
        if self._dir is None:
            raise RuntimeError("Dovecot has not been started")
        return self._dir

    def _prepare(self) -> None:
        # base_dir holds unix sockets (108-byte path limit): keep the path short
        d = self._dir = Path(tempfile.mkdtemp(prefix="dv", dir="/tmp"))
        d.chmod(0o755)  # mkdtemp's 0700 would keep the unprivileged processes out
        for sub in ("run", "state", "mail", "passwd"):
            (d / sub).mkdir()
        if os.geteuid() == 0:  # mail must not be owned by root: everything runs as nobody
            account = pwd.getpwnam("nobody")
            os.chown(d / "mail", account.pw_uid, account.pw_gid)
        else:
            account = pwd.getpwuid(os.getuid())
        self._cert = SelfSignedCert.create(d)
        self._imap_port = free_port()
        while (imaps_port := free_port()) == self._imap_port:
            pass
        self._imaps_port = imaps_port
        dh = Path("/usr/share/dovecot/dh.pem")
        (d / "dovecot.conf").write_text(
            _DOVECOT_CONF.format(
                d=d, instance=d.name, host=HOST, cert=self._cert.cert_path,
                key=self._cert.key_path, ssl_dh=f"ssl_dh = <{dh}" if dh.exists() else "",
                user=account.pw_name, group=grp.getgrgid(account.pw_gid).gr_name,
                imap_port=self._imap_port, imaps_port=self._imaps_port,
            ) + self._extra_config + "\n"
        )  # fmt: skip

    def _wait_ports_free(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not (port_is_free(self._imap_port) and port_is_free(self._imaps_port)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"ports {self._imap_port}/{self._imaps_port} still in use")
            time.sleep(0.02)

    def _wait_greeting(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"dovecot exited with code {self._proc.returncode}")
            try:
                with socket.create_connection((HOST, self._imap_port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no IMAP greeting on {HOST}:{self._imap_port}")
            time.sleep(0.01)
        socket.create_connection((HOST, self._imaps_port), timeout=1).close()


# --- IMAP -----------------------------------------------------------------------------------


class ImapError(Exception):
    """An IMAP command the probe sent was refused."""


def _check(response: Any, what: str) -> Any:
    if response.result != "OK":
        raise ImapError(f"{what}: {response.result} {response.lines}")
    return response


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


_UNDER_TLS: weakref.WeakKeyDictionary[aioimaplib.IMAP4, asyncio.BaseTransport] = (
    weakref.WeakKeyDictionary()
)


async def imap_starttls(
    client: aioimaplib.IMAP4, ssl_context: ssl.SSLContext, server_hostname: str | None = None
) -> None:
    """Upgrade a connected, not yet logged-in aioimaplib client with STARTTLS (RFC 3501 6.2.1).

    aioimaplib 2.0.3 has no ``starttls()``: send the command through its protocol, then swap
    the transport for the one ``loop.start_tls`` returns and ask for the capabilities again
    (those learnt before TLS must be discarded).  ``server_hostname`` defaults to the host the
    client connected to.
    """
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise ImapError("the server does not offer STARTTLS")
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    _check(await asyncio.wait_for(protocol.execute(command), client.timeout), "STARTTLS")
    loop = asyncio.get_running_loop()
    plain = protocol.transport
    transport = await loop.start_tls(
        plain,
        protocol,
        ssl_context,
        server_hostname=server_hostname or client.host,
        ssl_handshake_timeout=client.timeout,
    )
    if transport is None:  # typeshed allows it; asyncio returns one unless the loop is closing
        raise ImapError("STARTTLS: the TLS handshake did not complete")
    protocol.transport = transport
    # Closing the TLS transport after the server has hung up (LOGOUT) can leave the socket
    # under it open: close that too when the client is closed.
    _UNDER_TLS[client] = plain
    await asyncio.wait_for(protocol.capability(), client.timeout)


class ImapProbe:
    """A plain IMAP client for tests, acting as "the customer's mail server side".

    ``client`` is the logged-in ``aioimaplib.IMAP4`` for anything not wrapped here (IDLE, ...).
    Commands that need a selected folder SELECT it (``uids``, ``messages``).
    """

    def __init__(self, client: aioimaplib.IMAP4) -> None:
        self.client = client

    @classmethod
    async def connect(
        cls,
        port: int,
        user: str,
        password: str,
        *,
        host: str = HOST,
        ssl_context: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
        command_timeout: float = 10.0,
    ) -> ImapProbe:
        """Log in; ``ssl_context``: implicit TLS (IMAPS); ``starttls``: upgrade the plain port."""
        if ssl_context is not None:
            client = aioimaplib.IMAP4_SSL(
                host, port, timeout=command_timeout, ssl_context=ssl_context
            )
        else:
            client = aioimaplib.IMAP4(host, port, timeout=command_timeout)
        try:
            await client.wait_hello_from_server()
            if starttls is not None:
                await imap_starttls(client, starttls)
            _check(await client.login(user, password), f"LOGIN {user}")
            # LOGIN's OK may not list every capability: MOVE/IDLE are refused without them
            await client.protocol.capability()
        except BaseException:
            _abort(client)
            raise
        return cls(client)

    async def append(self, raw: bytes, folder: str = "INBOX") -> int:
        """APPEND a message; returns its UID (from the UIDPLUS ``APPENDUID`` response code)."""
        response = _check(await self.client.append(raw, mailbox=_quote(folder)), "APPEND")
        for line in response.lines:
            match = re.search(rb"\[APPENDUID \d+ (\d+)\]", bytes(line))
            if match:
                return int(match.group(1))
        raise ImapError(f"APPEND: no APPENDUID in {response.lines}")

    async def create(self, folder: str) -> None:
        """CREATE a folder; one that already exists is fine."""
        response = await self.client.create(_quote(folder))
        if response.result != "OK" and b"ALREADYEXISTS" not in b" ".join(response.lines):
            raise ImapError(f"CREATE {folder}: {response.result} {response.lines}")

    async def uids(self, folder: str = "INBOX") -> list[int]:
        await self._select(folder)
        response = _check(await self.client.uid_search("ALL", charset=None), "UID SEARCH")
        # aioimaplib strips "SEARCH": lines are [b'1 2 3', b'Search completed (...)']
        lines = [bytes(line) for line in response.lines[:-1]]
        found = [line for line in lines if re.fullmatch(rb"[\d ]*", line)]
        return sorted(int(n) for line in found for n in line.split())

    async def messages(self, folder: str = "INBOX") -> list[bytes]:
        """Every message's raw bytes (``BODY.PEEK[]``: flags untouched), in UID order."""
        await self._select(folder)
        response = _check(await self.client.uid("fetch", "1:*", "(BODY.PEEK[])"), "UID FETCH")
        return [bytes(line) for line in response.lines if isinstance(line, bytearray)]

    async def count(self, folder: str = "INBOX") -> int:
        response = _check(await self.client.status(_quote(folder), "(MESSAGES)"), "STATUS")
        match = re.search(rb"MESSAGES (\d+)", b" ".join(bytes(line) for line in response.lines))
        if match is None:
            raise ImapError(f"STATUS {folder}: no MESSAGES in {response.lines}")
        return int(match.group(1))

    async def wait_count(
        self, folder: str, n: int, within: float = 5.0, interval: float = 0.02
    ) -> int:
        """Poll STATUS until ``folder`` holds exactly ``n`` messages; TimeoutError otherwise."""
        deadline = asyncio.get_running_loop().time() + within
        while (count := await self.count(folder)) != n:
            if asyncio.get_running_loop().time() >= deadline:
                raise TimeoutError(f"{folder} holds {count} messages, not {n}, after {within} s")
            await asyncio.sleep(interval)
        return count

    async def close(self) -> None:
        """LOGOUT if the connection still works, and close it in any case."""
        transport = self.client.protocol.transport
        if transport is not None and not transport.is_closing():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.logout(), 2)
        _abort(self.client)

    async def _select(self, folder: str) -> None:
        _check(await self.client.select(_quote(folder)), f"SELECT {folder}")


def _abort(client: aioimaplib.IMAP4) -> None:
    transport = client.protocol.transport
    if transport is not None and not transport.is_closing():
        transport.close()
    plain = _UNDER_TLS.pop(client, None)
    if plain is not None and not plain.is_closing():
        plain.close()


# --- SMTP -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReceivedMessage:
    """A message the sink accepted (250 after DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    tls: bool  # the session was encrypted (STARTTLS or implicit TLS)
    auth_mechanism: str | None  # "PLAIN", "LOGIN", "XOAUTH2" or None
    auth_login: str | None


@dataclass(frozen=True)
class _Auth:
    mechanism: str
    login: str


@dataclass
class _Failure:
    code: int
    text: str
    remaining: int | None
    on: Literal["RCPT", "DATA"]


class _SinkProtocol(SMTP):
    """aiosmtpd's SMTP, tracked by the sink so ``stop()`` can drop open connections."""

    def __init__(self, sink: SmtpSink, **kwargs: Any) -> None:
        self._sink_connections = sink._connections
        super().__init__(**kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sink_connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._sink_connections.discard(self)
        super().connection_lost(error)


class SmtpSink:
    """An SMTP server on the running asyncio loop that keeps what it receives.

    * ``username``/``password``: AUTH PLAIN and LOGIN check them (535 otherwise);
      ``require_auth``: MAIL FROM before AUTH gets 530.
    * ``oauth_token``: AUTH XOAUTH2 is offered and accepts exactly this bearer token.
    * ``tls_cert``/``tls_key``: STARTTLS is offered; with ``implicit_tls`` TLS starts at the
      first byte instead (like port 465) and STARTTLS is not offered.
    * AUTH is offered before TLS too unless ``auth_require_tls``.
    * ``fail_with(code, text, times)``: the next ``times`` DATA commands (or RCPT, with
      ``on="RCPT"``) are answered ``code text``; ``times=None`` until ``clear_failures()``.
      A refused message is not recorded; ``rejected`` counts refusals.
    * ``stop()`` closes the listener and every open connection; ``start()`` again reuses the
      same port.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        hostname: str = "sink.test",
        username: str | None = None,
        password: str | None = None,
        require_auth: bool = False,
        oauth_token: str | None = None,
        tls_cert: Path | str | None = None,
        tls_key: Path | str | None = None,
        implicit_tls: bool = False,
        auth_require_tls: bool = False,
    ) -> None:
        if require_auth and username is None and oauth_token is None:
            raise ValueError("require_auth needs username/password or oauth_token")
        if (tls_cert is None) != (tls_key is None) or (implicit_tls and tls_cert is None):
            raise ValueError("TLS needs both tls_cert and tls_key")
        self.port = port
        self.hostname = hostname
        self.username = username
        self.password = password
        self.require_auth = require_auth
        self.oauth_token = oauth_token
        self.implicit_tls = implicit_tls
        self.auth_require_tls = auth_require_tls
        self._tls: ssl.SSLContext | None = None
        if tls_cert is not None and tls_key is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(tls_cert, tls_key)
        self.messages: list[ReceivedMessage] = []
        self.rejected = 0
        self._failure: _Failure | None = None
        self._server: asyncio.Server | None = None
        self._connections: weakref.WeakSet[_SinkProtocol] = weakref.WeakSet()
        self._arrived = asyncio.Condition()

    @property
    def host(self) -> str:
        return HOST

    async def start(self) -> Self:
        if self._server is not None:
            return self
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, HOST, self.port, ssl=self._tls if self.implicit_tls else None
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.close()
        await server.wait_closed()
        for _ in range(3):  # let the cancelled per-connection tasks finish
            await asyncio.sleep(0)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_for(self, n: int, within: float = 5.0) -> list[ReceivedMessage]:
        """Return the messages once at least ``n`` have arrived; TimeoutError otherwise."""
        async with self._arrived:
            try:
                await asyncio.wait_for(
                    self._arrived.wait_for(lambda: len(self.messages) >= n), within
                )
            except TimeoutError:
                got = len(self.messages)
                raise TimeoutError(f"{got} messages arrived, not {n}, in {within} s") from None
        return list(self.messages)

    def fail_with(
        self,
        code: int,
        text: str,
        times: int | None = None,
        *,
        on: Literal["RCPT", "DATA"] = "DATA",
    ) -> None:
        if not 400 <= code <= 599:
            raise ValueError(f"a failure is a 4xx or 5xx code, not {code}")
        self._failure = _Failure(code=code, text=text, remaining=times, on=on)

    def clear_failures(self) -> None:
        self._failure = None

    def _protocol(self) -> _SinkProtocol:
        return _SinkProtocol(
            self,
            handler=_SinkHandler(self),
            hostname=self.hostname,
            tls_context=None if self.implicit_tls else self._tls,
            authenticator=self._authenticate,
            auth_require_tls=self.auth_require_tls,
            auth_exclude_mechanism=[] if self.oauth_token else ["XOAUTH2"],
            loop=asyncio.get_running_loop(),
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        expected = (self.username or "").encode(), (self.password or "").encode()
        ok = (
            isinstance(data, LoginPassword)
            and self.username is not None
            and (data.login, data.password) == expected
        )
        login = data.login.decode(errors="replace") if isinstance(data, LoginPassword) else "?"
        # handled=False: aiosmtpd sends 235/535 itself (True would leave the client hanging)
        return AuthResult(success=ok, handled=False, auth_data=_Auth(mechanism, login))

    def _take_failure(self, stage: str) -> str | None:
        failure = self._failure
        if failure is None or failure.on != stage:
            return None
        if failure.remaining is not None:
            failure.remaining -= 1
            if failure.remaining <= 0:
                self._failure = None
        self.rejected += 1
        return f"{failure.code} {failure.text}"

    async def _received(self, message: ReceivedMessage) -> None:
        async with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.sink.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if failure := self.sink._take_failure("RCPT"):
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if failure := self.sink._take_failure("DATA"):
            return failure
        auth = session.auth_data if isinstance(session.auth_data, _Auth) else None
        transport = server.transport
        content = envelope.original_content or b""
        await self.sink._received(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=content,
                tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
                auth_mechanism=auth.mechanism if auth else None,
                auth_login=auth.login if auth else None,
            )
        )
        return "250 2.0.0 OK: queued"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """SASL XOAUTH2: ``base64("user=" U "\\x01auth=Bearer " T "\\x01\\x01")``; on failure
        a base64 JSON challenge, the client's empty line, then 535 (Google's protocol)."""
        if len(args) > 1:
            blob = args[1].encode()
        else:
            answer = await server.challenge_auth("")
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)  # aiosmtpd already replied 501
            blob = base64.b64encode(answer)
        try:
            fields = dict(
                part.split("=", 1)
                for part in base64.b64decode(blob, validate=True).decode().split("\x01")
                if "=" in part
            )
        except ValueError:
            await server.push("501 5.5.2 Can't decode XOAUTH2 response")
            return AuthResult(success=False, handled=True)
        user, bearer = fields.get("user", ""), fields.get("auth", "")
        if self.sink.oauth_token is not None and bearer == f"Bearer {self.sink.oauth_token}":
            return AuthResult(success=True, auth_data=_Auth("XOAUTH2", user))
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "https://mail.test/"})
        if not isinstance(await server.challenge_auth(error), bytes):
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)
