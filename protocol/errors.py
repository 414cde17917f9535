"""One table of Bayeux errors, by blame.

The strings are CometD 5+'s literal ones (``code:args:text``, Bayeux §2.8) so that clients that
string-match keep working.  Each error knows whose fault it is:

* :class:`ClientError` — the message was wrong (bad field, unknown session, denied by policy).
* :class:`ServerError` — we could not do what a valid message asked.

Both carry the advice to send back.  ``402::session_unknown`` carries
``{reconnect: handshake, interval: 0}`` only on handshake and connect replies (CometD rule): on
a publish or subscribe reply it would make faye re-handshake in the middle of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import Advice

__all__ = [
    "BayeuxError",
    "ClientError",
    "ErrorSpec",
    "ServerError",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorSpec:
    """A row of the error table."""

    code: int
    text: str
    client_fault: bool = True

    def error(self, *args: str, advice: Advice | None = None) -> BayeuxError:
        cls = ClientError if self.client_fault else ServerError
        return cls(self, args, advice)


class BayeuxError(Exception):
    """An error that is answered with ``successful: false`` and a Bayeux error string."""

    def __init__(self, spec: ErrorSpec, args: tuple[str, ...] = (), advice: Advice | None = None):
        self.spec = spec
        self.error_args = args
        self.advice = advice
        super().__init__(self.wire)

    @property
    def wire(self) -> str:
        return f"{self.spec.code}:{','.join(self.error_args)}:{self.spec.text}"

    @property
    def code(self) -> int:
        return self.spec.code


class ClientError(BayeuxError):
    """The client's fault."""


class ServerError(BayeuxError):
    """Ours."""


# Reason strings for the middle part of 403 errors (CometD).
DENIED_BY_POLICY = "denied_by_security_policy"

# --- the table -------------------------------------------------------------------------------
SESSION_UNKNOWN = ErrorSpec(code=402, text="session_unknown")
HANDSHAKE_DENIED = ErrorSpec(code=403, text="handshake_denied")
CONNECTION_TYPES_UNSUPPORTED = ErrorSpec(code=301, text="connection_types_unsupported")
SUBSCRIPTION_MISSING = ErrorSpec(code=403, text="subscription_missing")
SUBSCRIPTION_INVALID = ErrorSpec(code=403, text="subscription_invalid")
SUBSCRIBE_DENIED = ErrorSpec(code=403, text="subscribe_denied")
CREATE_DENIED = ErrorSpec(code=403, text="create_denied")
CHANNEL_CREATE_DENIED = ErrorSpec(code=403, text="channel_create_denied")
PUBLISH_DENIED = ErrorSpec(code=403, text="publish_denied")
CHANNEL_MISSING = ErrorSpec(code=400, text="channel_missing")
CHANNEL_INVALID = ErrorSpec(code=405, text="channel_invalid")
MESSAGE_ID_INVALID = ErrorSpec(code=405, text="message_id_invalid")
MESSAGE_INVALID = ErrorSpec(code=400, text="message_invalid")
DATA_MISSING = ErrorSpec(code=400, text="data_missing")
MESSAGE_DELETED = ErrorSpec(code=404, text="message_deleted")
CLIENT_ID_MISSING = ErrorSpec(code=402, text="client_id_missing")
SERVICE_FAILED = ErrorSpec(code=500, text="service_failed", client_fault=False)
ENGINE_FAILED = ErrorSpec(code=500, text="engine_failed", client_fault=False)
MULTIPLE_CLIENTS = ErrorSpec(code=402, text="multiple_clients")

# Wire field → error for a field of the wrong type (used by the decoder).
FIELD_ERRORS: dict[str, ErrorSpec] = {
    "channel": CHANNEL_INVALID,
    "id": MESSAGE_ID_INVALID,
    "clientId": SESSION_UNKNOWN,
    "subscription": SUBSCRIPTION_INVALID,
}
