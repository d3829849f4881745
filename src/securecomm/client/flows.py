"""The client's flows: send, inbox, read, unsend (DESIGN.md, "Flows").

Send deposits one share with each custodian in parallel; unless all n take
theirs, the deposits made are withdrawn and nothing is posted. Read asks
every custodian in parallel under one deadline, checks each share against
the digest the sender signed as it arrives, and combines the first t good
ones; up to n - t custodians may be down, slow, refusing or lying. Nothing
is returned, so nothing can be written, unless every check passed.

Every answer of the relay is checked to be signed by its pinned key for the
request it answers (spec §11.4): a forged "no messages", a hidden inbox
entry, a swapped directory key or a forged posting receipt is refused
before anything of it is used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._encoding import b64decode
from .._files import locked, write_atomic
from ..codes import Code
from ..config import Settings
from ..envelope import (
    Draft,
    Envelope,
    Policy,
    Receipt,
    StreamDraft,
    StreamEnvelope,
    document_from_bytes,
    prepare,
    prepare_stream,
    utc_text,
)
from ..errors import (
    AnswerSignatureError,
    DeviceCannotSignError,
    FormatError,
    IdentityError,
    InterruptedOperationError,
    KeyChangedError,
    ParameterError,
    QuorumError,
    SecureCommError,
    ServiceError,
    ShareError,
    SignatureError,
)
from ..identity import SIGNATURE_LENGTH_BYTES, Keys, PublicIdentity
from ..protocol import DepositRequest, Release
from ..shares import Share
from . import streamed
from .transport import ServiceClient, answer_json
from .trust import KnownKeys

__all__ = [
    "RELAY",
    "ReadResult",
    "SendResult",
    "forget",
    "inbox",
    "read",
    "relay_key",
    "send",
    "send_file",
    "unsend",
    "withdraw_requests",
]

#: The name the relay's key is pinned under, and the audience of requests to it.
RELAY = "relay"

#: Called with a stage name, units done and units in all, for progress displays.
Progress = Callable[[str, int, int], None]
#: Called with one line a person should see (a custodian skipped, a key pinned).
Warn = Callable[[str], None]


#: How often a wait looks whether it was cancelled.
_POLL_SECONDS = 0.05


#: Envelopes up to this size are sent without asking the relay for its limit first (a
#: relay set lower refuses the post, and the deposits are withdrawn as for any refusal).
_ANY_RELAY_TAKES = 1024 * 1024


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
    filename: str | None = None  # the sender's name for it as a file, checked (spec 7.10)
    #: A version 2 message is not held: it was written to this file (``plaintext`` is empty).
    saved: Path | None = None
    #: Releases still waiting for an operator that this read did not need, by custodian:
    #: give them to :func:`withdraw_requests` once the plaintext is safe.
    unneeded: dict[str, str] = field(default_factory=dict)
    #: The custodians that may keep, for a while, a release they gave this reader once
    #: (spec section 12.2): :func:`withdraw_requests` tells them it arrived.
    given_once: tuple[str, ...] = ()


#: How long a key, once checked against the pinned one, counts as checked in this process:
#: a custodian's as it presents it, a recipient's as the relay's directory lists it. The
#: checks find a key that changed before anything goes out; the deposit is sealed to the
#: pinned custodian key and its receipt checked with it, and the header names the pinned
#: recipient fingerprint, in any case. So a check per minute, not per message, loses no
#: protection (issue 16).
KEY_CHECK_SECONDS = 60.0
_checked_lock = threading.Lock()
_checked: dict[tuple[str, str, str, bytes], float] = {}


def _checked_recently(key: tuple[str, str, str, bytes]) -> bool:
    with _checked_lock:
        return time.monotonic() - _checked.get(key, -KEY_CHECK_SECONDS) < KEY_CHECK_SECONDS


def _mark_checked(key: tuple[str, str, str, bytes]) -> None:
    with _checked_lock:
        _checked[key] = time.monotonic()


def _custodian_key(settings: Settings, known: KnownKeys, name: str) -> PublicIdentity:
    """The pinned key of custodian ``name``, checked against what the custodian presents
    (a send asks only for those not checked within :data:`KEY_CHECK_SECONDS`:
    :func:`_custodian_key_if_fresh`)."""
    pinned = known.require(name)
    url = settings.custodian(name).url
    with ServiceClient(url, name, timeout=5.0, trust=settings.tls_ca) as client:
        answer = answer_json(client.request("GET", "/v1/identity", sign=False))
    presented = PublicIdentity.from_json(answer.get("identity"), field=f"{name} identity")
    known.check(presented)  # raises KeyChangedError with both fingerprints
    presented.verify(
        b64decode(answer.get("signature"), field="signature", length=SIGNATURE_LENGTH_BYTES),
        "identity",
        answer["identity"],
    )
    _mark_checked(_custodian_check(settings, name, pinned))
    return pinned


def _custodian_key_if_fresh(
    settings: Settings, known: KnownKeys, name: str
) -> PublicIdentity | None:
    """The pinned key of custodian ``name`` if it was checked within the minute."""
    pinned = known.get(name)
    if pinned is None or not _checked_recently(_custodian_check(settings, name, pinned)):
        return None
    return pinned


def _custodian_check(
    settings: Settings, name: str, pinned: PublicIdentity
) -> tuple[str, str, str, bytes]:
    return ("custodian", settings.custodian(name).url, name, pinned.fingerprint)


def relay_key(settings: Settings, known: KnownKeys | None = None) -> PublicIdentity:
    """The relay's pinned key (pinned when the home joined the network file): every answer
    of the relay must be signed with it."""
    known = KnownKeys.load(settings.home) if known is None else known
    key = known.get(RELAY)
    if key is None:
        error = IdentityError(
            f"no key is pinned for the relay in {known.path}, so its answers cannot be"
            " checked; nothing was done"
        )
        error.hint = "join the network: securecomm join network.json (it pins the relay's key)"
        raise error
    return key


def _relay(
    settings: Settings,
    identity: Keys | None = None,
    *,
    timeout: float = 10.0,
    key: PublicIdentity | None = None,
) -> ServiceClient:
    """The relay, whose every answer must be signed by its pinned key (``key``, or the one
    pinned in the settings' home)."""
    return ServiceClient(
        settings.server_url,
        RELAY,
        identity,
        timeout=timeout,
        trust=settings.tls_ca,
        answers=key or relay_key(settings),
    )


def _directory_entry(settings: Settings, name: str, key: PublicIdentity | None = None) -> Any:
    with _relay(settings, timeout=5.0, key=key) as relay:
        return answer_json(relay.request("GET", f"/api/v1/directory/{name}", sign=False))


def listed(settings: Settings, name: str) -> PublicIdentity | None:
    """The key the relay's directory lists under ``name``; None if no one registered it.

    What the relay says is not trusted for being said: a client pins it and compares it
    with later answers, and a person compares its fingerprint out of band."""
    try:
        entry = _directory_entry(settings, name)
    except ServiceError as exc:
        if exc.code == Code.NOT_FOUND:
            return None
        raise
    return PublicIdentity.from_json(entry.get("identity"), field=f"directory entry {name}")


def refuse_name(settings: Settings, name: str) -> None:
    """Ask the relay whether a person may register ``name`` (spec §14.6) before a key is
    made for it: a ServiceError (``reserved_name``, ``lookalike_name``) if not. A relay
    too old to say lets it through, and its answer to the registration decides."""
    try:
        with _relay(settings, timeout=5.0) as relay:
            answer_json(relay.request("GET", f"/api/v1/names/{name}", sign=False))
    except ServiceError as exc:
        if exc.code != Code.NOT_FOUND:
            raise


def register(settings: Settings, identity: Keys) -> bool:
    """List ``identity``'s public keys in the relay's directory under its name; True if
    the entry is new, False if it was there already. A name another key holds is refused
    by the relay (HTTP 409)."""
    with _relay(settings, identity) as relay:
        answer = relay.request(
            "PUT",
            f"/api/v1/directory/{identity.name}",
            body={"v": 1, "identity": identity.public.to_json()},
        )
    return answer.status_code == 201


def _lookup_error(lookups: _Gather, name: str) -> BaseException | None:
    """Why the directory gave no entry for ``name``: its error, or the wait's end while the
    lookup still ran (a relay that hangs), which counts as unreachable."""
    if name in lookups.errors:
        return lookups.errors[name]
    if name in lookups.failures:
        return ServiceError("relay", 0, Code.UNREACHABLE, lookups.failures[name])
    return None


def _recipient_key(
    known: KnownKeys,
    name: str,
    warn: Warn,
    entry: Any,
    error: BaseException | None,
) -> PublicIdentity:
    """A pinned contact; an unknown one is taken from its directory ``entry`` and pinned.

    ``entry`` and ``error`` are what the relay's directory answered for ``name``.
    """
    pinned = known.get(name)
    if error is not None:
        if pinned is not None and getattr(error, "code", None) in {
            Code.NOT_FOUND,
            Code.UNREACHABLE,
        }:
            return pinned
        if getattr(error, "code", None) == Code.NOT_FOUND:
            unknown = ServiceError(
                "relay",
                404,
                Code.NOT_FOUND,
                f"no one named {name!r} is registered; nothing was sent",
            )
            unknown.hint = (
                f"{name} registers with `securecomm register {name}` on their own machine"
                " (after `securecomm join` with the network file), or from the web client"
                " (Identity, Register); then compare fingerprints with them"
            )
            raise unknown
        if isinstance(error, ServiceError):
            unasked = ServiceError(
                error.service,
                error.status,
                error.code,
                f"{name}'s key could not be looked up in the directory ({error.message});"
                " nothing was sent",
            )
            unasked.hint = error.hint
            raise unasked from None
        raise error
    listed = PublicIdentity.from_json(entry.get("identity"), field=f"directory entry {name}")
    known.check(listed)
    if known.pin(listed):
        known.save()
        warn(
            f"pinned {name}'s key from the relay's directory: {listed.short_fingerprint()}"
            " (compare it with them out of band)"
        )
    return known.require(name)


class _Workers:
    """Daemon threads that outlive one gather, so a send or a read hands its calls to
    threads already running. Starting a thread waits until it runs, which under the GIL
    costs up to a switch interval (5 ms) while other threads work (issue 16).

    Daemon threads, not concurrent.futures: a service that never answers must not hold
    the process at exit (a pool's threads are joined then, for as long as their timeout).
    There are as many as calls ever ran at once; an idle one waits on the queue.
    """

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, task: Callable[[], None]) -> None:
        with self._lock:
            start = not self._idle
            if not start:
                self._idle -= 1
        self._tasks.put(task)
        if start:
            threading.Thread(target=self._loop, name="securecomm-call", daemon=True).start()

    def _loop(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                task()
            finally:
                with self._lock:
                    self._idle += 1


_workers = _Workers()


class _Gather:
    """Run tasks at once, each in a worker thread (:class:`_Workers`), and collect what
    they return by name."""

    def __init__(self, tasks: dict[str, Callable[[], Any]]) -> None:
        self.results: dict[str, Any] = {}
        self.failures: dict[str, str] = {}
        self.errors: dict[str, BaseException] = {}
        self.outstanding = set(tasks)
        self._started = time.monotonic()
        self._done: queue.SimpleQueue[tuple[str, Any, BaseException | None]] = queue.SimpleQueue()
        for name, task in tasks.items():
            _workers.submit(functools.partial(self._run, name, task))

    def _run(self, name: str, task: Callable[[], Any]) -> None:
        try:
            self._done.put((name, task(), None))
        except BaseException as exc:  # reported by name in the calling thread
            self._done.put((name, None, exc))

    def wait(
        self,
        deadline: float,
        enough: Callable[[dict[str, Any]], bool] = lambda _: False,
        grace: float = 0.0,
        cancelled: Callable[[], bool] = lambda: False,
        needed: int = 0,
    ) -> bool:
        """Collect answers until all are in, ``deadline`` seconds from the start, or ``grace``
        seconds after ``enough(results)`` first holds (late answers are still looked at, so
        a lying service is named) or after fewer than ``needed`` results could still come
        (waiting longer could not change the outcome; the others' answers get the grace
        too, so each is said). Returns False if ``cancelled()`` turned true first.

        A task still running when the wait ends is a failure, "no answer within ...".
        """
        end = self._started + deadline
        satisfied = hopeless = False
        while self.outstanding:
            if cancelled():
                return False
            if not satisfied:
                hopeless = len(self.results) + len(self.outstanding) < needed
                if hopeless or enough(self.results):
                    satisfied = True
                    end = min(end, time.monotonic() + grace)
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            try:
                name, value, error = self._done.get(timeout=min(remaining, _POLL_SECONDS))
            except queue.Empty:
                continue
            self.outstanding.discard(name)
            if error is None:
                self.results[name] = value
                continue
            self.errors[name] = error
            if isinstance(error, ServiceError):
                self.failures[name] = error.reason
            elif isinstance(error, SecureCommError):
                self.failures[name] = str(error)
            elif isinstance(error, Exception):  # a lying service costs a share, not the read
                self.failures[name] = f"unusable answer ({type(error).__name__})"
            else:
                raise error
        waited = time.monotonic() - self._started
        for name in self.outstanding:
            self.failures[name] = f"no answer within {waited:.1f} s" + (
                ", not waited for: the others' answers decided it" if hopeless else ""
            )
        return True

    def settle(self, seconds: float) -> None:
        """Give tasks still running up to ``seconds`` more (after a cancel), quietly."""
        end = time.monotonic() + seconds
        while self.outstanding and (remaining := end - time.monotonic()) > 0:
            try:
                name, value, error = self._done.get(timeout=remaining)
            except queue.Empty:
                return
            self.outstanding.discard(name)
            if error is None:
                self.results[name] = value


def _parallel(
    tasks: dict[str, Callable[[], Any]],
    deadline: float,
    enough: Callable[[dict[str, Any]], bool] = lambda _: False,
    grace: float = 0.0,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run tasks at once; return results and failure reasons by name (see :class:`_Gather`)."""
    gather = _Gather(tasks)
    gather.wait(deadline, enough, grace)
    return gather.results, gather.failures


def send(
    settings: Settings,
    known: KnownKeys,
    sender: Keys,
    recipients: Sequence[str],
    message: bytes,
    *,
    threshold: int | None = None,
    policy: Policy | None = None,
    deadline: float = 30.0,
    progress: Progress = _quiet,
    warn: Warn = _quiet,
    cancelled: Callable[[], bool] = lambda: False,
    filename: str | None = None,
) -> SendResult:
    """Send ``message``: all or nothing.

    Four steps: check every custodian's key and each recipient's, encrypt and split,
    deposit one share with each custodian, post the envelope. If ``cancelled()`` turns
    true before the relay has the envelope, every deposit made is withdrawn (and the
    relay's copy deleted, if the post was under way) and
    :class:`InterruptedOperationError` says so; once the relay has answered, the send
    completes.
    """
    run = _Send(settings, known, sender, deadline, progress, warn, cancelled)
    keys, readers = run.check_keys(known, recipients)
    progress("encrypting", 0, len(message))
    draft = prepare(
        message,
        sender=sender.public,
        recipients=readers,
        custodians=[(name, keys[name].fingerprint) for name in run.names],
        threshold=settings.threshold if threshold is None else threshold,
        policy=policy or Policy(),
        filename=filename,
    )
    progress("encrypting", len(message), len(message))
    run.check_size(draft)
    receipts = run.deposit(draft, keys)
    envelope = draft.finish(sender, [receipts[name] for name in run.names])
    stored = run.post(envelope, receipts)
    return SendResult(
        envelope.id,
        hashlib.sha256(envelope.ciphertext).hexdigest(),
        stored["digest"],
        tuple(receipts[name] for name in run.names),
    )


def send_file(
    settings: Settings,
    known: KnownKeys,
    sender: Keys,
    recipients: Sequence[str],
    path: str | os.PathLike[str],
    *,
    threshold: int | None = None,
    policy: Policy | None = None,
    deadline: float = 30.0,
    progress: Progress = _quiet,
    warn: Warn = _quiet,
    cancelled: Callable[[], bool] = lambda: False,
    filename: str | None = None,
) -> SendResult:
    """Send the file at ``path`` as a version 2 message: all or nothing, as
    :func:`flows.send`, and resumable: interrupted while uploading, the same call again goes
    on from the relay's last acknowledged chunk (the draft is kept, sealed to ``sender``)."""
    source = Path(path)
    run = _Send(settings, known, sender, deadline, progress, warn, cancelled)
    key = relay_key(settings, known)

    def relay(timeout: float | None) -> ServiceClient:
        return _relay(settings, sender, timeout=timeout or deadline, key=key)

    keys, readers = run.check_keys(known, recipients)
    threshold = settings.threshold if threshold is None else threshold
    with streamed.open_file(source) as handle:
        size = os.fstat(handle.fileno()).st_size
        kept = streamed.KeptDrafts(settings, sender)
        for stale, why in kept.stale():
            kept.drop(stale)
            streamed.abandon(relay, stale)
            warn(
                f"the upload of message {stale} begun earlier is dropped, with the relay's"
                f" part: {why}, so it cannot go on"
            )
        ticket = streamed.ticket(source, handle, list(recipients), threshold, filename)
        policy = policy or Policy()
        draft = kept.take(ticket, keys, policy)
        if draft is None:
            draft = prepare_stream(
                size,
                sender=sender.public,
                recipients=readers,
                custodians=[(name, keys[name].fingerprint) for name in run.names],
                threshold=threshold,
                policy=policy,
                filename=filename,
            )
            kept.put(ticket, draft)
        else:
            expires = draft.header.policy.expires
            warn(
                f"going on with the upload of message {draft.header.id} begun earlier"
                + (
                    ""
                    if expires is None
                    else f"; it expires at {utc_text(expires)}, counted from its beginning"
                )
            )
        upload = streamed.Upload(relay, draft, handle, progress, cancelled, warn)
        try:
            received = upload.open()
            digest = upload.send(received)
        except ServiceError as exc:
            if exc.code in (Code.TOO_LARGE, Code.QUOTA_EXCEEDED, Code.DUPLICATE_ID):
                kept.drop(draft.header.id)
                upload.abandon()
            raise
        except ParameterError as exc:  # the file changed while it was read: no going on
            kept.drop(draft.header.id)
            upload.abandon()
            dropped = ParameterError(
                f"{exc}; nothing was sent (no share was deposited), and what the relay"
                " took of it is dropped"
            )
            dropped.hint = "send the file again once it no longer changes"
            raise dropped from None
    receipts = run.deposit(draft, keys)
    document = draft.finish(sender, [receipts[name] for name in run.names], digest)
    try:
        stored = run.post(document, receipts)
    except SecureCommError:
        kept.drop(draft.header.id)  # taken back: the next send begins afresh
        raise
    kept.drop(draft.header.id)
    for other in kept.others(ticket, draft.header.id):
        # Begun under another policy and left for a send that asked for it: this file has
        # now gone to these people, and the relay's part of it would hold quota for a day.
        kept.drop(other)
        streamed.abandon(relay, other)
        warn(
            f"the upload of message {other} begun earlier, of this file to the same people"
            " under another policy, is dropped with the relay's part"
        )
    return SendResult(
        document.id,
        document.payload_digest.hex(),
        stored["digest"],
        tuple(receipts[name] for name in run.names),
    )


@dataclass
class _Send:
    """The steps of one :func:`send`, each undoing what came before it when it fails."""

    settings: Settings
    known: KnownKeys
    sender: Keys
    deadline: float
    progress: Progress
    warn: Warn
    cancelled: Callable[[], bool]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.settings.custodians]

    def _stop_if_cancelled(self) -> None:
        if self.cancelled():
            raise InterruptedOperationError(
                "interrupted: nothing was sent (no share had been deposited)"
            )

    def check_keys(
        self, known: KnownKeys, recipients: Sequence[str]
    ) -> tuple[dict[str, PublicIdentity], list[PublicIdentity]]:
        """Every custodian's key as pinned and presented, and each recipient's."""
        if not self.sender.signer.same_keys(self.sender.public):
            # A device (spec/sessions.md section 3): said before any share is deposited.
            raise DeviceCannotSignError(
                f"this is a device of {self.sender.name}: it reads, lists and unsends, but an"
                f" envelope is signed by {self.sender.name}'s own key; nothing was sent"
            )
        parties = sorted(set(recipients) & self.settings.party_names())
        if parties:
            # Its key is pinned here (the network's), so a lookup would find it: sealed to
            # a custodian, the message would be that custodian's to read with two others'
            # shares, which the rule of t custodians is there to prevent.
            refused = ParameterError(
                f"{', '.join(parties)}: the name of the relay or a custodian of this network,"
                " not a person's; nothing was sent"
            )
            refused.hint = "send to people; `securecomm contacts` lists those pinned here"
            raise refused
        self.progress("checking keys", 0, len(self.names))
        # The relay's directory is asked while the custodians are: one round trip less.
        # What it answers is looked at, and pinned, only once every custodian has passed.
        settings = self.settings
        key = relay_key(settings, known)

        def listing(name: str) -> tuple[str, str, str, bytes] | None:
            pinned = known.get(name)
            if pinned is None:
                return None
            return ("directory", settings.server_url, name, pinned.fingerprint)

        fresh = {n for n in recipients if (k := listing(n)) is not None and _checked_recently(k)}
        lookups = _Gather(
            {
                name: functools.partial(_directory_entry, settings, name, key)
                for name in recipients
                if name not in fresh
            }
        )
        # Keys checked within the minute need no call, nor a thread to make none in.
        checked = {
            name: pinned
            for name in self.names
            if (pinned := _custodian_key_if_fresh(settings, known, name)) is not None
        }
        checks = _Gather(
            {
                name: functools.partial(_custodian_key, settings, known, name)
                for name in self.names
                if name not in checked
            }
        )
        if not checks.wait(self.deadline, cancelled=self.cancelled) or not lookups.wait(
            self.deadline, cancelled=self.cancelled
        ):
            self._stop_if_cancelled()
        if checks.failures:
            raise _unavailable(
                "send",
                "custodians_unavailable",
                "nothing was sent; these custodians could not be checked",
                checks,
            )
        try:
            readers = [
                known.require(name)
                if name in fresh
                else _recipient_key(
                    known, name, self.warn, lookups.results.get(name), _lookup_error(lookups, name)
                )
                for name in recipients
            ]
        except KeyChangedError as exc:
            raise KeyChangedError(exc.name, exc.pinned, exc.seen, "nothing was sent") from None
        except AnswerSignatureError as exc:
            raise AnswerSignatureError(exc.service, f"{exc.reason}; nothing was sent") from None
        for name in lookups.results:  # the directory listed the pinned key (or it was pinned)
            if (listed := listing(name)) is not None:
                _mark_checked(listed)
        return {name: checked.get(name) or checks.results[name] for name in self.names}, readers

    def check_size(self, draft: Draft) -> None:
        """Refuse, before any deposit, an envelope the relay would refuse."""
        size = draft.envelope_size()
        limit = self._relay_limit() if size > _ANY_RELAY_TAKES else size
        if size > limit:
            error = ParameterError(
                f"the envelope would be {size:,} bytes, over the relay's limit of"
                f" {limit:,} bytes; nothing was sent (no share was deposited)"
            )
            error.hint = (
                "save it to a file and give --file PATH: a file is sent as a stream, of any"
                " size; as TEXT or from standard input a message goes in one envelope,"
                " limited by the relay's max_envelope_bytes (in the [server] section of its"
                " securecomm.toml), and grows by about a third in its base64"
            )
            raise error
        self._stop_if_cancelled()

    def _relay_limit(self) -> int:
        """What the relay says it takes (its page's configuration); this home's own
        setting if it does not say."""
        try:
            with _relay(self.settings, timeout=5.0) as relay:
                said = answer_json(relay.request("GET", "/api/v1/web-config", sign=False))
            limit = said.get("max_envelope_bytes") if isinstance(said, dict) else None
        except AnswerSignatureError as exc:
            raise AnswerSignatureError(exc.service, f"{exc.reason}; nothing was sent") from None
        except (SecureCommError, ValueError):
            limit = None
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            return limit
        return self.settings.max_envelope_bytes

    def deposit(
        self, draft: Draft | StreamDraft, keys: dict[str, PublicIdentity]
    ) -> dict[str, Receipt]:
        """One share with each custodian at once; all of them take theirs, or none keeps it."""
        names = self.names

        def deposit_one(index: int, name: str) -> Receipt:
            request = DepositRequest.for_draft(draft, index, keys[name], self.sender.public)
            url = self.settings.custodian(name).url
            with ServiceClient(
                url, name, self.sender, timeout=self.deadline, trust=self.settings.tls_ca
            ) as c:
                answer = c.request("POST", "/v1/deposits", body=request.to_json())
            receipt = Receipt.from_json(answer_json(answer))
            receipt.verify(keys[name])
            if receipt.share_digest != draft.header.custodians[index].share_digest or (
                receipt.message_id != draft.header.message_id or receipt.index != index + 1
            ):
                raise SignatureError("its receipt is for another share")
            self.progress("depositing shares", 1, len(names))
            return receipt

        self.progress("depositing shares", 0, len(names))
        deposits = _Gather(
            {name: functools.partial(deposit_one, i, name) for i, name in enumerate(names)}
        )
        if not deposits.wait(self.deadline, cancelled=self.cancelled):
            self.warn("interrupted: withdrawing the shares deposited so far ...")
            deposits.settle(_SETTLE_SECONDS)
            withdrawn = _withdraw(self.settings, self.sender, deposits.results, draft.header.id)
            raise InterruptedOperationError(
                f"interrupted: nothing was sent; {_withdrawal(withdrawn, deposits.outstanding)}"
            )
        if deposits.failures:
            withdrawn = _withdraw(self.settings, self.sender, deposits.results, draft.header.id)
            raise _unavailable(
                "send",
                "deposit_failed",
                f"nothing was posted ({_withdrawal(withdrawn, set())}); these custodians did"
                " not take their share",
                deposits,
            )
        return deposits.results

    def post(self, envelope: Envelope | StreamEnvelope, receipts: dict[str, Receipt]) -> Any:
        """Post the signed envelope, and check the relay stored exactly it. A version 2
        envelope's stream is uploaded already; taking the message back drops it too."""
        data = envelope.to_bytes()
        settings, sender = self.settings, self.sender
        streamed = isinstance(envelope, StreamEnvelope)

        def take_back() -> list[str]:
            _delete_from_relay(settings, sender, envelope.id, upload=streamed)
            return _withdraw(settings, sender, receipts, envelope.id)

        key = relay_key(settings, self.known)

        def post_it() -> Any:
            with _relay(settings, sender, timeout=self.deadline, key=key) as r:
                return answer_json(r.request("POST", "/api/v1/messages", raw=data, sign=False))

        self.progress("posting", 0, len(data))
        posting = _Gather({"relay": post_it})
        if not posting.wait(self.deadline, cancelled=self.cancelled):
            self.warn("interrupted: taking back the message and its shares ...")
            posting.settle(_SETTLE_SECONDS)
            withdrawn = take_back()
            raise InterruptedOperationError(
                "interrupted: nothing was sent; the relay's copy was deleted and"
                f" {_withdrawal(withdrawn, set())}"
            )
        answered = posting.errors.get("relay")
        if isinstance(answered, AnswerSignatureError):
            # Not the relay's word: it may well have stored the envelope. Take everything back.
            withdrawn = take_back()
            raise AnswerSignatureError(
                "relay",
                f"{answered.reason}; nothing was sent (the relay's copy was deleted and"
                f" {_withdrawal(withdrawn, set())})",
            )
        if "relay" not in posting.results:
            reason = getattr(answered, "message", posting.failures.get("relay", "no answer"))
            status = getattr(answered, "status", 0)
            code = getattr(answered, "code", Code.UNREACHABLE)
            # The relay's own refusal stored nothing. Anything else (no answer in time, a
            # link that failed, a proxy's 5xx): it may have stored the envelope, or store it
            # still; a request under way gets a moment, then everything is taken back.
            refused = 0 < status < 500
            deleted = True
            if not refused:
                posting.settle(_SETTLE_SECONDS)
            if streamed or not refused:
                deleted = _delete_from_relay(settings, sender, envelope.id, upload=streamed)
            withdrawal = _withdrawal(_withdraw(settings, sender, receipts, envelope.id), set())
            if refused:
                told = f"the envelope was not stored: {reason}; nothing was sent ({withdrawal})"
            else:
                what = "was deleted and" if deleted else "could not be deleted;"
                told = (
                    f"{reason}; the relay may have stored the envelope, so nothing was sent:"
                    f" its copy, if any, {what} {withdrawal}"
                )
            failure = ServiceError("relay", status, code, told)
            failure.hint = _RELAY_HINTS.get(code)
            if not (refused or deleted):
                failure.hint = (
                    f"`securecomm unsend {envelope.id} --as {sender.name}` removes a copy the"
                    " relay kept (useless without its shares)"
                )
            raise failure
        stored = posting.results["relay"]
        self.progress("posting", len(data), len(data))
        if stored.get("digest") != hashlib.sha256(data).hexdigest() or (
            stored.get("id") != envelope.id
        ):
            # The answer was altered, or the relay lies: take everything back.
            take_back()
            raise ServiceError(
                "relay", 0, "bad_copy", "the relay's stored copy differs from what was sent"
            )
        return stored


#: How long an interrupted send waits for requests already under way, so that what they
#: made can be taken back.
_SETTLE_SECONDS = 5.0

_RELAY_HINTS: dict[str, str] = {
    Code.TOO_LARGE: "the relay's limit is max_envelope_bytes in the [server] section of its"
    " securecomm.toml",
    Code.UNREACHABLE: "is `securecomm up` running? (or point SECURECOMM_SERVER_URL at the relay)",
}


def _unavailable(service: str, code: str, headline: str, gather: _Gather) -> ServiceError:
    """One error listing every failure of ``gather``, with a hint when nothing answered."""
    error = ServiceError(service, 0, code, _list_failures(headline, gather.failures))
    codes = {getattr(e, "code", None) for e in gather.errors.values()}
    if gather.failures and not gather.results and codes <= {Code.UNREACHABLE}:
        error.hint = (
            "no custodian answered: is `securecomm up` running?"
            " (or point SECURECOMM_CUSTODIAN_<NAME>_URL at each custodian)"
        )
    return error


def _withdrawal(withdrawn: list[str], in_flight: set[str]) -> str:
    text = f"{len(withdrawn)} deposit(s) withdrawn" + (
        f" ({', '.join(withdrawn)})" if withdrawn else ""
    )
    in_flight = in_flight - set(withdrawn)
    if in_flight:
        text += (
            f"; {', '.join(sorted(in_flight))} had not answered and may keep a share, useless"
            " without the envelope, which was never posted"
        )
    return text


def _delete_from_relay(
    settings: Settings, sender: Keys, message_id: str, *, upload: bool = False
) -> bool:
    """Best effort: remove a message from the relay (absent is as good as deleted), and with
    ``upload``, its stream's upload if the message was never stored. Whether the relay
    said the message is gone (deleted, or never there)."""
    paths = [f"/api/v1/messages/{message_id}"] + (
        [f"/api/v1/uploads/{message_id}"] if upload else []
    )
    gone = True
    with _relay(settings, sender, timeout=5) as relay:
        for path in paths:
            try:
                relay.request("DELETE", path)
            except SecureCommError as exc:  # (a 404 is the relay's signed word: no such message)
                if path == paths[0] and getattr(exc, "status", None) != 404:
                    gone = False
    return gone


def _withdraw(
    settings: Settings, sender: Keys, receipts: dict[str, Receipt], message_id: str
) -> list[str]:
    """Best effort, all custodians at once: destroy every deposit of the message, by ref
    where a receipt came back, by message id elsewhere (a deposit whose answer was lost).
    Returns the names of the custodians that destroyed one."""
    by_id: _Target = ("/v1/deposits", {"message_id": message_id})
    targets: dict[str, _Target] = {
        c.name: (f"/v1/deposits/{receipts[c.name].ref}", None) if c.name in receipts else by_id
        for c in settings.custodians
    }
    return sorted(_destroy_deposits(settings, sender, targets, timeout=5, deadline=6.0).results)


def _list_failures(headline: str, failures: dict[str, str]) -> str:
    return (
        headline + ":\n" + "\n".join(f"  {name}: {why}" for name, why in sorted(failures.items()))
    )


def inbox(settings: Settings, reader: Keys) -> list[dict[str, Any]]:
    """The relay's inbox of ``reader``, each item with ``"seen"``: what reads of it here
    found (``read_at``, or ``destroyed_at`` when its shares are gone), or None."""
    messages: list[dict[str, Any]] = []
    after = ""
    seen = _load_state(_history_path(settings, reader))
    with _relay(settings, reader) as relay:
        while True:
            params = {"limit": "100"} | ({"after": after} if after else {})
            page = answer_json(relay.request("GET", "/api/v1/inbox", params=params))
            messages.extend(item | {"seen": seen.get(item["id"])} for item in page["messages"])
            if not page["next"]:
                return messages
            after = page["next"]


def _history_path(settings: Settings, reader: Keys) -> Path:
    return settings.home / "users" / f"{reader.name}.read.json"


def _note(settings: Settings, reader: Keys, message_id: str, **entry: int) -> None:
    """Remember what a read of a message found, for ``inbox`` to show."""
    path = _history_path(settings, reader)
    stored = _load_state(path)
    stored[message_id] = entry
    write_atomic(path, json.dumps(stored, sort_keys=True).encode(), private=True)


def _pending_path(settings: Settings, reader: Keys) -> Path:
    return settings.home / "users" / f"{reader.name}.pending.json"


@dataclass
class _Kept:
    """What a read of one message that could not finish keeps for the next (spec §12.2):
    the ids of releases waiting for an operator, and the release answers already
    collected, as their custodians signed them (each share sealed to the reader)."""

    pending: dict[str, str] = field(default_factory=dict)
    released: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"pending": self.pending, "released": self.released}

    @classmethod
    def from_json(cls, value: object) -> _Kept:
        if not isinstance(value, dict):
            return cls()
        if set(value) <= {"pending", "released"}:
            pending, released = value.get("pending", {}), value.get("released", {})
        else:  # the shape before releases were kept: {custodian: release id}
            pending, released = value, {}
        return cls(
            {k: v for k, v in pending.items() if isinstance(v, str)}
            if isinstance(pending, dict)
            else {},
            {k: v for k, v in released.items() if isinstance(v, dict)}
            if isinstance(released, dict)
            else {},
        )


@dataclass
class _Partials:
    """The partial files that reads of one message left (users/NAME.partials.json): the
    plaintext opened so far of a streamed message, each beside the output that read was
    given. A read to another place, or none at all, leaves the earlier one behind, hidden
    (a dot file) and holding plaintext; each is recorded as it is opened, and removed once
    the message is read whole elsewhere or deleted from the inbox."""

    settings: Settings
    reader: Keys
    message_id: str
    now: Path | None = None  # this read's

    @property
    def _path(self) -> Path:
        return self.settings.home / "users" / f"{self.reader.name}.partials.json"

    def saving_to(self, save_to: streamed.SaveTo) -> streamed.SaveTo:
        """``save_to``, noting the partial file of the output it chooses before it opens."""

        def chosen(filename: str | None) -> Path:
            out = save_to(filename)
            self.now = streamed.partial_path(out, self.message_id).absolute()
            self._change(lambda paths: sorted({*paths, str(self.now)}))
            return out

        return chosen

    def drop(self, warn: Warn, *, because: str) -> None:
        """Remove the partial files recorded for the message, other than this read's (which
        became the output), naming each; forget them."""
        for name in self._change(lambda _paths: []):
            path = Path(name)
            if path == self.now or not _is_partial_of(path, self.message_id):
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                warn(f"could not remove {path}, an earlier read's partial file: {exc.strerror}")
                continue
            warn(f"removed {path}, an earlier read's partial file, as {because}")

    def _change(self, change: Callable[[list[str]], list[str]]) -> list[str]:
        """Replace the message's list by ``change`` of it; the list before."""
        return _paths(_change_state(self._path, self.message_id, lambda s: change(_paths(s))))


def _paths(stored: object) -> list[str]:
    """A message's recorded partial files, as its entry in the state file holds them."""
    return [p for p in stored if isinstance(p, str)] if isinstance(stored, list) else []


def _is_partial_of(path: Path, message_id: str) -> bool:
    """Whether ``path`` is a regular file named as a read of ``message_id`` names its
    partial file (never a link, nor anything the record was edited to name)."""
    if not (path.name.startswith(".") and path.name.endswith(f".{message_id[:16]}.part")):
        return False
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _load_state(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _save_kept(path: Path, message_id: str, kept: _Kept) -> None:
    """Make ``kept`` what is kept for ``message_id`` (nothing, if it is empty)."""
    _change_kept(path, message_id, lambda _: kept)


def _change_kept(path: Path, message_id: str, change: Callable[[_Kept], _Kept]) -> None:
    def entry(stored: object) -> dict[str, Any] | None:
        kept = change(_Kept.from_json(stored))
        return kept.to_json() if kept.pending or kept.released else None

    _change_state(path, message_id, entry)


def _change_state(path: Path, key: str, change: Callable[[Any], Any]) -> Any:
    """Under the file's lock, make the entry ``key`` of the JSON object at ``path``
    ``change`` of what it is (None if absent); an empty result removes it. The file is
    written (whole, private) only if that changes it. Returns the entry before."""
    with locked(path):
        stored = _load_state(path)
        updated = dict(stored)
        before = stored.get(key)
        after = change(before)
        if after:
            updated[key] = after
        else:
            updated.pop(key, None)
        if updated != stored:
            write_atomic(path, json.dumps(updated, sort_keys=True).encode(), private=True)
    return before


def read(
    settings: Settings,
    known: KnownKeys,
    reader: Keys,
    message_id: str,
    *,
    deadline: float = 15.0,
    progress: Progress = _quiet,
    warn: Warn = _quiet,
    cancelled: Callable[[], bool] = lambda: False,
    forget: bool = True,
    save_to: Callable[[str | None], Path] | None = None,
) -> ReadResult:
    """Read message ``message_id`` as ``reader``: every check passes or nothing is returned.

    Releases collected by a read that ends short of t good shares (or is cancelled) are
    kept for the next read of the message, which uses them instead of asking their
    custodians again (spec §12.2). With ``forget=False`` they are kept after a
    successful read too, until :func:`forget` (call it once the plaintext is safe).

    A version 2 message is written, as it is opened, to the file ``save_to`` names once the
    sender's file name is known (``streamed.download``); the result's ``saved`` says where.
    Without ``save_to`` such a message is refused (:class:`ParameterError`) before any
    custodian is asked.
    """
    progress("fetching", 0, 1)
    with _relay(settings, reader, timeout=deadline, key=relay_key(settings, known)) as relay:
        data = _relays_copy(
            relay,
            message_id,
            "check the id with `securecomm inbox`; a message its sender unsent, or that you"
            " deleted, is gone",
        )
    progress("fetching", 1, 1)
    try:
        envelope = document_from_bytes(data)
    except FormatError as exc:
        raise SignatureError(
            f"the relay's copy of message {message_id} is malformed (altered on the way?): {exc}"
        ) from None
    if envelope.id != message_id:
        raise SignatureError(f"the relay answered with message {envelope.id}, not {message_id}")
    if isinstance(envelope, StreamEnvelope) and save_to is None:
        raise ParameterError(
            f"message {message_id} is a stream of {envelope.length:,} bytes: it is written"
            " to a file, and none was given"
        )
    sender = envelope.header.sender
    known.check(sender)
    pinned_sender = known.get(sender.name)
    if pinned_sender is None:
        warn(
            f"{sender.name} is not in your known keys: the signature proves integrity, not who"
            f" sent it (fingerprint {sender.short_fingerprint()}); compare it with"
            f" {sender.name}, then pin it: securecomm contacts verify {sender.name}"
            f" '{sender.short_fingerprint()}' --as {reader.name}"
        )
    names = [slot.name for slot in envelope.header.custodians]
    keys = {name: known.require(name) for name in names}
    envelope.verify(pinned_sender, keys, recipient=reader.public)
    t = envelope.header.threshold
    state_path = _pending_path(settings, reader)
    kept = _Kept.from_json(_load_state(state_path).get(message_id))
    now = _Kept()  # what this read ends up keeping, filled in by the threads
    # A release that is not given twice (burnt after reading, or approved by an operator) is
    # written down as it arrives, not when the read ends: a read killed in between (kill -9,
    # power) must not lose it. Other releases are asked for again at no cost.
    policy = envelope.header.policy
    keep_each = policy.gives_once
    writing = threading.Lock()
    read_and_forgotten = False  # once set, a late answer is not kept: the message was read

    def keep(name: str, *, released: Any = None, release_id: str | None = None) -> None:
        if not keep_each and released is not None:
            return

        def add(stored: _Kept) -> _Kept:
            if released is not None:
                stored.released[name] = released
                stored.pending.pop(name, None)
            elif release_id is not None and name not in stored.released:
                stored.pending[name] = release_id
            return stored

        with writing:
            if not read_and_forgotten:
                _change_kept(state_path, message_id, add)

    def settle(final: _Kept, *, forgotten: bool = False) -> None:
        """What this read keeps when it ends; late answers are added to it (unless the
        message was read and what was kept forgotten)."""
        nonlocal read_and_forgotten
        with writing:
            read_and_forgotten = forgotten
            _save_kept(state_path, message_id, final)

    def check(name: str, answer: Any) -> Share:
        share = Release.from_json(answer).open(reader, keys[name])
        if share.index != names.index(name) + 1 or share.split_id != envelope.header.message_id:
            raise ShareError(f"custodian {name!r}: released a share of another message")
        envelope.check_share(name, share)  # the sender's signed digest
        return share

    def collect(name: str) -> Share:
        if name in kept.released:
            try:
                share = check(name, kept.released[name])
            except (SecureCommError, KeyError, TypeError, ValueError):
                warn(f"custodian {name}: the release kept from an earlier read fails its checks")
            else:
                now.released[name] = kept.released[name]
                progress("collecting shares", 1, t)
                return share
        url = settings.custodian(name).url
        with ServiceClient(url, name, reader, timeout=deadline, trust=settings.tls_ca) as client:
            if name in kept.pending:
                answer = client.request("GET", f"/v1/releases/{kept.pending[name]}")
            else:
                answer = client.request(
                    "POST", "/v1/releases", body={"v": 1, "message_id": message_id}
                )
        if answer.status_code == 202:
            release_id = answer_json(answer)["release_id"]
            now.pending[name] = release_id
            keep(name, release_id=release_id)
            raise ServiceError(
                name,
                202,
                Code.PENDING,
                f"waiting for the operator's approval (release {release_id})",
            )
        released = answer_json(answer)
        share = check(name, released)
        now.released[name] = released
        keep(name, released=released)
        progress("collecting shares", 1, t)
        return share

    def enough(results: dict[str, Any]) -> bool:
        return len(results) >= t

    progress("collecting shares", 0, t)
    # Once t good shares are in, late answers get a moment, so a lying custodian is
    # named even when honest ones were faster.
    gather = _Gather({name: functools.partial(collect, name) for name in names})
    # A read that can no longer get t shares (too many destroyed, refused or pending) does
    # not wait for the custodians that hang: their answers could not change that.
    finished = gather.wait(
        deadline, enough, grace=min(1.0, deadline), cancelled=cancelled, needed=t
    )
    # A release id stays worth asking again while its custodian could not be reached.
    for name, release_id in kept.pending.items():
        error = gather.errors.get(name)
        if name in gather.outstanding or getattr(error, "code", None) == Code.UNREACHABLE:
            now.pending.setdefault(name, release_id)
    good = gather.results
    if not finished or len(good) < t:
        settle(now)
        collected = len(now.released)
        keeping = (
            f"; the {collected} share(s) collected are kept, sealed to you, for the next read"
            if collected
            else ""
        )
        if not finished:
            raise InterruptedOperationError(f"interrupted: nothing was decrypted{keeping}")
        destroyed, denied, expired = (
            [n for n, e in gather.errors.items() if getattr(e, "code", "") == code]
            for code in (Code.DESTROYED, Code.DENIED, Code.EXPIRED)
        )
        headline = f"{len(good)} good share(s) of the {t} needed; nothing was decrypted{keeping}"
        # The shares that still exist, here or with a custodian; and of them, those this
        # reader can still be given (a denial is final, spec 12.2).
        left = (set(names) - set(destroyed)) | set(now.released)
        possible = len(left - (set(denied) - set(now.released)))
        if denied and possible < t:
            headline = (
                f"message {message_id} cannot be read by you: the operators of"
                f" {len(denied)} of its {len(names)} custodians denied you their share (a"
                f" denial is final), so at most {possible} of the {t} needed can be"
                f" released; nothing was decrypted{keeping}"
            )
        if len(left) < t:
            # Fewer than t shares exist any more, here or with a custodian: no read can succeed.
            _note(settings, reader, message_id, destroyed_at=int(time.time()))
            headline = (
                f"message {message_id} can no longer be read: {len(destroyed)} of its"
                f" {len(names)} custodians destroyed their share (burnt after reading, or"
                " unsent by its sender)"
            )
        expires = envelope.header.policy.expires
        # A custodian says "expired" by its own clock, past the expiry the sender signed.
        if expired and expires is not None:
            headline = (
                f"message {message_id} expired at {utc_text(expires)} (its sender's policy):"
                f" {len(expired)} of its {len(names)} custodians release its share no more;"
                " nothing was decrypted"
            )
        short = QuorumError(_list_failures(headline, gather.failures))
        if now.pending and possible >= t:
            short.hint = (
                f"{len(now.pending)} release(s) wait for their custodian's operator; read"
                " again once enough are approved"
            )
        elif denied and possible < t:
            short.hint = "if a denial was a mistake, ask the sender to send the message again"
            if now.pending:
                short.hint += (
                    f"; `securecomm delete {message_id} --as {reader.name}` takes it off"
                    f" your inbox and withdraws the {len(now.pending)} request(s) still"
                    " waiting for an operator"
                )
        if expired and expires is not None and (clock := int(time.time())) < expires:
            short.hint = (
                f"this machine's clock says {utc_text(clock)}, before that expiry: if it"
                " is behind, set it right (the custodians' clocks passed the expiry)"
            )
        raise short
    for name, why in sorted(gather.failures.items()):
        if name not in now.pending:  # (said by withdraw_requests)
            warn(f"custodian {name} skipped: {why}")
    # Every good share, not t of them: one the sender made off the polynomial is caught
    # (spec 7.7 step 7), whichever answered first.
    chosen = dict(sorted(good.items(), key=lambda item: names.index(item[0])))
    # Every custodian asked may have given its share (late answers too): each keeps that
    # release for this reader a while, unless told it arrived.
    given_once = tuple(n for n in names if n not in now.pending) if keep_each else ()
    if isinstance(envelope, StreamEnvelope):
        assert save_to is not None
        key = envelope.recover_key(chosen)
        relay_public = relay_key(settings, known)

        def relay_as_reader(timeout: float | None) -> ServiceClient:
            return _relay(settings, reader, timeout=timeout or deadline, key=relay_public)

        # Kept until the file is whole: a download that stops goes on without asking the
        # custodians again (a burn-after-reading share is released once).
        settle(now)
        partials = _Partials(settings, reader, message_id)
        try:
            saved, filename = streamed.download(
                relay_as_reader,
                envelope,
                key,
                partials.saving_to(save_to),
                progress=progress,
                cancelled=cancelled,
                warn=warn,
            )
        except InterruptedOperationError:
            kept_in = f"in {partials.now}" if partials.now else "beside the output"
            raise InterruptedOperationError(
                "interrupted: the message is not whole; what was opened of it is kept (mode"
                f" 0600) {kept_in}, with the shares, and the same read again goes on from"
                " there"
            ) from None
        partials.drop(warn, because="the message is now read whole")
        settle(_Kept() if forget else now, forgotten=forget)
        _note(settings, reader, message_id, read_at=int(time.time()))
        return ReadResult(
            b"",
            sender,
            tuple(chosen),
            gather.failures,
            filename,
            saved,
            dict(now.pending),
            given_once,
        )
    opened = envelope.open_named(chosen)
    settle(_Kept() if forget else now, forgotten=forget)
    _note(settings, reader, message_id, read_at=int(time.time()))
    return ReadResult(
        opened.content,
        sender,
        tuple(chosen),
        gather.failures,
        opened.filename,
        unneeded=dict(now.pending),
        given_once=given_once,
    )


#: The longest a read that succeeded waits to withdraw the requests it did not need.
_WITHDRAW_SECONDS = 3.0


def _custodian_delete(
    settings: Settings,
    keys: Keys,
    timeout: float,
    name: str,
    path: str,
    params: dict[str, str] | None = None,
) -> None:
    """DELETE ``path`` (with ``params``) at custodian ``name``, signed by ``keys``."""
    url = settings.custodian(name).url
    with ServiceClient(url, name, keys, timeout=timeout, trust=settings.tls_ca) as client:
        client.request("DELETE", path, params=params)


def withdraw_requests(
    settings: Settings,
    reader: Keys,
    pending: dict[str, str],
    *,
    warn: Warn = _quiet,
    seconds: float = _WITHDRAW_SECONDS,
    acknowledge: tuple[str, tuple[str, ...]] | None = None,
    deleted: bool = False,
) -> None:
    """Withdraw the releases still waiting for an operator that a read which succeeded did
    not need (its result's ``unneeded``; spec §12.2), so no operator is asked to approve
    them, and say so, custodian by custodian. One not withdrawn only stays on its operator's
    list, where approving it is harmless (its share would go to the reader who asked).

    ``acknowledge`` is (message id, the result's ``given_once``): those custodians are told
    the message arrived, so they delete the release they keep for the reader now rather
    than when its time is up; one that is not told says so. ``deleted``: the reader deleted
    the message (:func:`delete`) rather than read it, and the lines say that.
    """

    delete_at = functools.partial(_custodian_delete, settings, reader, seconds)
    tasks: dict[str, Callable[[], Any]] = {
        name: functools.partial(delete_at, name, f"/v1/releases/{rid}")
        for name, rid in pending.items()
    }
    told = {}
    if acknowledge is not None:
        message_id, names = acknowledge
        told = {f"ack {name}": name for name in names if name not in pending}
        asked = {"message_id": message_id}
        tasks.update(
            {
                key: functools.partial(delete_at, name, "/v1/releases", asked)
                for key, name in told.items()
            }
        )
    if tasks:
        withdrawing = _Gather(tasks)
        interrupted = None
        try:
            withdrawing.wait(seconds)
        except KeyboardInterrupt as exc:  # each one not confirmed is said, then the interrupt
            interrupted = exc
            for key in withdrawing.outstanding:
                withdrawing.failures[key] = "interrupted before its answer"
        what, why = (
            ("was deleted", "the message was deleted")
            if deleted
            else ("arrived", "this read did not need it")
        )
        for key, name in sorted(told.items()):
            if key not in withdrawing.results:
                warn(
                    f"custodian {name} may keep the release it gave you for up to an hour:"
                    f" telling it the message {what} failed ({withdrawing.failures[key]})"
                )
        for name, release_id in sorted(pending.items()):
            done = name in withdrawing.results
            warn(
                f"custodian {name}{'' if deleted else ' skipped'}: release {release_id}"
                " waited for its operator;"
                + (
                    f" withdrawn, as {why}"
                    if done
                    else f" its withdrawal failed ({withdrawing.failures[name]}): it may"
                    " stay on the operator's list"
                )
            )
        if interrupted is not None:
            raise interrupted


def forget(settings: Settings, reader: Keys, message_id: str) -> None:
    """Drop what reads of ``message_id`` kept (see :func:`read`)."""
    _save_kept(_pending_path(settings, reader), message_id, _Kept())


def _relays_copy(relay: ServiceClient, message_id: str, hint: str) -> bytes:
    """The relay's copy of a message, as it sent it, for the caller to parse; a 404 with
    ``hint``."""
    try:
        return relay.request("GET", f"/api/v1/messages/{message_id}").content
    except ServiceError as exc:
        if exc.code == Code.NOT_FOUND:
            exc.hint = hint
        raise


def delete(
    settings: Settings,
    reader: Keys,
    message_id: str,
    *,
    warn: Warn = _quiet,
    on_deleted: Callable[[], None] = lambda: None,
) -> None:
    """Remove a message from ``reader``'s inbox at the relay (a recipient's DELETE: the
    envelope goes once no recipient lists it), and what reads of it noted here. Its
    shares stay with the custodians, whose only the sender destroys (:func:`unsend`): a
    message ``reader`` sent is refused, as the relay would take its DELETE for an unsend
    that left every share in place.

    What earlier reads left with the custodians goes too (spec §12.2): requests still
    waiting for an operator are withdrawn, so none is approved for a message its reader
    deleted, and a custodian that gave a release kept here (a read that came up short)
    is told to drop the copy it keeps for the reader, as :func:`withdraw_requests` does.
    ``on_deleted`` is called once the message is gone, before those requests go out."""
    with _relay(settings, reader) as relay:
        envelope = document_from_bytes(
            _relays_copy(
                relay,
                message_id,
                "check the id with `securecomm inbox`; a message deleted already is gone",
            )
        )
        if envelope.header.sender.fingerprint == reader.public.fingerprint:
            refused = ParameterError(
                f"{reader.name} sent message {message_id}: deleting it would leave its shares"
                " with the custodians; nothing was deleted"
            )
            refused.hint = (
                "unsend it, which destroys its shares too:"
                f" securecomm unsend {message_id} --as {reader.name}"
            )
            raise refused
        relay.request("DELETE", f"/api/v1/messages/{message_id}")
    kept = _Kept.from_json(_load_state(_pending_path(settings, reader)).get(message_id))
    forget(settings, reader, message_id)
    _Partials(settings, reader, message_id).drop(warn, because="the message was deleted")
    history = _history_path(settings, reader)
    noted = _load_state(history)
    if noted.pop(message_id, None) is not None:
        write_atomic(history, json.dumps(noted, sort_keys=True).encode(), private=True)
    on_deleted()
    gave = tuple(kept.released) if envelope.header.policy.gives_once else ()
    withdraw_requests(
        settings, reader, kept.pending, warn=warn, acknowledge=(message_id, gave), deleted=True
    )


#: A request's path and query.
_Target = tuple[str, dict[str, str] | None]


def _destroy_deposits(
    settings: Settings,
    sender: Keys,
    targets: dict[str, _Target],
    *,
    timeout: float = 10.0,
    deadline: float = 12.0,
) -> _Gather:
    """Each custodian named at once: DELETE at its path (and query), as ``sender``, each
    request given ``timeout`` seconds; the gathering, once every answer is in or
    ``deadline`` seconds have gone (a custodian that hangs is named, not waited for)."""
    destroy = functools.partial(_custodian_delete, settings, sender, timeout)
    gather = _Gather(
        {name: functools.partial(destroy, name, *target) for name, target in targets.items()}
    )
    gather.wait(deadline)
    return gather


@dataclass(frozen=True)
class Unsent:
    """What :func:`unsend` did. ``shares``: how many the message had, by its envelope, or
    None when the relay held it no more (each recipient deleted it, or it was unsent
    before): then ``destroyed`` names the custodians that hold none of its shares to
    release any longer. ``failed``: each custodian that could not be asked, with why."""

    shares: int | None
    destroyed: list[str]
    failed: dict[str, str]


def unsend(settings: Settings, sender: Keys, message_id: str) -> Unsent:
    """Destroy every deposit of a message, then remove it from the relay. While a custodian
    could not destroy its share, the relay keeps the envelope (which names every deposit),
    so that unsending again finishes; a custodian asked again for a share it destroyed
    already answers as before.

    The relay drops an envelope once no recipient lists it, and its shares stay: so a
    message the relay does not hold is unsent by its id at every custodian of the network
    (each destroys only a deposit the caller made), and only a message no custodian holds
    a share of either is not found."""
    with _relay(settings, sender) as relay:
        try:
            copy = relay.request("GET", f"/api/v1/messages/{message_id}").content
        except ServiceError as exc:
            if exc.code != Code.NOT_FOUND:
                raise
            return _unsend_by_id(settings, sender, message_id, exc)
        envelope = document_from_bytes(copy)
        if envelope.header.sender.fingerprint != sender.public.fingerprint:
            refused = ParameterError(
                f"message {message_id} was sent by {envelope.header.sender.name}, not"
                f" {sender.name}; nothing was destroyed"
            )
            refused.hint = (
                "only its sender unsends a message; to remove it from your inbox:"
                f" securecomm delete {message_id} --as {sender.name}"
            )
            raise refused
        gather = _destroy_deposits(
            settings,
            sender,
            {r.custodian: (f"/v1/deposits/{r.ref}", None) for r in envelope.receipts},
        )
        if not gather.failures:
            relay.request("DELETE", f"/api/v1/messages/{message_id}")
    return Unsent(len(envelope.receipts), sorted(gather.results), gather.failures)


def _unsend_by_id(
    settings: Settings, sender: Keys, message_id: str, not_at_relay: ServiceError
) -> Unsent:
    """Every custodian of the network destroys its deposit of ``message_id``, if ``sender``
    made one; ``not_at_relay`` (the relay's 404) is raised if none holds one."""
    by_id: _Target = ("/v1/deposits", {"message_id": message_id})
    gather = _destroy_deposits(settings, sender, {c.name: by_id for c in settings.custodians})
    failed = {
        name: why
        for name, why in gather.failures.items()
        if getattr(gather.errors.get(name), "code", None) != Code.NO_DEPOSIT
    }
    if not gather.results and not failed:
        not_at_relay.hint = (
            "check the id (the one send printed): no custodian holds a share of it from"
            f" {sender.name} either"
        )
        raise not_at_relay
    return Unsent(None, sorted(gather.results), failed)
