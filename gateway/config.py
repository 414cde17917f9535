"""Configuration: one TOML file, environment overrides, validated once at start.

Precedence, lowest first: built-in defaults, the TOML file (``--config`` or ``GATEWAY_CONFIG``),
environment variables ``GATEWAY_<SECTION>__<KEY>`` (a TOML value: ``30000``, ``true``,
``["a", "b"]``; anything that is not valid TOML is taken as a string), then explicit overrides
(command-line flags, tests).  Unknown keys and bad values are errors that name the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gateway import tomlout

__all__ = ["Config", "ConfigError", "describe", "load_config"]

ENV_PREFIX = "GATEWAY_"

Port = Annotated[int, Meta(ge=0, le=65535)]
Positive = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[int, Meta(ge=0)]


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ServerConfig(_Section, frozen=True):
    host: str = "127.0.0.1"
    port: Port = 8080
    mounts: list[str] = msgspec.field(default_factory=lambda: ["/cometd", "/api/v2/notifications"])
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 256 * 1024
    max_batch: Positive = 100
    shutdown_timeout_s: Annotated[float, Meta(ge=0)] = 5.0
    access_log: bool = False
    fast_http: bool = True
    request_timeout_s: Annotated[float, Meta(gt=0)] = 5.0
    max_connections_per_address: Annotated[int, Meta(ge=0)] = 1024
    gc_freeze_interval_s: Annotated[float, Meta(ge=0)] = 1.0
    gc_full_interval_s: Annotated[float, Meta(ge=0)] = 600.0
    metrics: bool = True


class BayeuxConfig(_Section, frozen=True):
    timeout_ms: NonNegative = 30_000
    interval_ms: NonNegative = 0
    max_interval_ms: Positive = 10_000
    max_client_timeout_ms: NonNegative = 60_000
    connection_types: list[Literal["websocket", "long-polling", "callback-polling"]] = (
        msgspec.field(default_factory=lambda: ["websocket", "long-polling", "callback-polling"])
    )
    trust_client_session: bool = False
    max_sessions_per_browser: Positive = 1
    multi_session_interval_ms: int = 2_000
    deliver_only_on_connect: bool = False
    batch_window_ms: NonNegative = 250
    max_flushes_per_s: NonNegative = 15_000
    max_batch_window_ms: NonNegative = 1_000
    duplicate_connect_status: Annotated[int, Meta(ge=400, le=599)] = 500
    ack_extension: bool = True
    validate_ids: bool = True


class CookieConfig(_Section, frozen=True):
    name: str = "BAYEUX_BROWSER"
    http_only: bool = True
    secure: bool = False
    same_site: Literal["", "Lax", "Strict", "None"] = ""
    domain: str = ""
    max_age_s: NonNegative | None = None


class QueueConfig(_Section, frozen=True):
    max_messages: Positive = 1000
    overflow: Literal["disconnect", "drop_oldest", "drop_newest"] = "disconnect"
    ws_high_water_bytes: Annotated[int, Meta(ge=1024)] = 64 * 1024


class CorsConfig(_Section, frozen=True):
    allow_origins: list[str] = msgspec.field(default_factory=list)
    allow_headers: list[str] = msgspec.field(
        default_factory=lambda: [
            "Content-Type",
            "Authorization",
            "X-Requested-With",
            "X-CSRF-TOKEN",
        ]
    )
    max_age_s: NonNegative = 86_400


class EngineConfig(_Section, frozen=True):
    kind: Literal["memory", "redis"] = "memory"
    redis_url: str = ""
    node_id: str = ""
    key_prefix: str = "bx:"


class AgentsConfig(_Section, frozen=True):
    users_file: str = "users.json"
    session_cookie: str = "JSESSIONID"
    session_idle_timeout_s: Annotated[float, Meta(gt=0)] = 1800.0
    default_capacity: dict[str, NonNegative] = msgspec.field(
        default_factory=lambda: {"email": 1, "chat": 3}
    )
    default_queues: list[str] = msgspec.field(
        default_factory=lambda: ["SimpleEmailInQueue", "SimpleChatInQueue"]
    )
    allow_anonymous_bayeux: bool = False
    demo: bool = False


class PartnersConfig(_Section, frozen=True):
    access_all: list[str] = msgspec.field(default_factory=list)


class QueueDef(_Section, frozen=True):
    name: str
    channel: Literal["email", "chat"]
    in_queues: list[str] = msgspec.field(default_factory=list)
    out_queues: list[str] = msgspec.field(default_factory=list)


class InteractionsConfig(_Section, frozen=True):
    invite_timeout_s: Annotated[float, Meta(gt=0)] = 30.0
    queues: list[QueueDef] = msgspec.field(
        default_factory=lambda: [
            QueueDef(
                name="SimpleEmailInQueue",
                channel="email",
                in_queues=["__STOP__"],
                out_queues=["SimpleEmailOutQueue"],
            ),
            QueueDef(
                name="SimpleChatInQueue", channel="chat", in_queues=["SimpleChatTranscriptQueue"]
            ),
        ]
    )


class StoreConfig(_Section, frozen=True):
    kind: Literal["sqlite"] = "sqlite"
    data_dir: str = "data"


Tls = Literal["tls", "starttls", "none"]
Seconds = Annotated[float, Meta(ge=0)]


class _MailServer(_Section, frozen=True):
    """What an IMAP source and an SMTP sender share: where, how securely, and who we are."""

    host: str = "127.0.0.1"
    tls: Tls = "tls"
    ca_file: str = ""
    verify_tls: bool = True
    username: str = ""
    password: str = ""
    password_env: str = ""
    oauth_token_url: str = ""
    oauth_token_command: str = ""


class MailSource(_MailServer, frozen=True, kw_only=True):
    name: str
    queue: str
    port: Port = 993
    address: str = ""
    input_folder: str = "INBOX"
    processing_folder: str = "Processing"
    output_folder: str = "Done"
    quarantine_folder: str = "Quarantine"
    sent_folder: str = ""
    sender: str = ""
    sync_max_changes: Positive = 1
    sync_max_wait_s: Seconds = 0.0
    acknowledge: bool = False
    acknowledge_text: str = (
        "Thank you for your message. We have received it and will answer as soon as we can."
    )


class MailSender(_MailServer, frozen=True, kw_only=True):
    name: str
    port: Port = 587
    tls: Tls = "starttls"
    from_address: str = ""
    queues: list[str] = msgspec.field(default_factory=list)


class MailConfig(_Section, frozen=True):
    sources: list[MailSource] = msgspec.field(default_factory=list)
    senders: list[MailSender] = msgspec.field(default_factory=list)
    timeout_s: Annotated[float, Meta(gt=0)] = 30.0
    idle_renew_s: Annotated[float, Meta(gt=0, le=1740)] = 1500.0
    poll_interval_s: Annotated[float, Meta(gt=0)] = 30.0
    reconnect_min_s: Annotated[float, Meta(gt=0)] = 1.0
    reconnect_max_s: Annotated[float, Meta(gt=0)] = 300.0
    retry_min_s: Annotated[float, Meta(gt=0)] = 5.0
    retry_max_s: Annotated[float, Meta(gt=0)] = 900.0
    retry_for_s: Annotated[float, Meta(gt=0)] = 172_800.0
    message_id_domain: str = ""
    demo: bool = False
    demo_imap_port: Port = 1143
    demo_smtp_port: Port = 2525


class LogConfig(_Section, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Section, frozen=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    bayeux: BayeuxConfig = msgspec.field(default_factory=BayeuxConfig)
    cookie: CookieConfig = msgspec.field(default_factory=CookieConfig)
    queue: QueueConfig = msgspec.field(default_factory=QueueConfig)
    cors: CorsConfig = msgspec.field(default_factory=CorsConfig)
    engine: EngineConfig = msgspec.field(default_factory=EngineConfig)
    agents: AgentsConfig = msgspec.field(default_factory=AgentsConfig)
    partners: PartnersConfig = msgspec.field(default_factory=PartnersConfig)
    interactions: InteractionsConfig = msgspec.field(default_factory=InteractionsConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    mail: MailConfig = msgspec.field(default_factory=MailConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)


HELP: dict[str, str] = {
    "server.host": "address to listen on",
    "server.port": "TCP port (0 picks a free one)",
    "server.mounts": "URL paths where Bayeux is served (each also with any one suffix)",
    "server.max_body_bytes": "largest HTTP body or websocket message accepted (413 above)",
    "server.max_batch": "most messages accepted in one request (400 above)",
    "server.shutdown_timeout_s": "how long a graceful shutdown waits for requests",
    "server.access_log": "log every HTTP request, on both HTTP paths (method, path without the "
    "query string, status, size, time)",
    "server.fast_http": "serve long-polling POSTs and websockets on the lean HTTP path (false: "
    "all through aiohttp)",
    "server.request_timeout_s": "time a request's head and body may take to arrive, from its "
    "first byte (408 and close after)",
    "server.max_connections_per_address": "open connections allowed per client address (429 "
    "above; 0: no limit)",
    "server.gc_freeze_interval_s": "freeze surviving objects out of Python's garbage "
    "collections this often, so collections never stall the loop (0: CPython's default "
    "behaviour)",
    "server.gc_full_interval_s": "one full garbage collection this often, for cycles among "
    "frozen objects (0: never)",
    "server.metrics": "serve /metrics (Prometheus text format: sessions, held connects, queued "
    "events, publishes, deliveries, overflows, engine round trips; no login, so keep it off "
    "public networks)",
    "bayeux.timeout_ms": "how long a /meta/connect is held (advice.timeout)",
    "bayeux.interval_ms": "advised pause between connects (advice.interval)",
    "bayeux.max_interval_ms": "a session with no connect for interval+this expires",
    "bayeux.max_client_timeout_ms": "the longest a /meta/connect is held: caps a client's own "
    "advice.timeout (bayeux.timeout_ms may not exceed it)",
    "bayeux.connection_types": "transports offered in the handshake reply",
    "bayeux.trust_client_session": "accept a clientId without its BAYEUX_BROWSER cookie",
    "bayeux.max_sessions_per_browser": "held long polls per browser cookie before "
    "multiple-clients advice",
    "bayeux.multi_session_interval_ms": "interval advised to extra polls (<=0: refuse them)",
    "bayeux.deliver_only_on_connect": "send events only in connect replies (no piggy-back)",
    "bayeux.batch_window_ms": "a session gets at most one response/frame of events per window "
    "(the first event after a quiet window goes out at once); 0 sends every event at once",
    "bayeux.max_flushes_per_s": "above this many responses/frames of events per second the "
    "batch window widens, so many busy sessions degrade together; 0 keeps it fixed",
    "bayeux.max_batch_window_ms": "the widest the batch window grows under load",
    "bayeux.duplicate_connect_status": "HTTP status for a connect replaced by a newer one",
    "bayeux.ack_extension": "offer CometD's ack extension",
    "bayeux.validate_ids": "reject message ids that are not alphanumeric",
    "cookie.name": "name of the browser cookie",
    "cookie.http_only": "HttpOnly attribute",
    "cookie.secure": "Secure attribute",
    "cookie.same_site": "SameSite attribute (empty: none sent)",
    "cookie.domain": "Domain attribute (empty: none sent)",
    "cookie.max_age_s": "Max-Age attribute (absent: a session cookie)",
    "queue.max_messages": "most events queued for one session",
    "queue.overflow": "when a queue is full: disconnect | drop_oldest | drop_newest",
    "queue.ws_high_water_bytes": "a websocket whose unsent bytes exceed this gets no more "
    "frames of events until it drains; its events wait in its queue meanwhile",
    "cors.allow_origins": 'origins allowed to call cross-site ("*" for any); same-origin '
    "is always allowed",
    "cors.allow_headers": "request headers allowed in CORS preflights",
    "cors.max_age_s": "how long browsers may cache a preflight",
    "engine.kind": "where sessions live: memory (this process) or redis (shared by every "
    "node of a cluster)",
    "engine.redis_url": "the Redis of engine.kind = redis: redis://[USER:PASSWORD@]HOST:PORT/DB "
    "(rediss:// for TLS)",
    "engine.node_id": "this node's name in the cluster (empty: host, process and start time)",
    "engine.key_prefix": "prefix of every Redis key of the engine (several gateways on one Redis "
    "need different ones)",
    "agents.users_file": "agents and partner tokens (JSON, salted argon2 hashes; written by "
    "`gateway users`); relative to store.data_dir",
    "agents.session_cookie": "name of the REST session cookie (GWS uses JSESSIONID)",
    "agents.session_idle_timeout_s": "a REST session with no request and no live CometD "
    "session for this long ends (as EndContactCenterSession)",
    "agents.default_capacity": "interactions an agent handles at once per channel, unless the "
    "users file says otherwise (pending invitations count)",
    "agents.default_queues": "queues of an agent the users file gives none",
    "agents.allow_anonymous_bayeux": "accept handshakes with no logged-in session (generic "
    "pub/sub outside /v2/me/**)",
    "agents.demo": "create a demo agent and partner token at start and print them",
    "partners.access_all": "names of partners that see and act on every interaction (those "
    "of other partners and from mail too); any other partner only on the ones it created, "
    "and gets 404 for the rest",
    "interactions.invite_timeout_s": "an unanswered invitation is revoked and offered "
    "elsewhere after this",
    "interactions.queues": "routing queues: name, channel (email|chat), in_queues and "
    "out_queues (shown to agents as inQueues/outQueues)",
    "store.kind": "where interactions live: sqlite",
    "store.data_dir": "directory for the SQLite file and the users file",
    "mail.sources": "IMAP mailboxes, each feeding one queue ([[mail.sources]]: name, queue, "
    "host, port (993), tls (tls|starttls|none), ca_file, verify_tls, username, password | "
    "password_env | oauth_token_url | oauth_token_command (XOAUTH2), address (the mailbox's "
    "address; default username), input_folder (INBOX), processing_folder (Processing), "
    "output_folder (Done; empty: delete processed mail), quarantine_folder (Quarantine), "
    "sent_folder (empty: keep no copy of replies), sender (name of the sender for replies), "
    "sync_max_changes (1) and sync_max_wait_s (0): batch intake Engage-style, acknowledge and "
    "acknowledge_text: an automatic receipt to the customer)",
    "mail.senders": "SMTP servers replies leave by ([[mail.senders]]: name, host, port (587), "
    "tls (starttls|tls|none), ca_file, verify_tls, username, password | password_env | "
    "oauth_token_url | oauth_token_command (XOAUTH2), from_address (default: the source's "
    "address), queues (empty: any))",
    "mail.timeout_s": "network timeout of one IMAP or SMTP command",
    "mail.idle_renew_s": "re-issue IMAP IDLE this often (RFC 2177: within 29 minutes)",
    "mail.poll_interval_s": "how often a server without IDLE is searched for new mail",
    "mail.reconnect_min_s": "first pause before reconnecting to an IMAP server (then doubling, "
    "with jitter)",
    "mail.reconnect_max_s": "longest pause between IMAP reconnects",
    "mail.retry_min_s": "first pause before retrying a reply the SMTP server refused for now "
    "(then doubling, with jitter)",
    "mail.retry_max_s": "longest pause between SMTP retries",
    "mail.retry_for_s": "after this long failing, a reply goes back to its agent as failed",
    "mail.message_id_domain": "right-hand side of our Message-IDs (default: the sender "
    "address's domain)",
    "mail.demo": "run an embedded IMAP server and SMTP servers for the demo (gateway serve --demo)",
    "mail.demo_imap_port": "port of the demo IMAP server",
    "mail.demo_smtp_port": "port of the demo inbound SMTP server (mail to the demo mailbox)",
    "log.level": "debug | info | warning | error",
    "log.format": "json | console | auto (console on a terminal)",
}


class ConfigError(ValueError):
    """A configuration problem, with a one-line message that names the key."""


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
    return base


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        data.setdefault(section, {})[key] = _env_value(raw)
    return data


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration; raise :class:`ConfigError` on any bad key or value."""
    env = os.environ if env is None else env
    path = path or env.get(ENV_PREFIX + "CONFIG") or None
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    _merge(data, _from_env(env))
    if overrides:
        _merge(data, overrides)
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc))) from None
    _check(config)
    _check_mail(config.mail, {q.name: q.channel for q in config.interactions.queues}, env)
    return config


