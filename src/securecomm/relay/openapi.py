"""The relay's OpenAPI document (filled in with the endpoints' schemas)."""

from __future__ import annotations

from typing import Any

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "securecomm relay", "version": "1"},
    "paths": {},
}
