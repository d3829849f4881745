"""Sending and reading messages of any size: format version 2 (spec/format-v2.md).

A send seals the file as it reads it and uploads the stream to the relay in pieces of
whole chunks, before any share is deposited; then it deposits the shares and posts the
signed document, as a version 1 send posts its envelope. A read checks the document and
collects the shares as in version 1, then downloads the stream in ranges and opens it
chunk by chunk into a temporary file beside the output, which takes the output's name
only once the last chunk has checked out. Memory stays the same whatever the size.

Both go on where they stopped. An interrupted send keeps its draft (the header and the
key's shares, sealed to the sender's own key) in the sender's home, and the same send
again picks up at the relay's last acknowledged chunk; an interrupted read keeps its
temporary file and the releases it collected (sealed to the reader), and the same read
again goes on from the file's last whole chunk without asking the custodians again.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from .. import canonical, hpke, httpsig, stream
from .._encoding import b64decode, b64encode
from .._files import drop_cached, write_atomic
from ..codes import Code
from ..config import MAX_PIECE_BYTES, Settings
from ..envelope import (
    Header,
    Policy,
    StreamDraft,
    StreamEnvelope,
    name_record,
)
from ..errors import (
    InterruptedOperationError,
    ParameterError,
    SecureCommError,
    ServiceError,
    SignatureError,
)
from ..identity import Keys
from ..shares import Share
from .transport import ServiceClient, answer_json

__all__ = ["PIECE_BYTES", "KeptDrafts", "SaveTo", "Upload", "download", "open_file", "partial_path"]

T = TypeVar("T")

#: The most a request carries: 64 sealed chunks (spec/format-v2.md 5).
PIECE_BYTES = MAX_PIECE_BYTES
#: How much of the file is read at a time.
_READ_BYTES = 1024 * 1024

#: As in ``flows``: a stage, units done, units in all.
Progress = Callable[[str, int, int], None]
#: The relay, as the caller, with the given timeout (None: the caller's deadline).
Relay = Callable[[float | None], ServiceClient]
#: A line to tell the person (a piece tried again).
Warn = Callable[[str], None]

#: A piece's request that fails on the way (no answer, or HTTP 5xx: a proxy's or the
#: relay's own) is tried again after each of these waits, in seconds, before its error
#: stands: a link that drops for a moment does not stop a large transfer. (The page's
#: RETRY_WAITS_MS are the same.)
RETRY_WAITS = (1.0, 3.0, 9.0)


def patiently(
    attempt: Callable[[int], T],
    *,
    warn: Warn,
    cancelled: Callable[[], bool],
    interrupted: Callable[[], Exception],
) -> T:
    """``attempt(tried)`` (how many attempts failed before this one), again after each of
    :data:`RETRY_WAITS` while it fails on the way, saying so with ``warn``; any other error
    stands at once, and ``interrupted()`` is raised if ``cancelled()`` during a wait."""
    tried = 0
    while True:
        try:
            return attempt(tried)
        except ServiceError as exc:
            if not (exc.code == Code.UNREACHABLE or exc.status >= 500):
                raise
            if tried >= len(RETRY_WAITS) or cancelled():
                raise
            wait = RETRY_WAITS[tried]
            tried += 1
            of = len(RETRY_WAITS) + 1
            warn(f"{exc}; trying again in {wait:g} s (attempt {tried + 1} of {of})")
            until = time.monotonic() + wait
            while (left := until - time.monotonic()) > 0:
                if cancelled():
                    raise interrupted() from None
                time.sleep(min(0.1, left))


# --- sending ------------------------------------------------------------------------------


@contextlib.contextmanager
def open_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened to be sent: a regular file, or a :class:`ParameterError` saying why not."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ParameterError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        if not os.path.isfile(path):
            raise ParameterError(f"{path} is not a regular file")
        yield handle


def ticket(
    path: Path, handle: BinaryIO, recipients: list[str], threshold: int, filename: str | None
) -> dict[str, Any]:
    """What makes a later send the same send: the same file, unchanged, to the same people."""
    stat = os.fstat(handle.fileno())
    return {
        "file": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "recipients": recipients,
        "threshold": threshold,
        "filename": filename,
    }


#: How far apart two expiries may lie and still be one ``--expires``: each is counted from
#: its own send's reading of the clock, a second or so from when its header was made.
SAME_EXPIRY_SECONDS = 5


def same_rule(kept: Header, asked: Policy, now: int) -> bool:
    """Whether the policy of a kept draft's header is the one asked for now: the same
    count of releases, approval and start, and an expiry as long from the send that asked
    for it (``now``) as the kept one is from its header's making."""
    rule = kept.policy
    if (rule.max_releases, rule.require_approval, rule.not_before) != (
        asked.max_releases,
        asked.require_approval,
        asked.not_before,
    ):
        return False
    if rule.expires is None or asked.expires is None:
        return rule.expires == asked.expires
    return abs((rule.expires - kept.created) - (asked.expires - now)) <= SAME_EXPIRY_SECONDS


