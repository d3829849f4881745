"""``securecomm send | inbox | read | unsend | delete``: what people do with messages."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..client.trust import KnownKeys
from ..config import Settings
from ..envelope import Policy, name_for_file, utc_text
from ..identity import Keys
from ._common import (
    EXIT_BAD_INPUT,
    CliError,
    IdStart,
    ProgressBar,
    check_output,
    finished_by_again,
    home_flag,
    home_of,
    home_option,
    interrupts,
    message_id,
    message_id_or_start,
    parse_duration,
    passphrase_options,
    positive_int,
    positive_seconds,
    read_input,
    refuse_existing,
    settings_of,
    user,
    warn,
    write_output,
)


def _expiry(text: str) -> int:
    """An argparse type: a duration (:func:`parse_duration`) that ends within the times an
    envelope holds; past them it was refused by the format's check, naming the field and
    a number of seconds the user never typed."""
    from .._fields import TIME_MAX_SECONDS

    seconds = parse_duration(text)
    if time.time() + seconds >= TIME_MAX_SECONDS:
        last = time.gmtime(TIME_MAX_SECONDS).tm_year
        raise argparse.ArgumentTypeError(
            f"{text!r} ends after the year {last}, the last an envelope holds; leave"
            " --expires out for a message that does not expire"
        )
    return seconds


def _policy(args: argparse.Namespace) -> Policy:
    now = int(time.time())
    return Policy(
        expires=now + args.expires if args.expires else None,
        max_releases=1 if args.burn_after_reading else None,
        require_approval=args.require_approval,
    )


def cmd_send(args: argparse.Namespace) -> None:
    from ..client import flows

    # --to bob --to carol, --to bob,carol: each name once, in the order given.
    args.to = list(
        dict.fromkeys(n.strip() for item in args.to for n in item.split(",") if n.strip())
    )
    settings = settings_of(args, args.sender)
    known = KnownKeys.load(settings.home)
    sender = user(args, settings, args.sender)
    if args.file is not None and args.text is not None:
        raise CliError("give the message as TEXT or --file, not both", code=EXIT_BAD_INPUT)
    if args.file not in (None, "-") and _streamed(Path(args.file)):
        _send_file(args, settings, known, sender)
        return
    if args.text is not None and args.text != "-":
        message = args.text.encode("utf-8")
    else:
        too_large = (
            "save it to a file and give --file PATH: a file is sent as a stream, of any size"
            if args.file in (None, "-")
            else f"{args.file} is not a regular file (a pipe or a device, whose size is not"
            " known before the end): only a regular file is sent as a stream, of any size;"
            " copy it into one first"
        )
        message = read_input(args.file, "message", too_large=too_large)
    if not message and args.file in (None, "-"):  # an empty file is sent, as the page does
        raise CliError("the message is empty", code=EXIT_BAD_INPUT)
    # Ctrl-C, SIGTERM and SIGHUP are polled from here on: the send completes, or takes
    # back every share it deposited, and says which.
    with interrupts() as cancelled, ProgressBar(len(message)) as progress:
        result = flows.send(
            settings,
            known,
            sender,
            args.to,
            message,
            deadline=args.deadline,
            threshold=args.threshold,
            policy=_policy(args),
            progress=progress,
            warn=warn,
            cancelled=cancelled,
            filename=name_for_file(args.file) if args.file not in (None, "-") else None,
        )
        _print_sent(args, result)
        if cancelled():
            warn("the interrupt came after the relay had stored the message: it was sent")


#: Files larger than this are sent as a stream (format version 2), at constant memory;
#: smaller ones in one envelope (version 1), which any reader of version 1 reads.
STREAM_ABOVE_BYTES = 1024 * 1024


def _streamed(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > STREAM_ABOVE_BYTES
    except OSError:
        return False  # read_input says why it cannot be read


def _send_file(
    args: argparse.Namespace, settings: Settings, known: KnownKeys, sender: Keys
) -> None:
    from ..client import flows

    path = Path(args.file)
    with interrupts() as cancelled, ProgressBar(path.stat().st_size) as progress:
        result = flows.send_file(
            settings,
            known,
            sender,
            args.to,
            path,
            deadline=args.deadline,
            threshold=args.threshold,
            policy=_policy(args),
            progress=progress,
            warn=warn,
            cancelled=cancelled,
            filename=name_for_file(args.file),
        )
        _print_sent(args, result)
        if cancelled():
            warn("the interrupt came after the relay had stored the message: it was sent")


def _print_sent(args: argparse.Namespace, result: Any) -> None:
    if args.json:
        print(
            json.dumps(
                {
                    "id": result.message_id,
                    "ciphertext_sha256": result.ciphertext_digest,
                    "relay_sha256": result.relay_digest,
                    "receipts": {r.custodian: r.ref for r in result.receipts},
                },
                sort_keys=True,
            ),
            flush=True,
        )
        return
    if args.quiet:
        print(result.message_id, flush=True)
        return
    print(f"message id:        {result.message_id}")
    print(f"ciphertext sha256: {result.ciphertext_digest}")
    print(f"envelope sha256:   {result.relay_digest} (the relay's copy is the same)")
    print("custody references:")
    for receipt in result.receipts:
        print(f"  {receipt.custodian:<8} {receipt.ref}")
    sys.stdout.flush()


def cmd_inbox(args: argparse.Namespace) -> None:
    from ..client import flows

    settings = settings_of(args, args.reader)
    reader = user(args, settings, args.reader)
    messages = flows.inbox(settings, reader)
    if args.json:  # for a script: the entries as the relay signed them, times in epoch s
        print(json.dumps({"reader": reader.name, "messages": messages}, sort_keys=True))
        return
    if not messages:
        print(f"{reader.name}: no messages")
    now = int(time.time())
    for item in messages:
        when = _local_time(item["created"])
        notes = "; ".join(_inbox_notes(item, now))
        print(
            f"{item['id']}  from {item['sender']['name']:<12} {when}  {size_text(item['size'])}"
            + (f"  ({notes})" if notes else "")
        )


def size_text(size: int) -> str:
    """A size as a person reads it: ``2,996 bytes``; from a mebibyte, ``286.2 MiB``."""
    mib = 1024 * 1024
    return f"{size:,} bytes" if size < mib else f"{size / mib:,.1f} MiB"


def _local_time(stamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _inbox_notes(item: dict[str, Any], now: int) -> list[str]:
    """The policy the sender signed, then what reads of the message here found."""
    notes = []
    policy = item.get("policy") or {}
    if policy.get("max_releases") == 1:
        notes.append("burn after reading")
    elif policy.get("max_releases"):
        # Each custodian counts its own releases, to whoever asks (spec 7.2): so more
        # readers than that may open it, each with shares from different custodians.
        notes.append(f"each share released at most {policy['max_releases']} times")
    if policy.get("require_approval"):
        notes.append("needs the operators' approval")
    # Until not_before, and from the expiry on, the custodians refuse a read (too_early,
    # expired): said in UTC, as they and the read say it.
    if policy.get("not_before") and now < policy["not_before"]:
        notes.append(f"not before {utc_text(policy['not_before'])}")
    if policy.get("expires"):
        if now >= policy["expires"]:
            notes.append(f"expired at {utc_text(policy['expires'])}")
        else:
            notes.append(f"expires {_local_time(policy['expires'])}")
    seen = item.get("seen") or {}
    if seen.get("read_at"):
        notes.append(f"read {_local_time(seen['read_at'])}")
    if seen.get("destroyed_at"):
        notes.append("its shares are destroyed: it can no longer be read")
    return notes


def _refuse_an_id_start(args: argparse.Namespace, settings: Settings, reader: Keys) -> None:
    """Given the start of an id, name the messages of the reader's inbox it begins (with
    the command to give), and do nothing on a guess."""
    from ..client import flows

    given = args.message_id
    if not isinstance(given, IdStart):
        return
    verb, done = ("read", "read") if args.func is cmd_read else ("delete", "deleted")
    where = home_flag(home_of(args))
    started = [m for m in flows.inbox(settings, reader) if m["id"].startswith(given)]
    if not started:
        raise CliError(
            f"no message in {reader.name}'s inbox has an id that begins {given} (a message"
            f" id is 32 hex digits); nothing was {done}",
            hint=f"the ids: securecomm inbox --as {reader.name}{where}",
            code=EXIT_BAD_INPUT,
        )
    rows = ", ".join(
        f"{m['id']} (from {m['sender']['name']}, {_local_time(m['created'])})" for m in started
    )
    whole = started[0]["id"] if len(started) == 1 else "ID"
    raise CliError(
        f"{given} is the start of a message id; messages in {reader.name}'s inbox whose id"
        f" begins so: {rows}; nothing was {done}",
        hint=f"give the whole id: securecomm {verb} {whole} --as {reader.name}{where}",
        code=EXIT_BAD_INPUT,
    )


def cmd_read(args: argparse.Namespace) -> None:
    from ..client import flows

    settings = settings_of(args, args.reader)
    known = KnownKeys.load(settings.home)
    reader = user(args, settings, args.reader)
    _refuse_an_id_start(args, settings, reader)
    into_directory = args.out not in (None, "-") and Path(args.out).is_dir()
    if args.out not in (None, "-") and not into_directory:
        check_output(args.out, args.force)
    spool = settings.home / "users" / f"{reader.name}.incoming"

    def save_to(filename: str | None) -> Path:
        """Where a streamed message (version 2) is written, once its file name is known."""
        if into_directory:
            out = Path(args.out) / (filename or f"{args.message_id}.bin")
            refuse_existing(out, args.force)
            return out
        if args.out not in (None, "-"):
            return Path(args.out)
        if sys.stdout.isatty():
            raise CliError(
                f"message {args.message_id} is a file"
                + (f" ({filename!r})" if filename else "")
                + ": not written to the terminal",
                hint=f"read it again with --out {filename or 'PATH'} (or --out DIR), or"
                " redirect standard output to a file; the shares collected are kept for that",
                code=EXIT_BAD_INPUT,
            )
        # Standard output gets it once all of it checked out: until then it waits here.
        spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        return spool / str(args.message_id)

    # The size is unknown until fetched.
    with interrupts() as cancelled, ProgressBar(0, threshold=0) as progress:
        result = flows.read(
            settings,
            known,
            reader,
            args.message_id,
            deadline=args.deadline,
            progress=progress,
            warn=warn,
            cancelled=cancelled,
            forget=False,
            save_to=save_to,
        )
    named = f", file {result.filename!r}" if result.filename else ""
    print(
        f"from {result.sender.name} ({result.sender.short_fingerprint()}){named}, key rebuilt"
        f" from {', '.join(result.used)}",
        file=sys.stderr,
    )

    def done_with_custodians() -> None:
        """Once the message is out (a custodian that hangs delays nothing shown or kept):
        withdraw the requests the read did not need, and say it arrived where a release
        given once is kept (spec section 12.2)."""
        flows.withdraw_requests(
            settings,
            reader,
            result.unneeded,
            warn=warn,
            acknowledge=(args.message_id, result.given_once),
        )

    if result.saved is not None:
        _saved(args, settings, reader, result.saved, into_directory)
        done_with_custodians()
        return
    out = args.out
    if into_directory:
        # The sender's name was checked on decryption: no separator, not '.' or '..'.
        kind = "txt" if _printable(result.plaintext) else "bin"
        out = str(Path(args.out) / (result.filename or f"{args.message_id}.{kind}"))
        refuse_existing(Path(out), args.force)
    to_terminal = out in (None, "-") and sys.stdout.isatty()
    if to_terminal and not _printable(result.plaintext):
        raise CliError(
            f"message {args.message_id} is binary ({len(result.plaintext):,} bytes):"
            " not written to the terminal",
            hint=f"read it again with --out {result.filename or 'PATH'} (or --out DIR), or"
            " redirect standard output to a file; the shares collected are kept for that",
            code=EXIT_BAD_INPUT,
        )
    write_output(out, result.plaintext)
    if into_directory:
        print(f"saved {out}", file=sys.stderr)
    flows.forget(settings, reader, args.message_id)
    if to_terminal and not result.plaintext.endswith(b"\n"):
        print()
    done_with_custodians()


def _saved(
    args: argparse.Namespace,
    settings: Settings,
    reader: Keys,
    saved: Path,
    into_directory: bool,
) -> None:
    """A streamed message is in its file: say where, or copy it to standard output."""
    from ..client import flows

    if args.out in (None, "-"):
        try:
            with saved.open("rb") as handle:
                while piece := handle.read(1024 * 1024):
                    sys.stdout.buffer.write(piece)
            sys.stdout.buffer.flush()
        finally:
            saved.unlink(missing_ok=True)
    elif into_directory:
        print(f"saved {saved}", file=sys.stderr)
    flows.forget(settings, reader, args.message_id)


def _printable(data: bytes) -> bool:
    """UTF-8 text without control characters other than tab, newline and carriage return."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in text)


