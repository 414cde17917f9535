"""README.md's shell blocks, run as a newcomer would run them: in order, in one shell, against
the gateway ``make run`` starts.  The README can no longer drift from the product.

How it runs, and what differs from ``make run`` (nothing a block can see):

- Every `````sh`` block runs, in README order, in one ``bash -euo pipefail`` (functions and
  variables of one block serve the next, as in one terminal), unless the line before it is an
  HTML comment ``<!-- not-run: why -->``.
- The gateway is ``gateway serve --demo`` from this tree, in a temporary directory that plays
  the repository directory: its data directory is ``data/`` there, the blocks run there, and
  ``.venv/bin/gateway`` there runs this tree's ``gateway``.
- It listens on a free port instead of 8080: ``127.0.0.1:8080`` in the blocks is replaced by
  it.  Its demo IMAP and SMTP servers take free ports too, given to the blocks'
  ``gateway demo`` commands as ``GATEWAY_MAIL__DEMO_*_PORT`` (as any configuration can be).
- ``GATEWAY_AGENTS__ALLOW_ANONYMOUS_BAYEUX=true``, which "Connecting a client" says its
  examples use; it only lets anonymous handshakes in, which no other block makes.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELLS = ("sh", "bash", "shell")
NOT_RUN = re.compile(r"<!--\s*not-run\b")

# What each block must show, found by a line of its source: the block that holds the key.
EXPECTED: dict[str, list[str]] = {
    "StartContactCenterSession": [
        '"userName":"agent1"',
        '"state":"Invited"',
        '"referenceId":4',
        "Hi Ann, how can I help?",  # the partner sees the agent's chat message
    ],
    "users add agent2": ['"userName":"agent2"'],  # logged in without a restart
    "demo send-mail": [
        "Subject: Re: Broken kettle",
        "| A new one is on its way.",
        "Subject: Re: Where is my order?",  # the reply of "Try it" reached customer@demo.example
        "| On its way.",
    ],
    "/meta/handshake": ['"successful":true', '"channel":"/meta/subscribe"', '"/meta/connect"'],
    "/readyz": ['{"status":"ok"}', 'gateway_sessions{node="'],
}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    source: str
    run: bool


def blocks(text: str) -> list[Block]:
    """The shell blocks of a Markdown text, each marked run or not."""
    found = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if fence is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        if fence.group(1) in SHELLS:
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            found.append(Block(i + 1, "\n".join(lines[i + 1 : end]), not NOT_RUN.search(before)))
        i = end + 1
    return found


@dataclass
class Demo:
    directory: Path
    port: int
    smtp_port: int
    imap_port: int


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """``make run``, in a temporary repository directory."""
    gateway = tmp_path / ".venv" / "bin" / "gateway"
    gateway.parent.mkdir(parents=True)
    gateway.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m gateway "$@"\n')
    gateway.chmod(0o755)
    env = {
        **_clean_env(),
        "GATEWAY_MAIL__DEMO_IMAP_PORT": "0",
        "GATEWAY_MAIL__DEMO_SMTP_PORT": "0",
        "GATEWAY_AGENTS__ALLOW_ANONYMOUS_BAYEUX": "true",
        "GATEWAY_LOG__FORMAT": "json",
    }
    with (tmp_path / "gateway.log").open("w") as log:
        proc = subprocess.Popen(
            [str(gateway), "serve", "--demo", "--port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        assert proc.stdout is not None
        banner = ""
        while "replies arrive" not in banner:
            line = proc.stdout.readline()
            assert line, banner + (tmp_path / "gateway.log").read_text()
            banner += line
        port = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
        smtp = re.search(r"send-mail --smtp-port (\d+)", banner)
        imap = re.search(r"inbox --imap-port (\d+)", banner)
        assert port and smtp and imap, banner
        yield Demo(tmp_path, int(port[1]), int(smtp[1]), int(imap[1]))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_the_readme_marks_what_it_does_not_run() -> None:
    found = blocks(README.read_text())
    skipped = [b.source.splitlines()[0] for b in found if not b.run]
    assert skipped == [
        "make run    # a venv with the gateway (and python3-venv if missing), starts it on "
        "127.0.0.1:8080",
        "GATEWAY_BAYEUX__TIMEOUT_MS=20000 GATEWAY_CORS__ALLOW_ORIGINS='[\"https://desk.example\"]' "
        "\\",
        # two nodes on a Redis: what they do is tests/cluster's
        ".venv/bin/gateway serve --engine redis --redis-url redis://127.0.0.1:6379/0 --node-id a "
        "--port 8081 &",
    ]
    running = [b for b in found if b.run]
    for key in EXPECTED:
        assert sum(key in b.source for b in running) == 1, key


def test_the_readmes_shell_blocks_run_as_written(demo: Demo) -> None:
    running = [b for b in blocks(README.read_text()) if b.run]
    script = "\n".join(
        f"echo '@@ block {n} @@'\n" + b.source.replace("127.0.0.1:8080", f"127.0.0.1:{demo.port}")
        for n, b in enumerate(running)
    )
    (demo.directory / "readme.sh").write_text(script + "\n")
    env = {
        **_clean_env(),
        "GATEWAY_MAIL__DEMO_SMTP_PORT": str(demo.smtp_port),
        "GATEWAY_MAIL__DEMO_IMAP_PORT": str(demo.imap_port),
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "readme.sh"],
        cwd=demo.directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
    )
    outputs = result.stdout.split("@@ block ")[1:]
    report = (
        f"exit {result.returncode}; the last block started: README line "
        f"{running[len(outputs) - 1].line if outputs else '?'}\n--- stdout\n{result.stdout}\n"
        f"--- stderr\n{result.stderr}\n--- gateway log (tail)\n"
        + "\n".join((demo.directory / "gateway.log").read_text().splitlines()[-20:])
    )
    assert result.returncode == 0, report
    assert len(outputs) == len(running), report
    codes = re.findall(r'"statusCode":(\d+)', result.stdout)
    assert codes and set(codes) == {"0"}, report  # every answer of the REST APIs is a success
    for block, output in zip(running, outputs, strict=True):
        for key, expected in EXPECTED.items():
            if key in block.source:
                missing = [e for e in expected if e not in output]
                assert not missing, f"README line {block.line}: {missing} not in\n{output}"
