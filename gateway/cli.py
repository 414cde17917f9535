"""The ``gateway`` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

from gateway import __version__
from gateway.agents.users import (
    Directory,
    User,
    UsersFileError,
    check_name,
    effective_capacity,
    effective_queues,
    users_path,
)
from gateway.config import Config, ConfigError, describe, load_config
from gateway.datadir import DataDirInUse, DataDirLock

__all__ = ["main"]

EXIT_CONFIG = 2
EXIT_ABSENT = 1


class _InputError(ValueError):
    """A bad command-line value; the message is one line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Bayeux/CometD notification gateway for contact-center agents.",
        epilog="Run 'gateway serve --help' for every configuration option.",
    )
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description=(
            "Run the gateway.  Settings come from the built-in defaults, then the TOML file "
            "(--config or GATEWAY_CONFIG), then environment variables "
            "GATEWAY_<SECTION>__<KEY> (TOML values, e.g. GATEWAY_BAYEUX__TIMEOUT_MS=20000), "
            "then the flags below."
        ),
        epilog="Configuration options (section, key, default, meaning):\n\n" + describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(serve)
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="TCP port (server.port)")
    serve.add_argument(
        "--engine",
        choices=["memory", "redis"],
        help="where Bayeux sessions live (engine.kind): memory for one process, redis for a "
        "cluster of nodes on one Redis",
    )
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        help="redis://HOST:PORT/DB of --engine redis (engine.redis_url)",
    )
    serve.add_argument("--node-id", metavar="ID", help="this node's name (engine.node_id)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="add a demo agent and a fresh partner token to the users file and print them "
        "(agents.demo), and run embedded demo IMAP and SMTP servers whose support mailbox "
        "feeds the email queue (mail.demo); see 'gateway demo --help'",
    )
    show = commands.add_parser(
        "config",
        help="print the effective configuration and exit",
        description="Validate the configuration and print every option with its value.",
    )
    _common(show)
    _users_parser(commands)
    _partners_parser(commands)
    _demo_parser(commands)
    return parser


_FILE_NOTE = (
    "The users file is agents.users_file, relative to store.data_dir (data/users.json by "
    "default); --config and GATEWAY_<SECTION>__<KEY> variables choose it as for 'serve'."
)


def _users_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = commands.add_parser(
        "users",
        help="add, list or remove agents",
        description="Manage the agents who may log in.  Passwords are kept only as salted "
        "argon2id hashes.  " + _FILE_NOTE,
    )
    users.set_defaults(print_help=users.print_help)
    actions = users.add_subparsers(dest="action", metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="add an agent (asks for the password twice)",
        description="Add an agent.  The password is asked twice, or read from the first line "
        "of standard input with --password-stdin.  " + _FILE_NOTE,
    )
    _common(add)
    add.add_argument("username", help="1-64 letters, digits, '.', '_', '-' or '@'")
    add.add_argument("--first-name", default="", help="shown to the agent's desktop")
    add.add_argument("--last-name", default="", help="shown to the agent's desktop")
    add.add_argument(
        "--queue",
        action="append",
        metavar="QUEUE",
        help="a queue of interactions.queues this agent serves; repeat for more "
        "(default: agents.default_queues)",
    )
    add.add_argument(
        "--capacity",
        action="append",
        metavar="CHANNEL=N",
        help="interactions at once on CHANNEL (email, chat); repeat for each channel; "
        "channels not given keep agents.default_capacity",
    )
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of asking",
    )
    listing = actions.add_parser(
        "list",
        help="list the agents: username, id, queues, capacity",
        description="One line per agent: username, id, queues and capacity ('(default)' "
        "when the value comes from the configuration).  Never the password hash.  " + _FILE_NOTE,
    )
    _common(listing)
    remove = actions.add_parser(
        "remove",
        help="remove an agent (exit status 1 if there is none by that name)",
        description="Remove an agent.  " + _FILE_NOTE,
    )
    _common(remove)
    remove.add_argument("username")


def _partners_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    partners = commands.add_parser(
        "partners",
        help="add, list or remove partner API tokens",
        description="Manage the systems that call the partner API with a bearer token.  "
        "Tokens are kept only as SHA-256 hashes.  " + _FILE_NOTE,
    )
    partners.set_defaults(print_help=partners.print_help)
    actions = partners.add_subparsers(dest="action", metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="add a partner and print its new token (shown only once)",
        description="Add a partner and print its new token on standard output.  The token is "
        "shown only this once.  " + _FILE_NOTE,
    )
    _common(add)
    add.add_argument("name", help="1-64 letters, digits, '.', '_', '-' or '@'")
    listing = actions.add_parser(
        "list", help="list the partners' names", description="List the partners' names."
    )
    _common(listing)
    remove = actions.add_parser(
        "remove",
        help="remove a partner, revoking its token (exit status 1 if there is none)",
        description="Remove a partner; its token stops working.  " + _FILE_NOTE,
    )
    _common(remove)
    remove.add_argument("name")


