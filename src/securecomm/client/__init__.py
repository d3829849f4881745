"""A client of the relay and the custodians: signed calls (:mod:`.transport`), the flows
a person runs (:mod:`.flows`: send, inbox, read, unsend) and the keys they trust
(:mod:`.trust`)."""

from __future__ import annotations

from .transport import ServiceClient

__all__ = ["ServiceClient"]