def _explain(message: str) -> str:
    text, _, where = message.partition(" - at `$.")
    if where:
        return f"{where.rstrip('`')}: {text}"
    return message


def _check(config: Config) -> None:
    for mount in config.server.mounts:
        if not mount.startswith("/") or mount.endswith("/") or "//" in mount:
            raise ConfigError(f"server.mounts: {mount!r} must start with '/' and not end with '/'")
    if not config.server.mounts:
        raise ConfigError("server.mounts: at least one mount is needed")
    if not config.bayeux.connection_types:
        raise ConfigError("bayeux.connection_types: at least one transport is needed")
    if config.engine.kind == "redis" and not config.engine.redis_url:
        raise ConfigError("engine.redis_url: needed with engine.kind = redis (--redis-url)")
    if config.engine.redis_url and not config.engine.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError("engine.redis_url: must start with redis://, rediss:// or unix://")
    if config.bayeux.timeout_ms > config.bayeux.max_client_timeout_ms:
        raise ConfigError(
            "bayeux.timeout_ms: longer than bayeux.max_client_timeout_ms "
            f"({config.bayeux.max_client_timeout_ms}), the longest a connect may be held"
        )


def _check_mail(mail: MailConfig, queues: Mapping[str, str], env: Mapping[str, str]) -> None:
    senders = {s.name for s in mail.senders}
    if len(senders) != len(mail.senders):
        raise ConfigError("mail.senders: two senders have the same name")
    if len({s.name for s in mail.sources}) != len(mail.sources):
        raise ConfigError("mail.sources: two sources have the same name")
    for i, source in enumerate(mail.sources):
        where = f"mail.sources[{i}] ({source.name})"
        if queues.get(source.queue) != "email":
            raise ConfigError(f"{where}: queue {source.queue!r} is not an email queue")
        if source.sender and source.sender not in senders:
            raise ConfigError(f"{where}: no sender named {source.sender!r}")
        if not source.username:
            raise ConfigError(f"{where}: username is required")
        if not source.input_folder or not source.processing_folder:
            raise ConfigError(f"{where}: input_folder and processing_folder must be named")
        _check_secret(source, where, env, required=True)
    for i, sender in enumerate(mail.senders):
        _check_secret(sender, f"mail.senders[{i}] ({sender.name})", env, required=False)
    if mail.reconnect_min_s > mail.reconnect_max_s or mail.retry_min_s > mail.retry_max_s:
        raise ConfigError("mail: a *_min_s pause is longer than its *_max_s")