class KeptDrafts:
    """The drafts of sends that did not finish, in ``users/NAME.sending.json``: each one's
    ticket, header and shares, the shares sealed (HPKE) to the sender's own key."""

    def __init__(self, settings: Settings, sender: Keys) -> None:
        self.sender = sender
        self.path = settings.home / "users" / f"{sender.name}.sending.json"

    def _load(self) -> dict[str, Any]:
        try:
            value = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def _save(self, entries: dict[str, Any]) -> None:
        write_atomic(self.path, json.dumps(entries, sort_keys=True).encode(), private=True)

    def _info(self, message_id: str) -> bytes:
        return hpke.info(
            "keep", {"message_id": message_id, "owner": self.sender.public.fingerprint_hex}
        )

    def put(self, ticket: dict[str, Any], draft: StreamDraft) -> None:
        shares = canonical.dumps([share.to_text() for share in draft.shares])
        sealed = hpke.seal(shares, self.sender.public.kem_key, self._info(draft.header.id))
        entries = self._load()
        entries[draft.header.id] = {
            "ticket": ticket,
            "header": draft.header.to_json(),
            "shares": b64encode(sealed),
        }
        self._save(entries)

    def take(
        self, ticket: dict[str, Any], keys: dict[str, Any], policy: Policy
    ) -> StreamDraft | None:
        """The kept draft of this very send, if there is one and it still fits: made under
        the ``policy`` asked for now (a resumed send that went on under the first one's had
        no burn or approval the second asked for), and its custodians hold the keys they
        hold now. One under another policy is left for a send that asks for that one,
        until this send is done (:meth:`others`)."""
        for message_id, entry in self._load().items():
            if not isinstance(entry, dict) or entry.get("ticket") != ticket:
                continue
            try:
                header = Header.from_json(entry["header"], versions=(2,))
                if not same_rule(header, policy, int(time.time())):
                    continue
                texts = canonical.loads(
                    self.sender.unseal(
                        b64decode(entry["shares"], field="shares"), self._info(message_id)
                    )
                )
                draft = StreamDraft.restore(
                    header, [Share.from_text(t) for t in texts], ticket["filename"]
                )
            except (SecureCommError, KeyError, TypeError, ValueError):
                self.drop(message_id)
                return None
            if header.id != message_id or [
                (slot.name, slot.fingerprint) for slot in header.custodians
            ] != [(name, key.fingerprint) for name, key in keys.items()]:
                self.drop(message_id)
                return None
            return draft
        return None

    def others(self, ticket: dict[str, Any], message_id: str) -> list[str]:
        """The kept drafts of the same send (file, people, threshold) as ``message_id``'s
        but under another policy: once that send is done, none of them is wanted."""
        return [
            other
            for other, entry in self._load().items()
            if other != message_id and isinstance(entry, dict) and entry.get("ticket") == ticket
        ]

    def drop(self, message_id: str) -> None:
        entries = self._load()
        if entries.pop(message_id, None) is not None:
            self._save(entries)

    def stale(self) -> list[tuple[str, str]]:
        """The kept drafts that can never go on, as (message id, why): their file is gone,
        or is not the one they began with (another size or time of change), or their
        message would expire before it was sent (its expiry counts from its beginning)."""
        found = []
        now = int(time.time())
        for message_id, entry in self._load().items():
            ticket = entry.get("ticket") if isinstance(entry, dict) else None
            if not isinstance(ticket, dict) or not isinstance(ticket.get("file"), str):
                found.append((message_id, "its file changed or is gone since"))
                continue
            gone = f"{ticket['file']} changed or is gone since"
            try:
                stat = os.stat(ticket["file"])
            except OSError:
                found.append((message_id, gone))
                continue
            if (stat.st_size, stat.st_mtime_ns) != (ticket.get("size"), ticket.get("mtime_ns")):
                found.append((message_id, gone))
                continue
            header = entry.get("header")
            policy = header.get("policy") if isinstance(header, dict) else None
            expires = policy.get("expires") if isinstance(policy, dict) else None
            if isinstance(expires, int) and expires <= now:
                found.append((message_id, "its message's expiry, counted from then, has passed"))
        return found


