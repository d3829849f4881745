"""A client of the relay and the custodians: signed calls (:mod:`.transport`), the flows
a person runs (:mod:`.flows`: send, inbox, read, unsend) and the keys they trust
(:mod:`.trust`). Import the module you use: ``securecomm.client.trust`` needs no HTTP
library, and a command that only reads its pinned keys does not load one."""

from __future__ import annotations

import sys

# httpx imports its own command-line tool (click, rich, pygments) whenever they are
# installed: a third of a `securecomm send` process's start (issue 16). Marking that module
# absent makes httpx take its documented fallback; nothing here runs httpx's command line.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