def cmd_unsend(args: argparse.Namespace) -> None:
    from ..client import flows

    settings = settings_of(args, args.sender)
    sender = user(args, settings, args.sender)
    again = f"securecomm unsend {args.message_id} --as {args.sender}"
    # Each step can be taken again: a share destroyed stays so, and the relay keeps the
    # envelope until every one is (or, once it holds it no more, each is asked by id).
    with finished_by_again(
        f"message {args.message_id}: interrupted; what was destroyed stays destroyed, and the"
        " rest can still be",
        again,
    ):
        unsent = flows.unsend(settings, sender, args.message_id)
    for name, why in sorted(unsent.failed.items()):
        warn(f"could not destroy a share: {name}: {why}")
    if unsent.shares is None:
        # The relay held it no more: each custodian of the network was asked by its id.
        held = ", ".join(unsent.destroyed)
        if unsent.failed:
            raise CliError(
                f"message {args.message_id}: the relay holds it no more;"
                f" {len(unsent.failed)} custodian(s) could not be asked to destroy a share"
                + (f" (destroyed: {held})" if held else ""),
                hint=f"once they answer: {again}",
            )
        print(
            f"message {args.message_id}: the relay holds it no more (each recipient deleted"
            f" it, or it was unsent before); the shares of {held} are destroyed"
        )
        return
    if unsent.failed:
        raise CliError(
            f"message {args.message_id}: {len(unsent.failed)} of its {unsent.shares} shares"
            f" could not be destroyed (the {len(unsent.destroyed)} others were); the relay"
            " keeps the envelope, so that unsending again can finish",
            hint=f"once they answer: {again}",
        )
    print(
        f"message {args.message_id}: all {unsent.shares} shares destroyed, removed from the relay"
    )


