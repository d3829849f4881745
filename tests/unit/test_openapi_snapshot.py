"""The services' OpenAPI documents, held to the copies in tests/unit/snapshots/.

Moving code must not change the contract: a change to a document shows here as a
failing test, and is made on purpose by rewriting the snapshot with
SECURECOMM_UPDATE_OPENAPI_SNAPSHOT=1 (and reviewing its diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from securecomm.custodian import openapi as custodian_openapi
from securecomm.relay import openapi as relay_openapi

SNAPSHOTS = Path(__file__).with_name("snapshots")


def _text(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.mark.parametrize(
    ("name", "document"),
    [("relay", relay_openapi.DOCUMENT), ("custodian", custodian_openapi.DOCUMENT)],
)
def test_the_openapi_document_is_the_snapshot(name: str, document: dict[str, Any]) -> None:
    path = SNAPSHOTS / f"openapi-{name}.json"
    if os.environ.get("SECURECOMM_UPDATE_OPENAPI_SNAPSHOT") == "1":
        path.write_text(_text(document), "utf-8")
    assert _text(document) == path.read_text("utf-8"), (
        f"{name}'s OpenAPI document changed; if on purpose, run with"
        " SECURECOMM_UPDATE_OPENAPI_SNAPSHOT=1 and review the diff"
    )