@dataclass
class Upload:
    """The stream of one draft, sent to the relay piece by piece."""

    _relay: Relay
    draft: StreamDraft
    handle: BinaryIO
    progress: Progress
    cancelled: Callable[[], bool]
    warn: Warn = lambda _line: None

    @property
    def _path(self) -> str:
        return f"/api/v1/uploads/{self.draft.header.id}"

    def open(self) -> int:
        """Open the upload (the relay's size limit and quota are checked here, before any
        deposit), or learn how much of it the relay holds; the bytes it holds."""
        body = {"v": 2, "length": self.draft.stream_length}
        with self._relay(None) as relay:
            try:
                answer = answer_json(relay.request("PUT", self._path, body=body))
            except ServiceError as exc:
                if exc.code in (Code.TOO_LARGE, Code.QUOTA_EXCEEDED):
                    raise _extended(
                        exc,
                        "nothing was sent (no share was deposited)",
                        "the relay's limits are max_payload_bytes and max_sender_bytes in"
                        " the [server] section of its securecomm.toml",
                    ) from None
                raise
        return self._received(answer)

    def _received(self, answer: Any) -> int:
        received = answer.get("received") if isinstance(answer, dict) else None
        length = self.draft.stream_length
        if (
            not isinstance(received, int)
            or isinstance(received, bool)
            or not 0 <= received <= length
            or (received % stream.SEALED_CHUNK_BYTES and received != length)
        ):
            raise ServiceError(
                "relay", 0, "bad_answer", f"the relay says it holds {received!r} bytes"
            )
        return received

    def send(self, received: int) -> bytes:
        """Upload the stream from ``received`` on; the SHA-256 of all of it. The chunks the
        relay holds are sealed again (the same bytes) to hash them, not sent. The next piece
        is sealed while one is on its way."""
        total = self.draft.stream_length
        digest = hashlib.sha256()
        self.progress("uploading", received, total)  # (where a resumed upload stands)
        with self._relay(None) as relay:
            for offset, piece, piece_digest in ahead(self._pieces(received, digest)):
                if self.cancelled():
                    raise self._interrupted(offset)
                try:
                    held = patiently(
                        functools.partial(self._append, relay, offset, piece, piece_digest),
                        warn=self.warn,
                        cancelled=self.cancelled,
                        interrupted=functools.partial(self._interrupted, offset),
                    )
                except ServiceError as exc:
                    raise _extended(
                        exc,
                        f"{offset:,} of {total:,} bytes are uploaded and no share was"
                        " deposited, so nothing was sent",
                        "the same send again goes on from there",
                    ) from None
                if held != offset + len(piece):
                    raise ServiceError(
                        "relay", 0, "bad_answer", "the relay acknowledged another length"
                    )
                self.progress("uploading", len(piece), total)
        return digest.digest()

    def _append(
        self, relay: ServiceClient, offset: int, piece: bytes, piece_digest: str, tried: int
    ) -> int:
        """Append ``piece`` at ``offset``; the bytes the relay then holds. After a failed
        attempt, first ask where the upload stands: the relay may have taken the piece and
        its answer been lost, and the piece is not sent twice."""
        if tried and self._held(relay, offset, piece) == offset + len(piece):
            return offset + len(piece)
        try:
            answer = relay.request(
                "POST",
                self._path,
                raw=piece,
                content_type="application/octet-stream",
                params={"offset": str(offset)},
                digest=piece_digest,
            )
        except ServiceError as exc:
            # An attempt that timed out may have gone on at the relay and taken the piece
            # while this one waited for it.
            if tried and exc.code == Code.UPLOAD_OFFSET:
                return self._held(relay, offset, piece)
            raise
        return self._received(answer_json(answer))

    def _held(self, relay: ServiceClient, offset: int, piece: bytes) -> int:
        """What the relay holds of the upload: ``offset`` or ``offset + len(piece)``."""
        held = self._received(answer_json(relay.request("GET", self._path)))
        if held not in (offset, offset + len(piece)):
            raise ServiceError(
                "relay", 0, "bad_answer", f"the relay holds {held:,} bytes, not {offset:,}"
            )
        return held

    def _pieces(self, received: int, digest: Any) -> Iterator[tuple[int, bytes, str]]:
        """The stream sealed from the file, hashed into ``digest`` whole, and what follows
        ``received`` cut into pieces: each with the offset it starts at and its
        Content-Digest (hashed here, off the path of the piece before it)."""
        piece = bytearray()
        position = 0
        for chunk in self.draft.seal(_pieces(self.handle, 0)):
            digest.update(chunk)
            position += len(chunk)
            if position <= received:
                continue
            piece += chunk
            if len(piece) >= PIECE_BYTES or position == self.draft.stream_length:
                whole = bytes(piece)
                yield position - len(whole), whole, httpsig.content_digest(whole)
                piece.clear()

    def _interrupted(self, offset: int) -> InterruptedOperationError:
        return InterruptedOperationError(
            f"interrupted: {offset:,} of {self.draft.stream_length:,} bytes of message"
            f" {self.draft.header.id} are uploaded and no share was deposited, so nothing"
            " was sent; the same send again goes on from there"
        )

    def abandon(self) -> None:
        abandon(self._relay, self.draft.header.id)