def _check_secret(
    server: _MailServer, where: str, env: Mapping[str, str], *, required: bool
) -> None:
    given = [
        key
        for key in ("password", "password_env", "oauth_token_url", "oauth_token_command")
        if getattr(server, key)
    ]
    if len(given) > 1:
        raise ConfigError(f"{where}: give only one of {', '.join(given)}")
    if required and not given:
        raise ConfigError(f"{where}: a password, password_env or oauth_token_* is required")
    if server.password_env and server.password_env not in env:
        raise ConfigError(f"{where}: environment variable {server.password_env} is not set")


_SECRET_KEYS = frozenset({"password"})


def describe(config: Config | None = None) -> str:
    """Every option with its value (default unless ``config`` is given) and meaning, as TOML
    that :func:`load_config` reads back to the same configuration.

    Options that are not set (TOML has no null) and passwords are written as comments, so
    the text never shows a password, and a file made from it needs them given again.
    Lists of tables (``interactions.queues``, ``mail.sources``, ``mail.senders``) follow
    their section as ``[[section.key]]`` tables.
    """
    config = config or Config()
    lines = []
    for section_name in Config.__struct_fields__:
        section = getattr(config, section_name)
        lines.append(f"[{section_name}]")
        tables: list[tuple[str, list[msgspec.Struct]]] = []
        for key in type(section).__struct_fields__:
            value = getattr(section, key)
            meaning = HELP.get(f"{section_name}.{key}", "")
            if value and isinstance(value, list) and isinstance(value[0], msgspec.Struct):
                tables.append((key, value))
                lines.append(f"  # {key}: the [[{section_name}.{key}]] tables below    # {meaning}")
            else:
                lines.append(_toml_line(key, value, meaning))
        for key, items in tables:
            for item in items:
                lines.append(f"\n[[{section_name}.{key}]]")
                fields = sorted(type(item).__struct_fields__, key=lambda k: k != "name")
                lines.extend(_toml_line(k, getattr(item, k)) for k in fields)  # name first
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def _url_password(url: str) -> bool:
    """``redis://user:secret@host``: the URL carries a password."""
    authority = url.partition("://")[2].partition("/")[0]
    return "@" in authority and ":" in authority.rpartition("@")[0]


def _toml_line(key: str, value: Any, meaning: str = "") -> str:
    comment = f"    # {meaning}" if meaning else ""
    if value is None:
        return f"  # {key} = (not set){comment}"
    if (key in _SECRET_KEYS and value) or (key == "redis_url" and _url_password(value)):
        return f"  # {key} = (set; gateway config never prints a password){comment}"
    return f"  {tomlout.key(key)} = {tomlout.value(msgspec.to_builtins(value))}{comment}"
