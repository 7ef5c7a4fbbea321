"""rayeval.transport (installed from the top-level `transport/` folder)."""

if __name__ != "rayeval.transport":  # imported as a generic top-level module from a checkout
    raise ImportError("import rayeval.transport, not transport: this folder installs only as part of rayeval")

from .client import Client, ClientStats
from .errors import (
    ProtocolError,
    RemoteError,
    RequestAbandoned,
    RequestTimeout,
    TransportClosed,
    TransportError,
)
from .protocol import ERROR, PING, PONG, REPLY, REQUEST, VERSION, Envelope, decode, encode
from .server import Server, ServerStats

__all__ = [
    "Server",
    "ServerStats",
    "Client",
    "ClientStats",
    "Envelope",
    "encode",
    "decode",
    "VERSION",
    "REQUEST",
    "REPLY",
    "ERROR",
    "PING",
    "PONG",
    "TransportError",
    "ProtocolError",
    "RequestTimeout",
    "RemoteError",
    "RequestAbandoned",
    "TransportClosed",
]
