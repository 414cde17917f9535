"""What a fuzzer tries first: valid input with a few bytes inserted, replaced or deleted."""

from __future__ import annotations

from hypothesis import strategies as st

ANY_BYTE = st.integers(0, 255)


def mutate(draw: st.DrawFn, data: bytes, byte: st.SearchStrategy[int] = ANY_BYTE) -> bytes:
    """``data`` with one to three bytes (drawn from ``byte``) inserted, replaced or deleted."""
    edited = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(edited) - 1))
        value = draw(byte)
        edit = draw(st.sampled_from(["insert", "replace", "delete"]))
        if edit == "insert":
            edited.insert(at, value)
        elif edit == "replace":
            edited[at] = value
        else:
            del edited[at]
    return bytes(edited)
