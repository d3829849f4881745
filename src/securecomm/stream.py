"""The payload stream of format v2 (spec/format-v2.md section 3): a message of any size,
sealed in chunks of 64 KiB, encrypted and decrypted at constant memory.

The construction is STREAM (Hoang, Reyhanitabar, Rogaway and Vizár, "Online
Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015), as age
uses it: each chunk is sealed with AES-256-GCM under one payload key, with a nonce made of
the chunk's position and a flag that is set on the final chunk only. A chunk therefore
opens only at its own position, and only the true final chunk opens as final: a stream
that is cut, extended, reordered or that repeats a chunk is refused, each with its own
error (:class:`~securecomm.errors.StreamError`).

The payload key is derived from the message key K and bound to the message id and the
header (HKDF-SHA256), so a header changed in any byte opens no chunk at all.

Both directions take the bytes as an iterable of pieces of any size (a file read in
blocks, an HTTP body as it arrives) and yield chunks as they are sealed or checked, so
only a chunk or two is ever in memory. ``start`` resumes either direction at a chunk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .aead import KEY_LENGTH_BYTES, TAG_LENGTH_BYTES
from .errors import (
    LengthError,
    ParameterError,
    StreamChunkError,
    StreamDuplicateError,
    StreamError,
    StreamExtendedError,
    StreamReorderedError,
    StreamTruncatedError,
)

__all__ = [
    "CHUNK_BYTES",
    "MAX_CHUNKS",
    "SEALED_CHUNK_BYTES",
    "chunk_count",
    "decrypt",
    "encrypt",
    "payload_key",
    "plaintext_length",
    "sealed_length",
]

#: Plaintext bytes in every chunk but the final one, which holds 1 to CHUNK_BYTES (0 only
#: when it is the only chunk: the empty message).
CHUNK_BYTES = 64 * 1024
#: A chunk as sealed: its ciphertext, then its 16-byte tag.
SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_LENGTH_BYTES
#: At most this many chunks (256 TiB): positions fit the nonce's 11 bytes many times over.
MAX_CHUNKS = 2**32

_LABEL = b"securecomm/v2/payload"
_COUNTER_BYTES = 11
_FINAL, _NOT_FINAL = b"\x01", b"\x00"
#: How far around its position a chunk that does not open is looked for, to say what
#: happened to the stream (only ever on a refusal).
_LOOK_BACK, _LOOK_AHEAD = 65536, 64


def payload_key(key: bytes, message_id: bytes, header: bytes) -> bytes:
    """The key every chunk is sealed with: HKDF-SHA256 of the message key ``key``, with the
    16-byte ``message_id`` as salt and, as info, the label then SHA-256 of ``header`` (the
    canonical bytes of the envelope header)."""
    if len(key) != KEY_LENGTH_BYTES:
        raise LengthError(f"stream: key length {len(key)} bytes, expected {KEY_LENGTH_BYTES}")
    if len(message_id) != 16:
        raise LengthError(f"stream: message id length {len(message_id)} bytes, expected 16")
    info = _LABEL + hashlib.sha256(header).digest()
    return HKDF(hashes.SHA256(), KEY_LENGTH_BYTES, message_id, info).derive(key)


def chunk_count(plaintext_length: int) -> int:
    """How many chunks a plaintext of ``plaintext_length`` bytes is sealed in."""
    if plaintext_length < 0:
        raise ParameterError("stream: a length is not negative")
    return max(1, -(-plaintext_length // CHUNK_BYTES))


def sealed_length(plaintext_length: int) -> int:
    """The length of the stream a plaintext of ``plaintext_length`` bytes is sealed to."""
    return plaintext_length + chunk_count(plaintext_length) * TAG_LENGTH_BYTES


def plaintext_length(sealed: int) -> int:
    """The plaintext length a stream of ``sealed`` bytes holds; ``LengthError`` for a length
    no stream has (its final chunk would be shorter than a tag, or empty after others)."""
    full, rest = divmod(sealed, SEALED_CHUNK_BYTES)
    if full and not rest:
        return full * CHUNK_BYTES
    if rest < TAG_LENGTH_BYTES or (rest == TAG_LENGTH_BYTES and full):
        raise LengthError(f"stream: no stream is {sealed} bytes long")
    return full * CHUNK_BYTES + rest - TAG_LENGTH_BYTES


def _nonce(position: int, final: bool) -> bytes:
    return position.to_bytes(_COUNTER_BYTES, "big") + (_FINAL if final else _NOT_FINAL)


def _blocks(pieces: Iterable[bytes], size: int) -> Iterator[tuple[bytes, bool]]:
    """``pieces`` cut into blocks of ``size`` bytes, each with whether it is the last: a
    block is the last when nothing follows it, so every block but the last is full and the
    last holds what remains (no bytes at all if there were none)."""
    buffer, taken = bytearray(), 0
    for piece in pieces:
        buffer += piece
        while len(buffer) - taken > size:
            yield bytes(buffer[taken : taken + size]), False
            taken += size
        del buffer[:taken]  # once a piece, not once a block: a large piece moves once
        taken = 0
    yield bytes(buffer), True


def _check_start(start: int) -> None:
    if not 0 <= start < MAX_CHUNKS:
        raise ParameterError(f"stream: start chunk {start} is not in 0 .. {MAX_CHUNKS - 1}")


def encrypt(payload_key: bytes, pieces: Iterable[bytes], *, start: int = 0) -> Iterator[bytes]:
    """Seal the plaintext that ``pieces`` yields; yield each sealed chunk, in order.

    With ``start``, ``pieces`` is the plaintext from chunk ``start`` on (from byte
    ``start * CHUNK_BYTES``) and the chunks yielded are those from ``start`` on: the same
    bytes as the stream sealed whole has there.
    """
    _check_start(start)
    aes = AESGCM(payload_key)
    position = start
    for block, last in _blocks(pieces, CHUNK_BYTES):
        # An empty block comes only when there is no plaintext at all: the empty message,
        # one empty final chunk, which only chunk 0 may be.
        if not block and start:
            raise ParameterError(f"stream: no plaintext from chunk {start} on to seal")
        if position >= MAX_CHUNKS:
            raise ParameterError(f"stream: more than {MAX_CHUNKS} chunks")
        yield aes.encrypt(_nonce(position, last), block, None)
        position += 1


def decrypt(
    payload_key: bytes, pieces: Iterable[bytes], *, length: int, start: int = 0
) -> Iterator[bytes]:
    """Check and open the stream that ``pieces`` yields, of a plaintext of ``length`` bytes
    (as the signed header says); yield each chunk's plaintext as it checks out.

    A refusal is a :class:`~securecomm.errors.StreamError` raised where the stream departs
    from the one sealed: so the chunks yielded before it are not the message. Whoever writes
    them out keeps them apart until this generator ends without error. With ``start``, the
    stream is read from chunk ``start`` on (from byte ``start * SEALED_CHUNK_BYTES``).
    """
    _check_start(start)
    final = chunk_count(length) - 1
    if start > final:
        raise ParameterError(f"stream: chunk {start} is past the final chunk ({final})")
    final_size = sealed_length(length) - final * SEALED_CHUNK_BYTES
    aes = AESGCM(payload_key)
    source = iter(pieces)
    buffer = bytearray()
    for position in range(start, final + 1):
        size = SEALED_CHUNK_BYTES if position < final else final_size
        while len(buffer) < size:
            piece = next(source, None)
            if piece is None:
                raise StreamTruncatedError(
                    f"the stream ends inside chunk {position}, before its final chunk ({final})"
                    if buffer
                    else f"the stream ends before chunk {position}; its final chunk is {final}"
                )
            buffer += piece
        block = bytes(buffer[:size])
        del buffer[:size]
        try:
            plaintext = aes.decrypt(_nonce(position, position == final), block, None)
        except InvalidTag:
            raise _diagnose(aes, block, position, position == final) from None
        yield plaintext
    if buffer or any(source):
        raise StreamExtendedError(f"bytes follow the final chunk (chunk {final})")


def _opens(aes: AESGCM, block: bytes, position: int, final: bool) -> bool:
    try:
        aes.decrypt(_nonce(position, final), block, None)
    except InvalidTag:
        return False
    return True


def _diagnose(aes: AESGCM, block: bytes, position: int, final: bool) -> StreamError:
    """What a chunk that does not open at ``position`` is: another position's chunk, or none
    of this stream's."""
    for other in range(max(0, position - _LOOK_BACK), min(MAX_CHUNKS, position + _LOOK_AHEAD)):
        if other != position and (
            _opens(aes, block, other, False) or _opens(aes, block, other, True)
        ):
            if other < position:
                return StreamDuplicateError(f"chunk {position} is chunk {other} again")
            return StreamReorderedError(
                f"chunk {other} came at position {position}: a chunk before it is missing or"
                " was moved"
            )
    # Its own position with the other flag included: only the key's holder seals that.
    return StreamChunkError(
        f"chunk {position} does not authenticate: altered, or not this message's"
    )