def abandon(relay: Relay, message_id: str) -> None:
    """Best effort: drop the relay's upload of ``message_id`` (and the room it holds in the
    sender's quota)."""
    with contextlib.suppress(SecureCommError), relay(5.0) as client:
        client.request("DELETE", f"/api/v1/uploads/{message_id}")


def ahead(items: Iterator[T]) -> Iterator[T]:
    """``items``, made one ahead in a thread of their own while the caller works on the one
    before (sealing, hashing, the network and AES-GCM let go of the GIL). What making them
    raises is raised here, in order; closing this generator stops the thread."""
    handoff: queue.Queue[tuple[T | None, BaseException | None, bool]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def make() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put((item, None, False), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put((None, None, True))
        except BaseException as exc:  # handed to the caller, whatever it is
            handoff.put((None, exc, True))

    worker = threading.Thread(target=make, name="securecomm-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error, done = handoff.get()
            if error is not None:
                raise error
            if done:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            handoff.get_nowait()  # lets a maker waiting on a full queue see the stop
        worker.join()


def _extended(error: ServiceError, more: str, hint: str) -> ServiceError:
    """``error`` saying what became of the send, and what to do."""
    extended = ServiceError(error.service, error.status, error.code, f"{error.message}; {more}")
    extended.hint = hint
    return extended


def _pieces(handle: BinaryIO, offset: int) -> Iterator[bytes]:
    handle.seek(offset)
    while piece := handle.read(_READ_BYTES):
        yield piece


# --- reading ------------------------------------------------------------------------------

#: Chooses the output file once the sender's file name (or None) is known.
SaveTo = Callable[[str | None], Path]


def partial_path(out: Path, message_id: str) -> Path:
    """Where a read keeps what it has opened of a message until all of it checks out."""
    return out.with_name(f".{out.name}.{message_id[:16]}.part")


def download(
    relay: Relay,
    document: StreamEnvelope,
    key: bytes,
    save_to: SaveTo,
    *,
    progress: Progress,
    cancelled: Callable[[], bool],
    warn: Warn = lambda _line: None,
) -> tuple[Path, str | None]:
    """Fetch and open ``document``'s stream with the recovered message key into the file
    ``save_to`` names: the output and the sender's file name. The output appears only when
    every chunk has opened; until then the plaintext is in a partial file beside it, which
    a later call goes on from."""
    fetch = _Fetch(relay, document, warn, cancelled)
    last = stream.chunk_count(document.length) - 1
    first = fetch.range(0, min(stream.SEALED_CHUNK_BYTES, document.payload_length))
    if last == 0:
        opened = b"".join(document.decrypt(key, [first]))
    else:
        opened = next(document.decrypt(key, [first]))
    filename, skip = name_record(opened) if document.header.payload is not None else (None, 0)
    out = save_to(filename)
    partial = partial_path(out, document.id)
    with _open_partial(partial) as handle:
        held = os.fstat(handle.fileno()).st_size
        if last > 0 and held + skip >= stream.CHUNK_BYTES:
            # Whole chunks opened by an earlier read (a later one's plaintext is cut off).
            start = min(last, (held + skip) // stream.CHUNK_BYTES)
            handle.truncate(start * stream.CHUNK_BYTES - skip)
        else:
            start = 1
            handle.truncate(0)
            handle.seek(0)
            handle.write(opened[skip:])
        handle.seek(0, os.SEEK_END)
        total = document.length - skip
        progress("downloading", handle.tell(), total)  # (where a resumed read stands)
        synced = 0  # (what an earlier read wrote goes on disk with the first sync)
        if start <= last:
            pieces = fetch.pieces(start * stream.SEALED_CHUNK_BYTES)
            for plaintext in document.decrypt(key, pieces, start=start):
                handle.write(plaintext)
                progress("downloading", len(plaintext), total)
                if handle.tell() - synced >= SYNC_BYTES:
                    synced = _sync_behind(handle, synced)
        # Whole and checked: it becomes a file like any other (as version 1's output is).
        os.fchmod(handle.fileno(), 0o644)
        _sync_behind(handle, synced)
    os.replace(partial, out)
    _sync_directory(out.parent)
    return out, filename


#: A download's output is put on disk each time it has grown by this much, and let go of
#: the page cache (see :func:`drop_cached`); a crash then loses at most this much of it to
#: the read that goes on.
SYNC_BYTES = 8 * 1024 * 1024


def _sync_behind(handle: BinaryIO, synced: int) -> int:
    """Put what ``handle`` holds past ``synced`` on disk and out of the page cache; where
    it now ends."""
    handle.flush()
    os.fsync(handle.fileno())
    end = handle.tell()
    drop_cached(handle.fileno(), synced, end - synced)
    return end


@contextlib.contextmanager
def _open_partial(path: Path) -> Iterator[BinaryIO]:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise ParameterError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "r+b") as handle:
        handle.seek(0, os.SEEK_END)
        yield handle


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stopped_downloading() -> InterruptedOperationError:
    return InterruptedOperationError("interrupted while downloading")


@dataclass
class _Fetch:
    relay: Relay
    document: StreamEnvelope
    warn: Warn
    cancelled: Callable[[], bool]

    def range(self, offset: int, length: int) -> bytes:
        """Bytes ``offset`` to ``offset + length`` of the stream (asked again while the
        request fails on the way)."""
        path = f"/api/v1/messages/{self.document.id}/payload"
        params = {"offset": str(offset), "length": str(length)}
        with self.relay(None) as relay:
            data = patiently(
                lambda _tried: relay.request("GET", path, params=params).content,
                warn=self.warn,
                cancelled=self.cancelled,
                interrupted=_stopped_downloading,
            )
        # A range of another length is passed on as it came: the stream's own checks name
        # what was done to it (a chunk dropped, repeated, appended ...). Only more than one
        # chunk too many is refused here, so that no answer makes the reader hold more.
        if len(data) > length + stream.SEALED_CHUNK_BYTES:
            raise SignatureError(
                f"the relay answered {len(data):,} bytes for {length:,} of message"
                f" {self.document.id}'s stream at {offset:,}"
            )
        return data

    def pieces(self, offset: int) -> Iterator[bytes]:
        """The stream from ``offset`` on, a range at a time: the next :data:`RANGES_AT_ONCE`
        are fetched while one is opened."""

        def ranges() -> Iterator[Callable[[], bytes]]:
            at, total = offset, self.document.payload_length
            while at < total:
                if self.cancelled():
                    raise _stopped_downloading()
                length = min(PIECE_BYTES, total - at)
                yield functools.partial(self.range, at, length)
                at += length

        return in_order(ranges(), at_once=RANGES_AT_ONCE)


#: Ranges a download asks for at a time. With one, the relay waits while the reader takes
#: in a range, and the reader while the relay reads and signs the next: two in flight
#: keep both busy (a 1 GiB read into a file took 7.9-8.9 s against 10.3-10.4 s with one,
#: on two cores; three did no better, within the noise).
RANGES_AT_ONCE = 2


def in_order(tasks: Iterator[Callable[[], T]], *, at_once: int) -> Generator[T, None, None]:
    """The results of ``tasks``, in their order, each made in a thread of its own with up to
    ``at_once`` made while the caller works on the one before. What a task raises is raised
    here in its place; closing this generator cancels the tasks not begun and waits for
    those under way."""
    pool = concurrent.futures.ThreadPoolExecutor(at_once, thread_name_prefix="securecomm-range")
    running: collections.deque[concurrent.futures.Future[T]] = collections.deque()
    try:
        for task in tasks:
            running.append(pool.submit(task))
            if len(running) > at_once:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
