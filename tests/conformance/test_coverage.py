"""The suite covers every numbered assertion of bayeux.md §10, and its table says so."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from . import __doc__ as TABLE

HERE = Path(__file__).parent
ITEMS = range(1, 49)
TEST_RE = re.compile(r"^test_10_(\d\d)_\w+$")
ROW_RE = re.compile(r"^\s+(\d+)\s+(test_\w+\.py)::(test_10_(\d\d)_\w*)", re.MULTILINE)


def _tests() -> dict[int, list[str]]:
    """§10 number → ``module::function`` of every test named for it."""
    package = __name__.rpartition(".")[0]
    found: dict[int, list[str]] = {}
    for path in sorted(HERE.glob("test_*.py")):
        module = importlib.import_module(f"{package}.{path.stem}")
        for name, function in vars(module).items():
            match = TEST_RE.match(name)
            if match and inspect.iscoroutinefunction(function):
                found.setdefault(int(match.group(1)), []).append(f"{path.name}::{name}")
    return found


def test_every_item_has_a_test() -> None:
    found = _tests()
    assert sorted(found) == list(ITEMS), f"missing: {sorted(set(ITEMS) - set(found))}"


def test_table_lists_every_test() -> None:
    assert TABLE is not None
    rows = ROW_RE.findall(TABLE)
    assert [int(number) for number, *_ in rows] == list(ITEMS)
    found = _tests()
    for number, module, name, named in rows:
        assert int(number) == int(named), f"row {number} names {name}"
        prefix = name.rstrip("…")
        assert any(test.startswith(f"{module}::{prefix}") for test in found[int(number)]), (
            f"row {number}: no test {module}::{name}"
        )
