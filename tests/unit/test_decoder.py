"""The batch decoder: arbitrary bytes raise only DecodeError; valid shapes round-trip."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import UNSET, DecodeError, Malformed, Message, decode_batch

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def decodes_or_refuses(body: bytes) -> None:
    """Messages (or Malformed entries), or DecodeError: never another exception."""
    try:
        result = decode_batch(body, max_messages=50)
    except DecodeError:
        return
    assert all(isinstance(m, Message | Malformed) for m in result)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_error(body: bytes) -> None:
    decodes_or_refuses(body)


@given(st.lists(json_values, min_size=1, max_size=5))
def test_any_json_array_gives_one_entry_per_item(items: list[object]) -> None:
    body = msgspec.json.encode(items)
    result = decode_batch(body, max_messages=50)
    assert len(result) == len(items)


@given(
    st.dictionaries(
        st.sampled_from(
            ["channel", "id", "clientId", "data", "subscription", "ext", "advice", "version"]
        ),
        json_values,
        max_size=6,
    )
)
def test_any_json_object_decodes_to_message_or_malformed(obj: dict[str, object]) -> None:
    (entry,) = decode_batch(msgspec.json.encode(obj), max_messages=1)
    assert isinstance(entry, Message | Malformed)


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["channel", "id", "clientId", "data", "ext"]), json_values),
        min_size=1,
        max_size=3,
    ),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_mutated_batches_raise_only_decode_error(
    batch: list[dict[str, object]], edits: list[tuple[int, int]]
) -> None:
    """A valid batch with a few bytes replaced (invalid UTF-8, broken JSON, wrong types)."""
    body = bytearray(msgspec.json.encode(batch))
    for at, byte in edits:
        body[at % len(body)] = byte
    decodes_or_refuses(bytes(body))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'[{"\xff":1,"channel":"/meta/connect","id":1.5}]', id="key-and-bad-id"),
        pytest.param(b'[{"\xff":1,"channel":"/meta/connect"}]', id="unknown-key"),
        pytest.param(b'[{"channel":"/a","data":"\xff"}]', id="in-data"),
        pytest.param(b'{"channel":"/a","data":{"k":"\xc3"}}', id="truncated-in-data"),
        pytest.param(b'[{"channel":"/a","ext":{"\xed\xa0\x80":1}}]', id="encoded-surrogate"),
    ],
)
def test_invalid_utf8_anywhere_is_a_decode_error(body: bytes) -> None:
    """msgspec skips unknown fields and keeps ``data`` raw without checking their UTF-8: the
    decoder checks the whole body, so no invalid byte is answered with a 500 or forwarded to
    subscribers inside an event."""
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_batch(body, max_messages=10)


def test_absent_data_and_null_data_differ() -> None:
    (absent,) = decode_batch(b'{"channel":"/a"}', max_messages=1)
    (null,) = decode_batch(b'{"channel":"/a","data":null}', max_messages=1)
    assert isinstance(absent, Message) and absent.data is UNSET
    assert isinstance(null, Message) and bytes(null.data) == b"null"  # type: ignore[arg-type]


def test_id_keeps_its_json_type() -> None:
    (num,) = decode_batch(b'{"channel":"/a","id":7}', max_messages=1)
    (text,) = decode_batch(b'{"channel":"/a","id":"7"}', max_messages=1)
    assert isinstance(num, Message) and num.id == 7
    assert isinstance(text, Message) and text.id == "7"


@pytest.mark.parametrize(
    "body",
    [b"", b"  ", b"[]", b"5", b'"x"', b"{", b"[1,", b"null", b'{"channel":"/a"},{"channel":"/b"}'],
)
def test_non_batches_are_rejected(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_batch(body, max_messages=10)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deep_nesting_is_a_decode_error(depth: int) -> None:
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_batch(b"[" * depth + b"]" * depth, max_messages=10)
    inside_data = b'[{"channel":"/a","data":' + b"[" * depth + b"]" * depth + b"}]"
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_batch(inside_data, max_messages=10)


def test_batch_limit() -> None:
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_batch(b'[{"channel":"/a"},{"channel":"/b"}]', max_messages=1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"channel":5,"id":"1"}', "channel"),
        (b'{"channel":"/a","id":{"x":1}}', "id"),
        (b'{"channel":"/meta/subscribe","subscription":5}', "subscription"),
        (b'{"channel":"/a","ext":"x"}', "ext"),
    ],
)
def test_wrong_field_type_names_the_field(body: bytes, field: str) -> None:
    (entry,) = decode_batch(body, max_messages=1)
    assert isinstance(entry, Malformed) and entry.field == field
