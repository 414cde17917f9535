"""The IO shell: aiohttp app, transports, hub, engines, configuration, CLI."""

__version__ = "0.1.0"
