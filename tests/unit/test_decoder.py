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


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_decode_error(body: bytes) -> None:
    try:
        result = decode_batch(body, max_messages=50)
    except DecodeError:
        return
    assert all(isinstance(m, Message | Malformed) for m in result)


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
