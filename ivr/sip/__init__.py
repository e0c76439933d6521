"""Sans-I/O SIP (RFC 3261) for the bridge; `ivr.sip.transport` is the asyncio adapter (not imported here)."""

from ivr.sip.events import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    IncomingCall,
    InfoDtmf,
    Outgoing,
    Peer,
    ReferStatus,
    Registered,
    ReInvite,
    SipEvent,
)
from ivr.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    SipVersionError,
    StreamFramer,
    make_response,
    parse_message,
    serialize,
)
from ivr.sip.useragent import UserAgent

__all__ = [
    "CallCancelled",
    "CallEnded",
    "CallEstablished",
    "Headers",
    "IncomingCall",
    "InfoDtmf",
    "Outgoing",
    "Peer",
    "ReInvite",
    "ReferStatus",
    "Registered",
    "Request",
    "Response",
    "SipEvent",
    "SipParseError",
    "SipVersionError",
    "StreamFramer",
    "UserAgent",
    "make_response",
    "parse_message",
    "serialize",
]
