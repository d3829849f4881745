"""The client's flows: send, inbox, read, unsend (DESIGN.md, "Flows").

Send deposits one share with each custodian in parallel; unless all n take
theirs, the deposits made are withdrawn and nothing is posted. Read asks
every custodian in parallel under one deadline, checks each share against
the digest the sender signed as it arrives, and combines the first t good
ones; up to n - t custodians may be down, slow, refusing or lying. Nothing
is returned, so nothing can be written, unless every check passed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._encoding import b64decode
from ._files import write_atomic
from .client import ServiceClient
from .config import Settings
from .envelope import Envelope, Policy, Receipt, prepare
from .errors import (
    FormatError,
    KeyChangedError,
    QuorumError,
    SecureCommError,
    ServiceError,
    ShareError,
    SignatureError,
)
from .home import KnownKeys
from .identity import Identity, PublicIdentity
from .protocol import DepositRequest, Release
from .shares import Share

__all__ = ["ReadResult", "SendResult", "inbox", "read", "send", "unsend"]

#: Called with a stage name, units done and units in all, for progress displays.
Progress = Callable[[str, int, int], None]
#: Called with one line a person should see (a custodian skipped, a key pinned).
Warn = Callable[[str], None]


def _quiet(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class SendResult:
    message_id: str
    ciphertext_digest: str
    relay_digest: str
    receipts: tuple[Receipt, ...]


@dataclass(frozen=True)
class ReadResult:
    plaintext: bytes = field(repr=False)
    sender: PublicIdentity
    used: tuple[str, ...]
    skipped: dict[str, str]


def _custodian_key(settings: Settings, known: KnownKeys, name: str) -> PublicIdentity:
    """The pinned key of custodian ``name``, checked against what the custodian presents."""
    pinned = known.require(name)
    url = settings.custodian(name).url
    with ServiceClient(url, name, timeout=5.0) as client:
        answer = client.request("GET", "/v1/identity", sign=False).json()
    presented = PublicIdentity.from_json(answer.get("identity"), field=f"{name} identity")
    known.check(presented)  # raises KeyChangedError with both fingerprints
    presented.verify(
        b64decode(answer.get("signature"), field="signature", length=64),
        "identity",
        answer["identity"],
    )
    return pinned


def _directory_entry(settings: Settings, name: str) -> Any:
    with ServiceClient(settings.server_url, "relay", timeout=5.0) as relay:
        return relay.request("GET", f"/api/v1/directory/{name}", sign=False).json()


def _recipient_key(
    settings: Settings,
    known: KnownKeys,
    name: str,
    warn: Warn,
    fetched: Future[Any] | None = None,
) -> PublicIdentity:
    """A pinned contact; an unknown one is looked up in the relay's directory and pinned.

    ``fetched``, if given, is that look-up already under way.
    """
    pinned = known.get(name)
    try:
        entry = fetched.result() if fetched is not None else _directory_entry(settings, name)
    except ServiceError as exc:
        if pinned is not None and exc.code in {"not_found", "unreachable"}:
            return pinned
        raise
    listed = PublicIdentity.from_json(entry.get("identity"), field=f"directory entry {name}")
    known.check(listed)
    if known.pin(listed):
        known.save()
        warn(
            f"pinned {name}'s key from the relay's directory: {listed.short_fingerprint()}"
            " (compare it with them out of band)"
        )
    return known.require(name)


def _parallel(
    tasks: dict[str, Callable[[], Any]],
    deadline: float,
    enough: Callable[[dict[str, Any]], bool] = lambda _: False,
    grace: float = 0.0,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run tasks in threads; return results and failure reasons by name.

    Stops waiting at ``deadline`` seconds, or ``grace`` seconds after
    ``enough(results)`` first holds (so late answers are still looked at).
    A task still running at the deadline is reported as having timed out.
    """
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, len(tasks)))
    futures: dict[Future[Any], str] = {pool.submit(task): name for name, task in tasks.items()}
    end = time.monotonic() + deadline
    pending = set(futures)
    satisfied = False
    try:
        while pending:
            if not satisfied and enough(results):
                satisfied = True
                end = min(end, time.monotonic() + grace)
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for future in done:
                name = futures[future]
                try:
                    results[name] = future.result()
                except ServiceError as exc:
                    failures[name] = exc.reason
                except SecureCommError as exc:
                    failures[name] = str(exc)
                except Exception as exc:  # a lying service must cost a share, not the read
                    failures[name] = f"unusable answer ({type(exc).__name__})"
        if not enough(results):
            for future in pending:
                failures.setdefault(futures[future], f"no answer within {deadline:g} s")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results, failures