def cmd_delete(args: argparse.Namespace) -> None:
    from ..client import flows

    settings = settings_of(args, args.reader)
    reader = user(args, settings, args.reader)
    _refuse_an_id_start(args, settings, reader)
    # Said before the requests its reads left are withdrawn, which may take a while.
    flows.delete(
        settings,
        reader,
        args.message_id,
        warn=warn,
        on_deleted=lambda: print(
            f"message {args.message_id}: deleted from {args.reader}'s inbox", flush=True
        ),
    )


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "send",
        help="encrypt a message and give its key to the custodians",
        description="Encrypt TEXT (or --file, or '-' for stdin) for the"
        " recipients, deposit one key share with each custodian, and post the"
        " envelope to the relay. If any custodian does not take its share,"
        " nothing is posted and the deposits made are withdrawn. A --file over 1 MiB"
        " goes as a stream (any size, constant memory, a progress bar on a terminal);"
        " interrupted while uploading, the same command again goes on where it stopped.",
    )
    p.add_argument("text", nargs="?", metavar="TEXT", help="the message, or - for stdin")
    p.add_argument(
        "--file",
        metavar="PATH",
        help="send the contents of PATH; its name goes with it, encrypted, for the reader",
    )
    p.add_argument(
        "--from",
        "--as",  # as read, inbox and unsend say who you are
        dest="sender",
        required=True,
        metavar="NAME",
        help="who sends (you)",
    )
    p.add_argument(
        "--to",
        required=True,
        action="append",
        metavar="NAME",
        help="a recipient (repeat, or separate names with commas, for several)",
    )
    p.add_argument("--threshold", type=positive_int, help="shares needed to read (default: config)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true", help="print only the message id")
    output.add_argument(
        "--json", action="store_true", help="print the id, digests and receipts as JSON"
    )
    p.add_argument(
        "--expires",
        type=_expiry,
        metavar="DURATION",
        help="custodians refuse releases after this long (30m, 12h, 1d, 2w)",
    )
    p.add_argument(
        "--burn-after-reading",
        action="store_true",
        help="each custodian releases its share once, then destroys it",
    )
    p.add_argument(
        "--require-approval",
        action="store_true",
        help="each release waits for the custodian's operator",
    )
    p.add_argument(
        "--deadline",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the answers of each step: the custodians' keys, the"
        " deposits, the relay's (default 30)",
    )
    home_option(p)
    passphrase_options(p)
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "inbox",
        help="list the messages for you",
        description="List the messages the relay holds for NAME.",
    )
    p.add_argument("--as", dest="reader", required=True, metavar="NAME", help="who you are")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the entries as JSON (id, sender, created, size, policy, seen) for a script",
    )
    home_option(p)
    passphrase_options(p)
    p.set_defaults(func=cmd_inbox)

    p = sub.add_parser(
        "read",
        help="collect t shares, decrypt and print a message",
        description="Fetch the envelope, check the sender's signature, ask every"
        " custodian for its share at once, check each against the signed digest,"
        " combine t good ones, check the key commitment and decrypt. Nothing is"
        " written unless every check passed. A streamed message (a large file) is"
        " decrypted into a partial file beside --out, renamed to it once whole;"
        " interrupted, the same command again goes on from there.",
    )
    p.add_argument(
        "message_id",
        type=message_id_or_start,
        metavar="ID",
        help="the message id (from send or inbox); the start of one names the messages in"
        " your inbox it begins",
    )
    p.add_argument("--as", dest="reader", required=True, metavar="NAME", help="who you are")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="write the message to PATH (all or nothing); to a directory: under the"
        " file name the sender gave",
    )
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--deadline",
        type=positive_seconds,
        default=15.0,
        metavar="SECONDS",
        help="how long to wait for custodians (default 15)",
    )
    home_option(p)
    passphrase_options(p)
    p.set_defaults(func=cmd_read)

    for verb, who, source, func, id_type, text, description in (
        (
            "unsend",
            "sender",
            "send",
            cmd_unsend,
            message_id,
            "destroy a message you sent",
            "Ask every custodian to destroy its share of message ID and the relay to delete"
            " the envelope. Once more than n - t shares are gone (3 of 5) no one can read it,"
            " even with the envelope; a recipient who read it before keeps what they read.",
        ),
        (
            "delete",
            "reader",
            "inbox",
            cmd_delete,
            message_id_or_start,
            "remove a message from your inbox",
            "Ask the relay to remove message ID from your inbox (it drops the envelope once"
            " no recipient lists it), and forget what reads of it noted here. The sender's"
            " shares stay with the custodians until the sender unsends it or it expires; a"
            " message you sent is refused here: unsend it.",
        ),
    ):
        p = sub.add_parser(verb, help=text, description=description)
        p.add_argument(
            "message_id", type=id_type, metavar="ID", help=f"the message id (from {source})"
        )
        p.add_argument("--as", dest=who, required=True, metavar="NAME", help="who you are")
        home_option(p)
        passphrase_options(p)
        p.set_defaults(func=func)
