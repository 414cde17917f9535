"""Compare the *shape* of two JSON values: keys and value types at every level, not values.

Used to check that what the gateway sends looks like the recorded payloads the agent desktops
parse (``fixtures/seed/*.json``): ids, texts and counters may differ, but a desktop must find
every key it knows, with the JSON type it expects.

    from wire_shape import assert_same_shape

    assert_same_shape(seed, received, extra_keys={"sequence"})
"""

from __future__ import annotations

import json
from collections.abc import Collection

__all__ = ["assert_same_shape", "json_type", "shape"]

_SCALARS: tuple[tuple[type, str], ...] = (
    (bool, "bool"),  # before int: bool is a subclass of int, but not a JSON number
    (int, "int"),
    (float, "float"),
    (str, "str"),
)


def json_type(value: object) -> str:
    """The JSON type name of a decoded value: null, bool, int, float, str, array or object.

    Anything else (a tuple, bytes, a custom object) is named by its Python type, so it never
    equals a JSON type name.
    """
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    for kind, name in _SCALARS:
        if isinstance(value, kind):
            return name
    return f"<{type(value).__name__}>"


def shape(value: object) -> object:
    """A readable type tree of ``value``.

    Objects map each key to the shape of its value (in the value's key order), arrays become the
    list of the distinct shapes of their elements (in order of first appearance), and scalars
    become their type name (``"str"``, ``"int"``, ``"float"``, ``"bool"``, ``"null"``).
    """
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        variants: list[object] = []
        for item in value:
            item_shape = shape(item)
            if item_shape not in variants:
                variants.append(item_shape)
        return variants
    return json_type(value)


def assert_same_shape(
    expected: object,
    actual: object,
    *,
    extra_keys: Collection[str] = (),
    path: str = "$",
) -> None:
    """Fail unless ``actual`` has the shape of ``expected`` (both decoded JSON values).

    Rules, applied recursively:

    * **object** — every key of ``expected`` must be in ``actual``, with a value of the same
      shape (``<path>.<key>: missing`` otherwise). ``actual`` may carry additional keys only if
      their name is in ``extra_keys``, which applies at every level; the values of such keys are
      not checked (``<path>.<key>: unexpected key`` otherwise). Key order is not compared.
    * **array** — if ``expected`` is non-empty, each of its elements is an allowed variant and
      every element of ``actual`` must match (as a whole) at least one variant; so a list mixing
      PARTY_JOINED and NEW_MESSAGE chat notifications matches a seed list holding both, in any
      order and number, including an empty list. Positions are not compared: to check a
      response array message by message, compare its elements one by one. An element that
      matches no variant is reported against the variant it most resembles (fewest missing or
      unexpected keys of its own, then fewest mismatches); when that is ambiguous, a line says
      so and the differences from the closest variant follow, indented. If ``expected`` is
      empty, its element type is unknown; it is taken to be a list of strings (the seed's empty
      ``capabilities``), so ``actual`` must be an array whose elements are all strings.
    * **scalars** — same JSON type, strictly: ``bool`` is not ``int`` (nor the reverse), ``int``
      is not ``float`` (nor the reverse), and ``null`` matches only ``null``. Values may differ.

    Raises ``AssertionError`` listing every mismatch found, one per line, each starting with
    the JSONPath-like location (``$[0].data.email_object.subject: missing``).
    """
    errors = _compare(expected, actual, path, frozenset(extra_keys))
    if errors:
        count = sum(1 for line in errors if not line.startswith(" "))
        header = f"{count} shape mismatch{'es' if count != 1 else ''}:"
        raise AssertionError("\n".join([header, *errors]))


def _compare(expected: object, actual: object, path: str, extra: frozenset[str]) -> list[str]:
    want, got = json_type(expected), json_type(actual)
    if want.startswith("<"):
        raise TypeError(f"{path}: expected value is not JSON data: {expected!r}")
    if want != got:
        return [f"{path}: expected {want}, got {got} ({_brief(actual)})"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        return _compare_objects(expected, actual, path, extra)
    if isinstance(expected, list) and isinstance(actual, list):
        return _compare_arrays(expected, actual, path, extra)
    return []


def _compare_objects(
    expected: dict[object, object],
    actual: dict[object, object],
    path: str,
    extra: frozenset[str],
) -> list[str]:
    errors: list[str] = []
    for key, value in expected.items():
        where = _child(path, key)
        if key not in actual:
            errors.append(f"{where}: missing")
        else:
            errors.extend(_compare(value, actual[key], where, extra))
    for key in actual:
        if key not in expected and key not in extra:
            errors.append(f"{_child(path, key)}: unexpected key")
    return errors


def _compare_arrays(
    expected: list[object], actual: list[object], path: str, extra: frozenset[str]
) -> list[str]:
    errors: list[str] = []
    if not expected:
        for index, item in enumerate(actual):
            if json_type(item) != "str":
                errors.append(
                    f"{path}[{index}]: expected str (the expected array is empty, so only "
                    f"strings are accepted), got {json_type(item)} ({_brief(item)})"
                )
        return errors

    # One representative per distinct element shape, with its index in ``expected``.
    variants: list[tuple[int, object]] = []
    variant_shapes: list[object] = []
    for position, item in enumerate(expected):
        item_shape = shape(item)
        if item_shape not in variant_shapes:
            variant_shapes.append(item_shape)
            variants.append((position, item))

    for index, item in enumerate(actual):
        where = f"{path}[{index}]"
        attempts = [_compare(variant, item, where, extra) for _, variant in variants]
        if any(not attempt for attempt in attempts):
            continue
        # The variant the element most resembles: fewest keys of its own missing or unexpected,
        # then fewest mismatches overall.
        distances = [_key_distance(variant, item, extra) for _, variant in variants]
        closest = min(
            range(len(variants)), key=lambda number: (distances[number], len(attempts[number]))
        )
        if distances.count(distances[closest]) == 1:
            # Unambiguous (a single variant, or the only one with the element's keys): its
            # mismatches are the element's mismatches.
            errors.extend(attempts[closest])
            continue
        errors.append(
            f"{where}: matches none of the {len(variants)} element shapes of the expected "
            f"array; differences from the closest, expected {path}[{variants[closest][0]}]:"
        )
        errors.extend(f"  {line}" for line in attempts[closest])
    return errors


def _key_distance(expected: object, actual: object, extra: frozenset[str]) -> int:
    """How many of the element's own keys are missing or unexpected (0 unless both are objects)."""
    if not (isinstance(expected, dict) and isinstance(actual, dict)):
        return 0
    missing = sum(1 for key in expected if key not in actual)
    unexpected = sum(1 for key in actual if key not in expected and key not in extra)
    return missing + unexpected


def _child(path: str, key: object) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    label = json.dumps(key) if isinstance(key, str) else repr(key)
    return f"{path}[{label}]"


def _brief(value: object, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