_DEMO_NOTE = (
    "For the demo mail servers of 'gateway serve --demo': an email from the customer "
    "(customer@demo.example) reaches the support mailbox (support@demo.example), the gateway "
    "offers it to the demo agent, and the agent's reply lands in the customer's INBOX."
)


_HOST = "where the demo servers listen (default: %(default)s)"


def _demo_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="play the customer of the demo mail servers",
        description="Play the customer.  " + _DEMO_NOTE,
    )
    demo.set_defaults(print_help=demo.print_help)
    actions = demo.add_subparsers(dest="action", metavar="ACTION")
    send = actions.add_parser(
        "send-mail",
        help="send an email from the customer to the support mailbox",
        description="Send an email from the customer to support@demo.example through the demo "
        "SMTP server.  " + _DEMO_NOTE,
    )
    _common(send)
    send.add_argument(
        "--subject", default="Where is my order?", help="the Subject (default: %(default)s)"
    )
    send.add_argument(
        "--text", default="Order 1234 has not arrived yet. Can you help?", help="the text body"
    )
    send.add_argument(
        "--from",
        dest="from_name",
        default="Customer",
        metavar="NAME",
        help="the customer's name in From (the address is customer@demo.example)",
    )
    send.add_argument(
        "--smtp-port", type=int, metavar="P", help="demo SMTP port (default: mail.demo_smtp_port)"
    )
    send.add_argument("--host", dest="demo_host", default="127.0.0.1", metavar="H", help=_HOST)
    inbox = actions.add_parser(
        "inbox",
        help="list the customer's INBOX, where the agent's replies arrive",
        description="List the customer's INBOX (customer@demo.example): sender, subject, date "
        "and the first lines of each message, oldest first.  " + _DEMO_NOTE,
    )
    _common(inbox)
    inbox.add_argument(
        "--imap-port", type=int, metavar="P", help="demo IMAP port (default: mail.demo_imap_port)"
    )
    inbox.add_argument("--host", dest="demo_host", default="127.0.0.1", metavar="H", help=_HOST)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["auto", "json", "console"])


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, dict[str, Any]] = {
        "server": {},
        "log": {},
        "agents": {},
        "mail": {},
        "engine": {},
    }
    if getattr(args, "demo", False):
        overrides["agents"]["demo"] = True
        overrides["mail"]["demo"] = True
    if getattr(args, "host", None):
        overrides["server"]["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["server"]["port"] = args.port
    for flag, key in (("engine", "kind"), ("redis_url", "redis_url"), ("node_id", "node_id")):
        if getattr(args, flag, None):
            overrides["engine"][key] = getattr(args, flag)
    if args.log_level:
        overrides["log"]["level"] = args.log_level
    if args.log_format:
        overrides["log"]["format"] = args.log_format
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        # `gateway config | head` ends quietly.  Never for `serve`: there a peer that resets
        # its socket would end the process on the next write (Python ignores SIGPIPE, and
        # asyncio turns the failed write into a closed connection).
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    if args.command in ("users", "partners", "demo") and args.action is None:
        args.print_help()
        return EXIT_CONFIG
    try:
        config = load_config(args.config, overrides=_overrides(args))
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "config":
        print(describe(config))
        return 0
    if args.command in ("users", "partners"):
        try:
            return _users(args, config) if args.command == "users" else _partners(args, config)
        except (UsersFileError, _InputError) as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    if args.command == "demo":
        return _demo(args, config)
    return serve(config)


def _users(args: argparse.Namespace, config: Config) -> int:
    path = users_path(config)
    directory = Directory.load(path)
    if args.action == "list":
        for user in directory.users:
            print(_describe_user(user, config))
        if not directory.users:
            print(f"no agents in {path}", file=sys.stderr)
        return 0
    if args.action == "remove":
        if not directory.remove_user(args.username):
            print(f"gateway: no agent named {args.username!r} in {path}", file=sys.stderr)
            return EXIT_ABSENT
        directory.save(path)
        print(f"removed agent {args.username} from {path}")
        return 0
    check_name(args.username, "username")
    if directory.get(args.username) is not None:
        raise _InputError(f"an agent named {args.username!r} already exists in {path}")
    queues = _check_queues(args.queue, config)
    capacity = _parse_capacity(args.capacity, config)
    password = _read_password(args.username, from_stdin=args.password_stdin)
    user = directory.add_user(
        args.username,
        password,
        first_name=args.first_name,
        last_name=args.last_name,
        queues=queues,
        capacity=capacity,
    )
    directory.save(path)
    print(f"added agent {user.username} (id {user.id}) to {path}")
    return 0


def _partners(args: argparse.Namespace, config: Config) -> int:
    path = users_path(config)
    directory = Directory.load(path)
    if args.action == "list":
        for partner in directory.partners:
            print(partner.name)
        return 0
    if args.action == "remove":
        if not directory.remove_partner(args.name):
            print(f"gateway: no partner named {args.name!r} in {path}", file=sys.stderr)
            return EXIT_ABSENT
        directory.save(path)
        print(f"removed partner {args.name} from {path}")
        return 0
    token = directory.add_partner(args.name)
    directory.save(path)
    print(token)
    print(
        f"added partner {args.name} to {path}; the token (on standard output) is shown only once "
        "(the file keeps only its SHA-256 hash)",
        file=sys.stderr,
    )
    return 0


def _describe_user(user: User, config: Config) -> str:
    queues = ",".join(effective_queues(user, config.agents))
    capacity = ",".join(
        f"{channel}:{count}" for channel, count in effective_capacity(user, config.agents).items()
    )
    queues_note = "(default)" if user.queues is None else ""
    capacity_note = "(default)" if user.capacity is None else ""
    return (
        f"{user.username}  id={user.id}  queues={queues}{queues_note}  "
        f"capacity={capacity}{capacity_note}"
    )


def _check_queues(queues: list[str] | None, config: Config) -> list[str] | None:
    known = [queue.name for queue in config.interactions.queues]
    for queue in queues or ():
        if queue not in known:
            raise _InputError(
                f"unknown queue {queue!r} (interactions.queues has: {', '.join(known)})"
            )
    return queues


def _parse_capacity(items: list[str] | None, config: Config) -> dict[str, int] | None:
    if items is None:
        return None
    channels = {*config.agents.default_capacity, *(q.channel for q in config.interactions.queues)}
    capacity: dict[str, int] = {}
    for item in items:
        channel, _, count = item.partition("=")
        if not re.fullmatch(r"[0-9]{1,4}", count):
            raise _InputError(f"bad --capacity {item!r}: expected CHANNEL=N, e.g. email=1")
        if channel not in channels:
            raise _InputError(
                f"bad --capacity {item!r}: unknown channel (known: {', '.join(sorted(channels))})"
            )
        capacity[channel] = int(count)
    return capacity


def _read_password(username: str, *, from_stdin: bool) -> str:
    try:
        if from_stdin:
            password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        else:
            password = getpass.getpass(f"password for {username}: ")
            if password and getpass.getpass("the same password again: ") != password:
                raise _InputError("the passwords do not match")
    except EOFError:
        password = ""
    if not password:
        raise _InputError("no password given")
    return password


def _demo(args: argparse.Namespace, config: Config) -> int:
    from gateway.mail import demo  # pymap, aiosmtpd: only for these commands

    host = args.demo_host
    try:
        if args.action == "send-mail":
            port = config.mail.demo_smtp_port if args.smtp_port is None else args.smtp_port
            sent = asyncio.run(
                demo.send_customer_mail(
                    host=host, port=port, subject=args.subject, text=args.text, name=args.from_name
                )
            )
            print(
                f"sent {sent.subject!r} {sent.message_id} from {sent.sender} to {sent.recipient} "
                f"via {host}:{port}; the demo agent, once Ready for email, is Invited to it "
                "(/v2/me/interactions), and 'gateway demo inbox' shows the reply once Sent"
            )
            return 0
        port = config.mail.demo_imap_port if args.imap_port is None else args.imap_port
        messages = asyncio.run(demo.read_inbox(host=host, port=port))
    except demo.DemoUnreachable as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_ABSENT
    print(f"{len(messages)} message(s) in {demo.CUSTOMER_ADDRESS}'s INBOX ({host}:{port})")
    for number, message in enumerate(messages, 1):
        print(f"{number}. From: {message.sender}\n   Subject: {message.subject}")
        print(f"   Date: {message.date}")
        for line in message.preview:
            print(f"   | {line}")
    return 0


def serve(config: Config) -> int:
    from gateway.server import run

    lock = DataDirLock(config.store.data_dir)
    try:
        lock.acquire()
    except DataDirInUse as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"gateway: cannot lock {lock.path}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    try:  # held for the gateway's life; the kernel drops it however the process ends
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            return asyncio.run(run(config))
        return uvloop.run(run(config))
    finally:
        lock.release()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
