"""Bayeux messages on the wire (Bayeux 1.0 §3, §4; CometD 8 replies).

Decoding keeps absent and ``null`` apart (``data: null`` is a valid payload and is forwarded),
keeps ``id`` in its JSON type (a number stays a number in the reply: the CometD JS client
matches connect replies with ``===``) and keeps ``data`` as raw JSON so a broadcast is encoded
once, not once per subscriber.

A request body is one message or an array of messages.  A body that is not UTF-8 JSON, is nested
too deeply, is empty or is ``[]`` raises :class:`DecodeError` (HTTP 400, websocket close 1007).
msgspec does not check the UTF-8 of what it skips or keeps raw (unknown fields, ``data``), so the
whole body is checked first: an invalid byte must not reach other clients inside an event.
A single message that does not fit the schema becomes a :class:`Malformed` entry carrying its
Bayeux error, so the rest of the batch is still answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec
from msgspec import UNSET, Raw, UnsetType

__all__ = [
    "UNSET",
    "Advice",
    "DecodeError",
    "Event",
    "Malformed",
    "Message",
    "Raw",
    "Reply",
    "UnsetType",
    "decode_batch",
    "encode",
    "encode_frame",
    "join_batch",
]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Advice(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    rename={"max_interval": "maxInterval", "multiple_clients": "multiple-clients"},
):
    """Server advice (Bayeux §2.3.1, CometD ``maxInterval`` and ``multiple-clients``)."""

    reconnect: str | UnsetType = UNSET
    interval: int | UnsetType = UNSET
    timeout: int | UnsetType = UNSET
    max_interval: int | UnsetType = UNSET
    multiple_clients: bool | UnsetType = UNSET


MessageId = str | int


class Message(msgspec.Struct, frozen=True, kw_only=True, rename=_camel):
    """A message received from a client.  Unknown fields are ignored."""

    channel: str | UnsetType = UNSET
    id: MessageId | UnsetType = UNSET
    client_id: str | UnsetType = UNSET
    data: Raw | UnsetType = UNSET
    subscription: str | list[str] | UnsetType = UNSET
    ext: dict[str, Any] | UnsetType = UNSET
    advice: dict[str, Any] | UnsetType = UNSET
    version: str | UnsetType = UNSET
    minimum_version: str | UnsetType = UNSET
    supported_connection_types: list[str] | UnsetType = UNSET
    connection_type: str | UnsetType = UNSET


class Reply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename=_camel):
    """A message the server sends: a reply to a request, or a service response.

    ``channel`` is absent only when the request had no usable channel (``400::channel_missing``).
    """

    channel: str | UnsetType = UNSET
    id: MessageId | UnsetType = UNSET
    successful: bool | UnsetType = UNSET
    client_id: str | UnsetType = UNSET
    subscription: str | list[str] | UnsetType = UNSET
    error: str | UnsetType = UNSET
    advice: Advice | UnsetType = UNSET
    version: str | UnsetType = UNSET
    minimum_version: str | UnsetType = UNSET
    supported_connection_types: list[str] | UnsetType = UNSET
    ext: dict[str, Any] | UnsetType = UNSET
    data: Raw | UnsetType = UNSET


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A delivered message: ``channel`` and ``data`` only (no publisher ``id`` or ``clientId``)."""

    channel: str
    data: Raw
    ext: dict[str, Any] | UnsetType = UNSET


@dataclass(frozen=True, slots=True, kw_only=True)
class Malformed:
    """A batch entry that is not a valid message; answered with ``error``."""

    channel: str | None
    id: MessageId | None
    field: str | None


class DecodeError(ValueError):
    """The request body as a whole is not a Bayeux batch (HTTP 400)."""


_encoder: Final = msgspec.json.Encoder()
_message_decoder: Final = msgspec.json.Decoder(Message)
_batch_decoder: Final = msgspec.json.Decoder(list[Message])
_list_decoder: Final = msgspec.json.Decoder(list[Raw])
_any_decoder: Final = msgspec.json.Decoder()
_FIELD_RE: Final = re.compile(r"at `\$\.([A-Za-z_-]+)")


def encode(obj: Reply | Event | Advice | dict[str, Any] | list[Any] | Raw) -> bytes:
    return _encoder.encode(obj)


def encode_frame(channel: str, data: Any) -> bytes:
    """Encode a server-side publication once, for every subscriber."""
    return _encoder.encode(Event(channel=channel, data=Raw(_encoder.encode(data))))


def join_batch(parts: list[bytes]) -> bytes:
    """Join already-encoded messages into one JSON array."""
    return b"[" + b",".join(parts) + b"]"


def decode_batch(body: bytes | str, *, max_messages: int) -> list[Message | Malformed]:
    """Decode a request body (one message or an array) into messages, in order."""
    text = (
        body.strip() if isinstance(body, bytes) else body.strip().encode("utf-8", "surrogatepass")
    )
    if not text:
        raise DecodeError("empty body")
    if not text.isascii():  # the common case costs one scan; others are decoded once
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("body is not valid UTF-8") from None
    if text[:1] == b"[":
        # Nearly every request is a well-formed array: one pass decodes it.  Anything else
        # (a malformed entry, bad JSON, too many messages) takes the entry-by-entry path below.
        try:
            batch = _batch_decoder.decode(text)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            if batch and len(batch) <= max_messages:
                return cast("list[Message | Malformed]", batch)
    try:
        if text[:1] == b"[":
            items = _list_decoder.decode(text)
        elif text[:1] == b"{":
            items = _list_decoder.decode(b"[" + text + b"]")
            if len(items) != 1:
                raise DecodeError("invalid JSON: several values outside an array")
        else:
            raise DecodeError("body is neither a JSON object nor a JSON array")
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise DecodeError("JSON nested too deeply") from None
    if not items:
        raise DecodeError("empty batch")
    if len(items) > max_messages:
        raise DecodeError(f"batch of {len(items)} messages exceeds the limit of {max_messages}")
    return [_decode_one(item) for item in items]


def _decode_one(raw: Raw) -> Message | Malformed:
    try:
        return _message_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        if not isinstance(exc, msgspec.ValidationError):
            return Malformed(channel=None, id=None, field=None)
        match = _FIELD_RE.search(str(exc))  # ValidationError: which field was wrong
        field = match.group(1) if match else None
        try:
            loose = _any_decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            return Malformed(channel=None, id=None, field=field)
        if not isinstance(loose, dict):
            return Malformed(channel=None, id=None, field=None)
        channel = loose.get("channel")
        ident = loose.get("id")
        return Malformed(
            channel=channel if isinstance(channel, str) else None,
            id=ident if isinstance(ident, str | int) and not isinstance(ident, bool) else None,
            field=field,
        )