def send(
    settings: Settings,
    known: KnownKeys,
    sender: Identity,
    recipients: Sequence[str],
    message: bytes,
    *,
    threshold: int | None = None,
    policy: Policy | None = None,
    deadline: float = 30.0,
    progress: Progress = _quiet,
    warn: Warn = _quiet,
) -> SendResult:
    names = [c.name for c in settings.custodians]
    t = threshold or settings.threshold
    progress("checking keys", 0, len(names))
    # The relay's directory is asked while the custodians are: one round trip less. What
    # it answers is looked at, and pinned, only once every custodian has passed, as before.
    lookups = ThreadPoolExecutor(max_workers=1)
    try:
        entries = [lookups.submit(_directory_entry, settings, name) for name in recipients]
        keys, failures = _parallel(
            {name: functools.partial(_custodian_key, settings, known, name) for name in names},
            deadline,
        )
        if failures:
            raise ServiceError(
                "send",
                0,
                "custodians_unavailable",
                _list_failures("nothing was sent; these custodians could not be checked", failures),
            )
        try:
            readers = [
                _recipient_key(settings, known, name, warn, entry)
                for name, entry in zip(recipients, entries, strict=True)
            ]
        except KeyChangedError as exc:
            raise KeyChangedError(exc.name, exc.pinned, exc.seen, "nothing was sent") from None
    finally:
        lookups.shutdown(wait=True, cancel_futures=True)
    progress("encrypting", 0, len(message))
    policy = policy or Policy()
    draft = prepare(
        message,
        sender=sender.public,
        recipients=readers,
        custodians=[(name, keys[name].fingerprint) for name in names],
        threshold=t,
        policy=policy,
    )
    progress("encrypting", len(message), len(message))

    def deposit(index: int, name: str) -> Receipt:
        request = DepositRequest.for_draft(draft, index, keys[name], sender.public)
        with ServiceClient(settings.custodian(name).url, name, sender, timeout=deadline) as c:
            answer = c.request("POST", "/v1/deposits", body=request.to_json())
        receipt = Receipt.from_json(answer.json())
        receipt.verify(keys[name])
        if receipt.share_digest != draft.header.custodians[index].share_digest or (
            receipt.message_id != draft.header.message_id or receipt.index != index + 1
        ):
            raise SignatureError("its receipt is for another share")
        progress("depositing shares", 1, len(names))
        return receipt

    progress("depositing shares", 0, len(names))
    receipts, failures = _parallel(
        {name: functools.partial(deposit, i, name) for i, name in enumerate(names)},
        deadline,
    )
    if failures:
        withdrawn = _withdraw(settings, sender, receipts, draft.header.id)
        raise ServiceError(
            "send",
            0,
            "deposit_failed",
            _list_failures(
                f"nothing was posted ({withdrawn} deposit(s) withdrawn); these custodians did not"
                " take their share",
                failures,
            ),
        )
    envelope = draft.finish(sender, [receipts[name] for name in names])
    data = envelope.to_bytes()
    progress("uploading", 0, len(data))
    with ServiceClient(settings.server_url, "relay", sender, timeout=deadline) as relay:
        try:
            stored = relay.request("POST", "/api/v1/messages", raw=data, sign=False).json()
        except ServiceError:
            _withdraw(settings, sender, receipts, draft.header.id)
            raise
    progress("uploading", len(data), len(data))
    local_digest = hashlib.sha256(data).hexdigest()
    if stored.get("digest") != local_digest or stored.get("id") != envelope.id:
        # The answer was altered, or the relay lies: take everything back.
        _withdraw(settings, sender, receipts, draft.header.id)
        with ServiceClient(settings.server_url, "relay", sender, timeout=5) as relay:
            try:
                relay.request("DELETE", f"/api/v1/messages/{envelope.id}")
            except SecureCommError:
                pass
        raise ServiceError(
            "relay", 0, "bad_copy", "the relay's stored copy differs from what was sent"
        )
    return SendResult(
        envelope.id,
        hashlib.sha256(envelope.ciphertext).hexdigest(),
        stored["digest"],
        tuple(receipts[name] for name in names),
    )


def _withdraw(
    settings: Settings, sender: Identity, receipts: dict[str, Receipt], message_id: str
) -> int:
    """Best effort: destroy every deposit of the message, by ref where a receipt came back,
    by message id elsewhere (a deposit whose answer was lost). Returns how many went."""
    done = 0
    for custodian in settings.custodians:
        name = custodian.name
        receipt = receipts.get(name)
        target = f"/v1/deposits/{receipt.ref}" if receipt else "/v1/deposits"
        params = None if receipt else {"message_id": message_id}
        try:
            with ServiceClient(custodian.url, name, sender, timeout=5) as c:
                c.request("DELETE", target, params=params)
            done += 1
        except SecureCommError:
            pass
    return done


def _list_failures(headline: str, failures: dict[str, str]) -> str:
    return (
        headline + ":\n" + "\n".join(f"  {name}: {why}" for name, why in sorted(failures.items()))
    )


