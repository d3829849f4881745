"""Version 2 documents and their streams, written on one side and read on the other.

The page seals a message of several chunks in pieces of sizes around a chunk's, from chunk
0 and again from a later chunk, and signs it; Python reads it. Python seals one and the
page opens it from pieces cut anywhere, from chunk 0 and from a later chunk. And the page
refuses to seal a file that changed length while it was read, as envelope.py does.
Custodians without keys (the single-machine mode, spec 7.1) keep the documents free of
receipts: what is tested here is the stream and the signed document around it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from playwright.sync_api import Page

from securecomm import stream
from securecomm.envelope import StreamEnvelope, document_from_bytes, name_record, prepare_stream
from securecomm.identity import Identity
from securecomm.shares import Share
from tests.browser._js import b64, evaluate, pkcs8, unb64

CHUNK = stream.CHUNK_BYTES
SEALED = stream.SEALED_CHUNK_BYTES
#: Three whole chunks and a short fourth, a file name's record in front.
MESSAGE = os.urandom(3 * CHUNK + 77)
SLOTS = ["share-1", "share-2", "share-3"]

# Piece sizes around a chunk's and a sealed chunk's, used over and over.
PIECES = [1, CHUNK - 1, CHUNK, CHUNK + 1, SEALED - 1, SEALED, SEALED + 1, 3 * CHUNK + 5, 7]

CUT = """
    const sizes = arg.pieces;
    const cut = function* (data) {
        for (let at = 0, i = 0; at < data.length; i += 1) {
            const size = sizes[i % sizes.length];
            yield data.slice(at, at + size);
            at += size;
        }
    };
    const collect = async (chunks) => {
        const out = [];
        for await (const chunk of chunks) out.push(chunk);
        return bytes.concat(...out);
    };
"""


def test_the_page_seals_and_signs_what_python_reads(page: Page) -> None:
    alice = Identity.generate("alice")
    js: dict[str, Any] = evaluate(
        page,
        CUT
        + """
        const alice = await fromKeys(arg.alice);
        const message = b64decode(arg.message);
        const draft = await envelope.prepareStream(message.length, {
            sender: alice.public, recipients: [alice.public], threshold: 2,
            custodians: arg.slots.map((name) => ({ name, fingerprintHex: null })),
            filename: 'plan.txt',
        });
        const whole = await collect(draft.seal(cut(message)));
        // From chunk 2 on, as a send that goes on after an interruption.
        const offset = draft.messageOffset(2);
        const tail = await collect(draft.seal(cut(message.subarray(offset)), { start: 2 }));
        const changed = {
            longer: await failure(() => collect(draft.seal([message, new Uint8Array(1)]))),
            shorter: await failure(() => collect(draft.seal([message.subarray(1)]))),
        };
        const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', whole));
        const document = await draft.finish(alice, [], digest);
        return {
            stream: b64encode(whole), tail: b64encode(tail), offset, changed,
            length: draft.streamLength,
            document: b64encode(document.toBytes()),
            shares: draft.shares.map((share) => share.toText()),
        };
        """,
        {
            "alice": pkcs8(alice),
            "message": b64(MESSAGE),
            "slots": SLOTS,
            "pieces": PIECES,
        },
    )
    sealed = unb64(js["stream"])
    assert len(sealed) == js["length"] == stream.sealed_length(len(MESSAGE) + 1 + len("plan.txt"))
    assert js["offset"] == 2 * CHUNK - 1 - len("plan.txt")
    assert unb64(js["tail"]) == sealed[2 * SEALED :]
    # A file that is not as long as the header says is refused, as envelope.py refuses it.
    assert js["changed"]["longer"].startswith("ParameterError: the message is longer than")
    assert js["changed"]["shorter"].startswith("ParameterError: the message ended after")
    document = document_from_bytes(unb64(js["document"]))
    assert isinstance(document, StreamEnvelope)
    document.verify(alice.public, recipient=alice.public)
    assert document.payload_digest == hashlib.sha256(sealed).digest()
    key = document.recover_key(
        {name: Share.from_text(text) for name, text in zip(SLOTS, js["shares"], strict=True)}
    )
    opened = b"".join(
        document.decrypt(key, [sealed[i : i + 1000] for i in range(0, len(sealed), 1000)])
    )
    name, start = name_record(opened)
    assert (name, opened[start:]) == ("plan.txt", MESSAGE)


def test_the_page_opens_what_python_sealed(page: Page) -> None:
    alice = Identity.generate("alice")
    draft = prepare_stream(
        len(MESSAGE),
        sender=alice.public,
        recipients=[alice.public],
        custodians=[(name, None) for name in SLOTS],
        threshold=2,
    )
    sealed = b"".join(draft.seal([MESSAGE]))
    document = draft.finish(alice, [], hashlib.sha256(sealed).digest())
    js: dict[str, Any] = evaluate(
        page,
        CUT
        + """
        const alice = await publicOf(arg.alice);
        const document = await envelope.documentFromBytes(b64decode(arg.document));
        if (!(document instanceof envelope.StreamEnvelope)) return 'not version 2';
        await document.verify(alice, {}, { recipient: alice });
        const released = Object.fromEntries(
            arg.shares.map(([name, text]) => [name, Share.fromText(text)]));
        const key = await document.recoverKey(released);
        const sealed = b64decode(arg.stream);
        const whole = await collect(document.decrypt(key, cut(sealed)));
        const from2 = await collect(
            document.decrypt(key, cut(sealed.subarray(2 * 65552)), { start: 2 }));
        const altered = sealed.slice();
        altered[65552 + 9] ^= 1;
        return {
            whole: b64encode(whole), from2: b64encode(from2),
            payload: document.header.payload, length: document.length,
            altered: await failure(() => collect(document.decrypt(key, cut(altered)))),
            short: await failure(() => collect(document.decrypt(key, cut(sealed.subarray(1))))),
        };
        """,
        {
            "alice": alice.public.to_json(),
            "document": b64(document.to_bytes()),
            "shares": [[s, share.to_text()] for s, share in zip(SLOTS, draft.shares, strict=True)],
            "stream": b64(sealed),
            "pieces": PIECES,
        },
    )
    assert unb64(js["whole"]) == MESSAGE
    assert unb64(js["from2"]) == MESSAGE[2 * CHUNK :]
    assert (js["payload"], js["length"]) == (None, len(MESSAGE))
    assert (
        js["altered"]
        == "StreamChunkError: chunk 1 does not authenticate: altered, or not this message's"
    )
    assert js["short"].startswith("StreamChunkError")  # every chunk shifted by one byte
