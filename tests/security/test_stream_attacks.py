"""Attacks on a version 2 message's stream (spec/format-v2.md 3.3, 5) on the relay link.

Through the man-in-the-middle proxy on the link to the relay, each stream attack is tried
on the download (a chunk left out, two swapped, the stream cut at a chunk boundary, a chunk
appended) twice: by an attacker without the relay's key (the relay's answer signature
catches it) and by the relay itself, re-signing what it serves (the stream's own
authentication catches it, each attack with its own error). And on the upload, where the
sender's request signature catches it at the relay. No attack may put a byte of a wrong
message in the output, or a message the sender did not send in an inbox; a watched
plaintext never crosses the link.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from securecomm import stream
from securecomm.client import flows
from securecomm.config import Settings
from securecomm.errors import (
    AnswerSignatureError,
    ServiceError,
    StreamExtendedError,
    StreamReorderedError,
    StreamTruncatedError,
)
from securecomm.testing.mitm import Proxy

from ._harness import READ_DEADLINE, World

#: Five chunks: the reader fetches chunk 0 alone, then the four others in one range, which
#: the attacks alter.
SIZE = 4 * stream.CHUNK_BYTES + 1000
MARKER = b"stream-marker: the amber lantern sways at midnight. "

#: What the relay itself serving each altered stream gets: the stream's own refusal.
BY_THE_RELAY = {
    "drop-chunk": StreamReorderedError,  # chunk 2 where chunk 1 belongs
    "reorder-chunks": StreamReorderedError,
    "cut-chunk": StreamTruncatedError,
    "append-chunk": StreamExtendedError,
}


@contextlib.contextmanager
def relay_through(world: World, proxy: Proxy) -> Iterator[Settings]:
    """``world``'s settings with the relay behind ``proxy`` (the custodians direct)."""
    proxy.start()
    try:
        yield dataclasses.replace(world.settings, server_url=proxy.url)
    finally:
        proxy.stop()


def _message() -> bytes:
    return (MARKER * (SIZE // len(MARKER) + 1))[:SIZE]


@pytest.fixture(scope="module")
def sent(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """A five-chunk message from alice to bob, sent through a watching proxy."""
    message = _message()
    source = tmp_path_factory.mktemp("stream-attacks") / "evidence.bin"
    source.write_bytes(message)
    watcher = Proxy(world.settings.server_url, watch=[MARKER])
    with relay_through(world, watcher) as settings:
        result = flows.send_file(settings, world.known(), world.alice, ["bob"], source)
    assert watcher.alarms == [], watcher.alarms
    return result.message_id, message


def _read(world: World, settings: Settings, message_id: str, out: Path) -> flows.ReadResult:
    return flows.read(
        settings,
        world.known(),
        world.bob,
        message_id,
        deadline=READ_DEADLINE,
        save_to=lambda _name: out,
    )


@pytest.mark.parametrize("mode", sorted(BY_THE_RELAY))
@pytest.mark.parametrize("who", ["attacker", "relay"])
def test_an_altered_download_is_refused(
    world: World, sent: tuple[str, bytes], tmp_path: Path, mode: str, who: str
) -> None:
    message_id, message = sent
    proxy = Proxy(
        world.settings.server_url,
        mode=mode,
        match=r"/payload$",
        direction="response",
        limit=1,
        watch=[MARKER],
        answer_signature=world.relay_identity() if who == "relay" else None,
    )
    out = tmp_path / "out.bin"
    expected = BY_THE_RELAY[mode] if who == "relay" else AnswerSignatureError
    with relay_through(world, proxy) as settings, pytest.raises(expected):
        _read(world, settings, message_id, out)
    assert proxy.alterations, "the attack was not made"
    assert not out.exists(), "ATTACK SUCCEEDED: an altered stream was written as the message"
    assert proxy.alarms == [], proxy.alarms
    # The releases were kept: the next read, not attacked, gives the message.
    assert _read(world, world.settings, message_id, out).saved == out
    assert out.read_bytes() == message


@pytest.mark.parametrize("mode", sorted(BY_THE_RELAY))
def test_an_altered_upload_is_refused_and_nothing_is_posted(
    world: World, tmp_path: Path, mode: str
) -> None:
    source = tmp_path / "upload.bin"
    source.write_bytes(_message())
    proxy = Proxy(
        world.settings.server_url,
        mode=mode,
        match=r"^/api/v1/uploads/[0-9a-f]{32}$",
        direction="request",
        limit=1,
        watch=[MARKER],
    )
    before = {item["id"] for item in flows.inbox(world.settings, world.bob)}
    with relay_through(world, proxy) as settings, pytest.raises(ServiceError) as refused:
        flows.send_file(settings, world.known(), world.alice, ["bob"], source)
    assert proxy.alterations, "the attack was not made"
    assert refused.value.status == 401, refused.value  # the sender's signature fails
    assert "no share was deposited" in str(refused.value)
    after = {item["id"] for item in flows.inbox(world.settings, world.bob)}
    assert after == before, "ATTACK SUCCEEDED: a message was posted"
    assert proxy.alarms == [], proxy.alarms