def inbox(settings: Settings, reader: Identity) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    after = ""
    with ServiceClient(settings.server_url, "relay", reader) as relay:
        while True:
            params = {"limit": "100"} | ({"after": after} if after else {})
            page = relay.request("GET", "/api/v1/inbox", params=params).json()
            messages.extend(page["messages"])
            if not page["next"]:
                return messages
            after = page["next"]


def _pending_path(settings: Settings, reader: Identity) -> Path:
    return settings.home / "users" / f"{reader.name}.pending.json"


def _load_pending(path: Path) -> dict[str, dict[str, str]]:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read(
    settings: Settings,
    known: KnownKeys,
    reader: Identity,
    message_id: str,
    *,
    deadline: float = 15.0,
    progress: Progress = _quiet,
    warn: Warn = _quiet,
) -> ReadResult:
    progress("fetching", 0, 1)
    with ServiceClient(settings.server_url, "relay", reader, timeout=deadline) as relay:
        data = relay.request("GET", f"/api/v1/messages/{message_id}").content
    progress("fetching", 1, 1)
    try:
        envelope = Envelope.from_bytes(data)
    except FormatError as exc:
        raise SignatureError(
            f"the relay's copy of message {message_id} is malformed (altered on the way?): {exc}"
        ) from None
    if envelope.id != message_id:
        raise SignatureError(f"the relay answered with message {envelope.id}, not {message_id}")
    sender = envelope.header.sender
    known.check(sender)
    pinned_sender = known.get(sender.name)
    if pinned_sender is None:
        warn(
            f"{sender.name} is not in your known keys: the signature proves integrity, not who"
            f" sent it (fingerprint {sender.short_fingerprint()})"
        )
    names = [slot.name for slot in envelope.header.custodians]
    keys = {name: known.require(name) for name in names}
    envelope.verify(pinned_sender, keys, recipient=reader.public)
    t = envelope.header.threshold
    pending_path = _pending_path(settings, reader)
    pending = _load_pending(pending_path).get(message_id, {})
    new_pending: dict[str, str] = {}

    def collect(name: str) -> Share:
        url = settings.custodian(name).url
        with ServiceClient(url, name, reader, timeout=deadline) as client:
            if name in pending:
                answer = client.request("GET", f"/v1/releases/{pending[name]}")
            else:
                answer = client.request(
                    "POST", "/v1/releases", body={"v": 1, "message_id": message_id}
                )
        if answer.status_code == 202:
            release_id = answer.json()["release_id"]
            new_pending[name] = release_id
            raise ServiceError(
                name, 202, "pending", f"waiting for the operator's approval (release {release_id})"
            )
        share = Release.from_json(answer.json()).open(reader, keys[name])
        if share.index != names.index(name) + 1 or share.split_id != envelope.header.message_id:
            raise ShareError(f"custodian {name!r}: released a share of another message")
        envelope.check_share(name, share)  # the sender's signed digest
        progress("collecting shares", 1, t)
        return share

    def enough(results: dict[str, Any]) -> bool:
        return len(results) >= t

    progress("collecting shares", 0, t)
    # Once t good shares are in, late answers get a moment, so a lying custodian is
    # named even when honest ones were faster.
    good, failures = _parallel(
        {name: functools.partial(collect, name) for name in names},
        deadline,
        enough,
        grace=min(1.0, deadline),
    )
    stored = _load_pending(pending_path)
    updated = dict(stored)
    if new_pending:
        updated[message_id] = {**pending, **new_pending}
    else:
        updated.pop(message_id, None)
    if updated != stored:
        write_atomic(pending_path, json.dumps(updated, sort_keys=True).encode(), private=True)
    for name, why in sorted(failures.items()):
        if len(good) >= t:
            warn(f"custodian {name} skipped: {why}")
    if len(good) < t:
        raise QuorumError(
            _list_failures(
                f"{len(good)} good share(s) of the {t} needed; nothing was decrypted", failures
            )
        )
    chosen = dict(sorted(good.items(), key=lambda item: names.index(item[0]))[:t])
    plaintext = envelope.open(chosen)
    return ReadResult(plaintext, sender, tuple(chosen), failures)


def unsend(settings: Settings, sender: Identity, message_id: str) -> list[str]:
    """Destroy every deposit of a message and remove it from the relay; return what failed."""
    with ServiceClient(settings.server_url, "relay", sender) as relay:
        envelope = Envelope.from_bytes(
            relay.request("GET", f"/api/v1/messages/{message_id}").content
        )
        if envelope.header.sender.fingerprint != sender.public.fingerprint:
            raise SignatureError(f"message {message_id} was not sent by {sender.name}")
        failed = []
        for receipt in envelope.receipts:
            try:
                with ServiceClient(
                    settings.custodian(receipt.custodian).url, receipt.custodian, sender
                ) as custodian:
                    custodian.request("DELETE", f"/v1/deposits/{receipt.ref}")
            except SecureCommError as exc:
                failed.append(f"{receipt.custodian}: {exc}")
        relay.request("DELETE", f"/api/v1/messages/{message_id}")
    return failed
