"""The command line as a new user meets it: help, bad configuration, a real start and stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import tomlout
from gateway.config import HELP, Config, ConfigError, describe, load_config

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
        # a value, or a comment for an option not set or a list of [[tables]] below
        assert f"  {name} = " in out or f"  # {name}" in out, key
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
        (
            {"GATEWAY_BAYEUX__TIMEOUT_MS": "90000"},
            "bayeux.timeout_ms: longer than bayeux.max_client_timeout_ms (60000)",
        ),
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


# Every kind of value the configuration holds, none of them the default: strings that need
# escapes, a key that needs quotes, an option that is set where the default is not, floats
# in exponent form, lists of [[tables]] with every field given.
EVERYTHING = r"""
[server]
mounts = ["/bayeux"]
shutdown_timeout_s = 0.25
[bayeux]
connection_types = ["websocket"]
[cookie]
max_age_s = 3600
same_site = "Strict"
[cors]
allow_origins = ["https://desk.example", "*"]
[agents]
default_capacity = {email = 2, "chat room" = 0}
[interactions]
invite_timeout_s = 1e-3
[[interactions.queues]]
name = "Mail"
channel = "email"
in_queues = ["__STOP__"]
[[interactions.queues]]
name = "Chat \"VIP\""
channel = "chat"
[mail]
message_id_domain = "mx.example"
retry_for_s = 1e20
[[mail.sources]]
name = "support"
queue = "Mail"
username = "support@example.com"
password_env = "SUPPORT_IMAP_PASSWORD"
output_folder = ""
acknowledge = true
acknowledge_text = "Thanks!\n\tWe\\ll answer \"soon\" \u00e9\u0007\u007f"
sender = "out"
[[mail.senders]]
name = "out"
tls = "none"
oauth_token_command = "/usr/local/bin/token --for 'smtp'"
queues = ["Mail"]
"""


def test_gateway_config_prints_toml_that_loads_back_the_same(tmp_path: Path) -> None:
    env = {"SUPPORT_IMAP_PASSWORD": "secret"}
    source = tmp_path / "in.toml"
    source.write_text(EVERYTHING)
    config = load_config(source, env=env)
    printed = tmp_path / "printed.toml"
    printed.write_text(describe(config))
    assert load_config(printed, env=env) == config
    assert "null" not in printed.read_text()
    assert tomllib.loads(describe()) == tomllib.loads(describe(Config()))
    assert load_config(_written(tmp_path, describe()), env={}) == Config()


def test_gateway_config_command_output_is_the_configuration(tmp_path: Path) -> None:
    source = tmp_path / "in.toml"
    source.write_text(EVERYTHING)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["SUPPORT_IMAP_PASSWORD"] = "secret"
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "--config", str(source)],
        cwd=ROOT,
        text=True,
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    printed = _written(tmp_path, result.stdout)
    assert load_config(printed, env=env) == load_config(source, env=env)


def test_gateway_config_never_prints_a_password(tmp_path: Path) -> None:
    source = tmp_path / "in.toml"
    source.write_text(
        "[[mail.senders]]\nname = 'out'\nusername = 'me'\npassword = 'hunter2-secret'\n"
    )
    text = describe(load_config(source, env={}))
    assert "hunter2" not in text
    assert "  # password = (set; gateway config never prints a password)" in text
    [sender] = tomllib.loads(text)["mail"]["senders"]
    assert sender["username"] == "me" and "password" not in sender  # to be given again


@given(st.text(), st.text(min_size=1), st.floats(allow_nan=False))
def test_toml_values_read_back_equal(text: str, name: str, number: float) -> None:
    document = f"v = {tomlout.value([text, number])}\nt = {tomlout.value({name: text})}"
    assert tomllib.loads(document) == {"v": [text, number], "t": {name: text}}


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "out.toml"
    path.write_text(text)
    return path
