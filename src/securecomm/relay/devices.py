"""The relay's part in devices (spec/sessions.md section 3): the directory publishes each
person's delegations, and whether each was revoked; it keeps the person's X25519 key,
sealed to the device, until the device fetches it. Revocations are posted to every
service alike (``service.app``); here they mark the published list too."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, jsonify
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .. import canonical, hpke
from .._encoding import b64decode, b64encode
from .._fields import fingerprint_hex
from ..codes import Code
from ..devices import Delegation
from ..httpsig import SKEW_SECONDS
from ..identity import check_name
from ..service.app import ApiError, authenticate, read_json, require_own_key, transaction
from .tables import devices, directory, revocations

__all__ = ["bp"]

bp = Blueprint("devices", __name__)

#: The person's X25519 key (32 bytes), HPKE-sealed.
SEALED_KEY_BYTES = 32 + hpke.OVERHEAD_BYTES


def _db() -> Engine:
    engine: Engine = current_app.extensions["securecomm"]["engine"]
    return engine


def _registered(conn: sa.Connection, name: str) -> str:
    """The fingerprint the directory holds for ``name`` (404 if none)."""
    found = conn.execute(sa.select(directory.c.fingerprint).where(directory.c.name == name))
    row = found.first()
    if row is None:
        raise ApiError(404, Code.NOT_FOUND, f"no directory entry for {name!r}")
    return str(row.fingerprint)


def _revocation(conn: sa.Connection, person_fp: str, device_fp: str) -> Any:
    return conn.execute(
        sa.select(revocations.c.statement).where(
            revocations.c.person_fp == person_fp, revocations.c.device_fp == device_fp
        )
    ).first()


@bp.put("/api/v1/directory/<name>/devices/<device>")
def put_device(name: str, device: str) -> tuple[Response, int]:
    """A person adds (or renews) a device: its delegation and the key sealed to it."""
    caller = require_own_key()
    check_name(name, field="name")
    device = fingerprint_hex(device, "device")
    body = read_json()
    if set(body) != {"v", "delegation", "sealed_key"} or body["v"] != 1 or body["v"] is True:
        raise ApiError(
            400, Code.BAD_FIELD, 'expected {"v": 1, "delegation": {...}, "sealed_key": "..."}'
        )
    delegation = Delegation.from_json(body["delegation"])
    delegation.verify()
    sealed = b64decode(body["sealed_key"], field="sealed_key", length=SEALED_KEY_BYTES)
    if not delegation.person.same_keys(caller) or delegation.person.name != name:
        raise ApiError(403, Code.NOT_YOUR_KEY, f"a delegation for {name} is added by {name}")
    if delegation.device.fingerprint_hex != device:
        raise ApiError(400, Code.BAD_FIELD, "the delegation is for another device than the path's")
    now = int(time.time())
    if delegation.expires <= now:
        raise ApiError(400, Code.BAD_FIELD, "the delegation has expired already")
    if delegation.issued > now + SKEW_SECONDS:
        raise ApiError(400, Code.BAD_FIELD, "the delegation says it is issued in the future")
    values = {
        "name": name,
        "delegation": canonical.dumps(delegation.to_json()).decode(),
        "sealed_key": b64encode(sealed),
        "expires": delegation.expires,
        "updated_at": now,
    }
    key = {"person_fp": caller.fingerprint_hex, "device_fp": device}
    try:
        return _add(name, key, values)
    except IntegrityError:
        # Added at the same moment by another request: decided again, against its row.
        return _add(name, key, values)


def _add(name: str, key: dict[str, str], values: dict[str, Any]) -> tuple[Response, int]:
    with transaction() as conn:
        person_fp, device = key["person_fp"], key["device_fp"]
        if _registered(conn, name) != person_fp:
            raise ApiError(403, Code.NOT_YOUR_KEY, f"{name} is registered with another key")
        if _revocation(conn, person_fp, device) is not None:
            raise ApiError(
                409, Code.DEVICE_REVOKED, "this device was revoked; a revoked key stays revoked"
            )
        updated = conn.execute(
            devices.update()
            .where(devices.c.person_fp == person_fp, devices.c.device_fp == device)
            .values(**values)
        )
        if updated.rowcount == 0:
            conn.execute(devices.insert().values(**key, **values))
    return jsonify({"device": device, "expires": values["expires"]}), (
        200 if updated.rowcount else 201
    )


@bp.get("/api/v1/directory/<name>/devices")
def get_devices(name: str) -> Response:
    """The devices of ``name``'s registered key: each delegation, and its revocation if
    there is one. Public, as the directory is; the sealed keys are not listed."""
    check_name(name, field="name")
    with _db().connect() as conn:
        person_fp = _registered(conn, name)
        rows = conn.execute(
            sa.select(devices.c.delegation, revocations.c.statement)
            .select_from(
                devices.outerjoin(
                    revocations,
                    sa.and_(
                        revocations.c.person_fp == devices.c.person_fp,
                        revocations.c.device_fp == devices.c.device_fp,
                    ),
                )
            )
            .where(devices.c.person_fp == person_fp)
            .order_by(devices.c.updated_at, devices.c.device_fp)
        ).all()
    return jsonify(
        {
            "devices": [
                {
                    "delegation": canonical.loads(row.delegation.encode()),
                    "revocation": canonical.loads(row.statement.encode())
                    if row.statement
                    else None,
                }
                for row in rows
            ]
        }
    )


@bp.get("/api/v1/directory/<name>/devices/<device>/key")
def get_device_key(name: str, device: str) -> Response:
    """What a device fetches once, signed by its own key: its delegation and the person's
    X25519 key sealed to it. Refused once revoked or expired."""
    authenticate()
    check_name(name, field="name")
    device = fingerprint_hex(device, "device")
    if g.signer.fingerprint_hex != device:
        raise ApiError(403, Code.NOT_YOUR_KEY, "a device's key is fetched by that device")
    with _db().connect() as conn:
        person_fp = _registered(conn, name)
        row = conn.execute(
            sa.select(devices.c.delegation, devices.c.sealed_key, devices.c.expires).where(
                devices.c.person_fp == person_fp, devices.c.device_fp == device
            )
        ).first()
        revoked = _revocation(conn, person_fp, device) is not None
    if row is None:
        raise ApiError(404, Code.NOT_FOUND, f"{name} has not added this device")
    if revoked:
        raise ApiError(403, Code.DEVICE_REVOKED, f"{name} revoked this device")
    if row.expires <= int(time.time()):
        raise ApiError(403, Code.DELEGATION_EXPIRED, f"{name}'s delegation to this device expired")
    return jsonify(
        {"delegation": canonical.loads(row.delegation.encode()), "sealed_key": row.sealed_key}
    )
