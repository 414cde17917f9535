"""The ``gateway`` command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

from gateway import __version__
from gateway.config import Config, ConfigError, describe, load_config

__all__ = ["main"]

EXIT_CONFIG = 2


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
    show = commands.add_parser(
        "config",
        help="print the effective configuration and exit",
        description="Validate the configuration and print every option with its value.",
    )
    _common(show)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["auto", "json", "console"])


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, dict[str, Any]] = {"server": {}, "log": {}}
    if getattr(args, "host", None):
        overrides["server"]["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["server"]["port"] = args.port
    if args.log_level:
        overrides["log"]["level"] = args.log_level
    if args.log_format:
        overrides["log"]["format"] = args.log_format
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `gateway config | head` ends quietly
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    try:
        config = load_config(args.config, overrides=_overrides(args))
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "config":
        print(describe(config))
        return 0
    return serve(config)


def serve(config: Config) -> int:
    from gateway.server import run

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(run(config))
    return uvloop.run(run(config))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
