"""Pure Bayeux: messages, channels, errors, advice, session rules, meta handlers, extensions.

No IO, no clock, no logging: the gateway drives it.  Everything the gateway may use is named
here; it imports nothing else from this package.
"""

from protocol import errors
from protocol.actions import (
    Action,
    Connect,
    Disconnect,
    Handshake,
    Publish,
    RequestContext,
    Respond,
    Subscribe,
    Unsubscribe,
)
from protocol.channels import (
    ChannelInfo,
    ChannelKind,
    channel_kind,
    classify,
    expand,
    is_wildcard,
    matches,
    normalize,
)
from protocol.core import BayeuxCore
from protocol.errors import BayeuxError, ClientError, ErrorSpec, ServerError
from protocol.extensions import AckExtension, Extension, Pipeline, TimesyncExtension
from protocol.messages import (
    UNSET,
    Advice,
    DecodeError,
    Event,
    Malformed,
    Message,
    Raw,
    Reply,
    decode_batch,
    encode,
    encode_frame,
    join_batch,
)
from protocol.session import AckState, SessionRecord, Settings

__all__ = [
    "UNSET",
    "AckExtension",
    "AckState",
    "Action",
    "Advice",
    "BayeuxCore",
    "BayeuxError",
    "ChannelInfo",
    "ChannelKind",
    "ClientError",
    "Connect",
    "DecodeError",
    "Disconnect",
    "ErrorSpec",
    "Event",
    "Extension",
    "Handshake",
    "Malformed",
    "Message",
    "Pipeline",
    "Publish",
    "Raw",
    "Reply",
    "RequestContext",
    "Respond",
    "ServerError",
    "SessionRecord",
    "Settings",
    "Subscribe",
    "TimesyncExtension",
    "Unsubscribe",
    "channel_kind",
    "classify",
    "decode_batch",
    "encode",
    "encode_frame",
    "errors",
    "expand",
    "is_wildcard",
    "join_batch",
    "matches",
    "normalize",
]
