"""protocol/ is pure: importing it brings in no IO library, no clock-reading framework, no gateway.

Run in a fresh interpreter so that nothing imported by other tests can hide a violation.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = (
    "asyncio",
    "aiohttp",
    "structlog",
    "logging",
    "socket",
    "gateway",
    "time",
    "uvloop",
    "threading",
    "selectors",
)


def test_importing_protocol_loads_no_io_module() -> None:
    code = (
        "import sys, json; before = set(sys.modules); import protocol; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert bad == [], f"protocol pulled in IO modules: {bad}"


def test_protocol_sources_import_only_stdlib_and_msgspec() -> None:
    allowed_third_party = {"msgspec", "protocol"}
    offenders = []
    for path in (ROOT / "protocol").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in allowed_third_party or top == "__future__":
                    continue
                if top not in sys.stdlib_module_names or top in FORBIDDEN:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_gateway_imports_only_public_protocol_names() -> None:
    offenders = []
    for path in (ROOT / "gateway").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module != "protocol"
                and node.module.startswith("protocol.")
            ):
                offenders.append(f"{path.relative_to(ROOT)}: from {node.module}")
            if isinstance(node, ast.Import):
                offenders += [
                    f"{path.relative_to(ROOT)}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("protocol.")
                ]
    assert offenders == [], "gateway must use only names exported by protocol/__init__.py"
