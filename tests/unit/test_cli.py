"""The command line as a new user meets it: help, bad configuration, a real start and stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gateway.config import HELP, Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_serve_help_explains_every_option() -> None:
    out = gateway("serve", "--help").stdout
    for key in HELP:
        name = key.split(".")[1]
        assert f"  {name} = " in out, key
    assert "GATEWAY_<SECTION>__<KEY>" in out


def test_every_option_has_help() -> None:
    keys = {
        f"{s}.{k}"
        for s in Config.__struct_fields__
        for k in type(getattr(Config(), s)).__struct_fields__
    }
    assert keys == set(HELP)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_SERVER__PORT": "99999"}, "server.port: Expected `int` <= 65535"),
        ({"GATEWAY_QUEUE__OVERFLOW": "forever"}, "queue.overflow: Invalid enum value 'forever'"),
        ({"GATEWAY_BAYEUX__NO_SUCH": "1"}, "unknown field `no_such`"),
        ({"GATEWAY_SERVER__MOUNTS": '["cometd"]'}, "server.mounts: 'cometd' must start with '/'"),
        (
            {"GATEWAY_SERVER__GC_FULL_INTERVAL_S": "-1"},
            "server.gc_full_interval_s: Expected `float` >= 0",
        ),
        ({"GATEWAY_CONFIG": "/nonexistent.toml"}, "cannot read config file /nonexistent.toml"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(env: dict[str, str], message: str) -> None:
    result = gateway("serve", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gateway: configuration error: ")
    assert message in lines[0]


def test_toml_env_and_overrides_layer(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text("[bayeux]\ntimeout_ms = 1000\n[server]\nport = 9001\n")
    config = load_config(
        path, env={"GATEWAY_BAYEUX__TIMEOUT_MS": "2000"}, overrides={"server": {"port": 9002}}
    )
    assert config.bayeux.timeout_ms == 2000 and config.server.port == 9002
    path.write_text("[bayeux\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})


def test_serve_starts_prints_where_to_connect_and_stops_on_sigterm(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-format", "json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GATEWAY_STORE__DATA_DIR": str(tmp_path)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/cometd" in line
        assert f"http://127.0.0.1:{port}/api/v2/notifications" in line
        # A client hanging up mid-write fails that write; SIGPIPE must not end the server.
        ignored = next(
            int(row.split()[1], 16)
            for row in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            if row.startswith("SigIgn:")
        )
        assert ignored & (1 << (signal.SIGPIPE - 1))
        body = b'[{"channel":"/meta/handshake","supportedConnectionTypes":["long-polling"]}]'
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v2/notifications",
            body,
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            # Nobody is logged in: the handshake is refused, and the client told not to retry.
            answer = response.read()
            assert b'"error":"403::handshake_denied"' in answer
            assert b'"reconnect":"none"' in answer
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    _, err = proc.communicate()
    assert '"event": "listening"' in err
