"""``securecomm split | combine | keygen | encrypt | decrypt`` and ``demo --offline``: the
single-machine mode, no server."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import aead, shamir
from .. import shares as shares_mod
from .._files import write_atomic
from ..envelope import Envelope, name_for_file, prepare_offline
from ..errors import (
    DecryptionError,
    FormatError,
    InsufficientSharesError,
    SecureCommError,
    ShareError,
)
from ..identity import Identity, load_public, save_public
from ..shares import TEXT_PREFIX, TEXT_SPACE, Share
from ._common import (
    EXIT_BAD_INPUT,
    CliError,
    check_output,
    integer,
    load_identity,
    passphrase,
    passphrase_options,
    preview,
    read_input,
    warn,
    write_output,
)


def cmd_split(args: argparse.Namespace) -> None:
    # Before the secret is asked for: not once it was typed in.
    shamir.check_parameters(args.n, args.t)
    secret = read_input(args.file, "secret")
    if not secret:
        raise CliError("the secret is empty", code=EXIT_BAD_INPUT)
    for share in shares_mod.split(secret, args.n, args.t):
        print(share.to_text())


def cmd_combine(args: argparse.Namespace) -> None:
    check_output(args.out, args.force)
    if args.shares:
        lines = list(args.shares)
    else:
        lines = read_input(args.file, "shares").decode("utf-8", "replace").splitlines()
    texts = [(i, line) for i, line in enumerate(lines, start=1) if line.strip(TEXT_SPACE)]
    if not texts:
        raise CliError(
            "no shares given", code=EXIT_BAD_INPUT, hint="one share a line, or as arguments"
        )
    if args.shares:
        _refuse_file_names(args.shares)
    parsed = [Share.from_text(text, name=f"share {i}") for i, text in texts]
    write_output(args.out, shares_mod.combine(parsed))


def _is_file(word: str) -> bool:
    try:
        return Path(word).is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL, is not a file's
        return False


def _refuse_file_names(words: list[str]) -> None:
    """``combine shares.txt`` took the file's name for a share ("share 1: does not start
    with 'securecomm-share-v1:'"). A word that is no share but names a file is said to be
    one, with the way to give its shares. Only such a word is named: any other may be a
    damaged share, a secret."""
    files = [
        (i, word)
        for i, word in enumerate(words, start=1)
        if not word.strip(TEXT_SPACE).startswith(TEXT_PREFIX) and _is_file(word)
    ]
    if not files:
        return
    i, first = files[0]
    names = " ".join(shlex.quote(word) for _, word in files)
    raise CliError(
        f"share {i} is the name of a file ({first}), not a share: combine takes the shares' text",
        code=EXIT_BAD_INPUT,
        hint=f"give a file of shares, one a line, on standard input: cat {names} |"
        " securecomm combine",
    )


def cmd_keygen(args: argparse.Namespace) -> None:
    out = Path(args.out)
    key_path, pub_path = out / f"{args.name}.key", out / f"{args.name}.pub"
    for path in (key_path, pub_path):
        if path.exists() and not args.force:
            raise CliError(f"{path} exists", hint="choose another --out, or --force to replace it")
    identity = Identity.generate(args.name)
    secret = passphrase(args, confirm=True)
    identity.save(key_path, secret)
    save_public(pub_path, identity.public)
    state = "encrypted with your passphrase" if secret else "NOT encrypted (no passphrase)"
    print(f"identity {args.name}: {key_path} ({state}), {pub_path}")
    print(f"fingerprint: {identity.public.short_fingerprint()}")
    if secret is None and not args.no_passphrase:
        print(
            "warning: anyone who can read the key file can act as "
            f"{args.name}; use --ask-passphrase for a person's key",
            file=sys.stderr,
        )


def cmd_encrypt(args: argparse.Namespace) -> None:
    # Replacing an envelope would strand the shares handed out for it.
    if args.out or args.file not in (None, "-"):
        check_output(args.out or f"{args.file}.scm", args.force, "-o")
    # Before the message is read and the key's passphrase asked for.
    shamir.check_parameters(args.n, args.t)
    plaintext = read_input(args.file, "message")
    if args.key:
        sender = load_identity(args.key, args)
    else:
        sender = Identity.generate("local")
        print(
            "no --key: signing with a one-time identity (proves integrity, not authorship)",
            file=sys.stderr,
        )
    draft = prepare_offline(
        plaintext,
        sender=sender.public,
        recipients=[load_public(Path(p)) for p in args.to or ()],
        n=args.n,
        threshold=args.t,
        filename=name_for_file(args.file) if args.file not in (None, "-") else None,
    )
    envelope = draft.finish(sender)
    out_dir = Path(args.shares_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    share_paths = []
    for name, text in draft.share_files():
        write_atomic(out_dir / name, text, private=True)
        share_paths.append(out_dir / name)
    envelope_path = args.out or (
        f"{args.file}.scm" if args.file not in (None, "-") else f"{envelope.id}.scm"
    )
    write_output(envelope_path, envelope.to_bytes())
    print(f"envelope: {envelope_path} (message {envelope.id})")
    print(f"{args.n} shares, any {args.t} decrypt; hand each to a different person:")
    for path in share_paths:
        print(f"  {path}")


def cmd_decrypt(args: argparse.Namespace) -> None:
    check_output(args.out, args.force, "-o")
    try:
        envelope = Envelope.from_file(read_input(args.envelope, "envelope"))
    except FormatError as exc:
        if args.envelope in (None, "-"):
            raise
        # The file encrypted, or a share file, given for the envelope: say which file.
        raise CliError(
            f"{args.envelope}: {exc}",
            hint="decrypt takes the envelope that 'securecomm encrypt' wrote (FILE.scm)",
            code=EXIT_BAD_INPUT,
        ) from None
    sender = load_public(Path(args.sender)) if args.sender else None
    envelope.verify(sender)
    # Spec 7.1 and 7.7 steps 6-7, as `read` does with custodians: a file that is not one of
    # this message's shares is skipped and named; all the others are combined.
    offered, unread = [], []
    for position, path in enumerate(args.shares, start=1):
        label = f"share {position} ({path})"
        try:
            offered.append((label, Path(path).read_text("utf-8")))
        except OSError as exc:
            unread.append(f"{label}: cannot read the file ({exc.strerror})")
        except UnicodeDecodeError:
            unread.append(f"{label}: not text (UTF-8)")
    gathered = envelope.gather(offered)
    skipped = unread + [str(error) for _, error in gathered.skipped]
    for line in skipped:
        warn(f"skipped {line}")
    released = gathered.released
    t = envelope.header.threshold
    if len(released) < t:
        raise InsufficientSharesError(
            f"{len(released)} good share(s) of the {t} needed"
            + (f" ({len(skipped)} skipped, named above)" if skipped else "")
            + "; nothing was decrypted"
        )
    opened = envelope.open_named(released)
    if opened.filename:
        print(f"the sender named it {opened.filename!r}", file=sys.stderr)
    if sender is None:
        print(
            f"signed by {envelope.header.sender.name}"
            f" ({envelope.header.sender.short_fingerprint()});"
            " pass --sender PUBFILE to check it is who you expect",
            file=sys.stderr,
        )
    write_output(args.out, opened.content)


def _step(text: str) -> None:
    print(f"\n== {text}")


def cmd_demo_offline(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    message = "Meet at the north gate at 06:00."
    print("securecomm demo --offline: one message, a key split 3-of-5, no servers")
    _step("1. the sender encrypts with AES-256-GCM under a fresh random key")
    key = aead.generate_key()
    ciphertext, nonce, tag = aead.aes_encrypt(message, key)
    print(f"   plaintext : {message!r}")
    print(f"   ciphertext: {preview(ciphertext)}")
    print(f"   nonce     : {nonce.hex()}  (12 bytes, random)")
    print(f"   tag       : {tag.hex()}  (16 bytes)")
    _step("2. the key is split into 5 shares; any 3 rebuild it")
    shares = shares_mod.split(key, 5, 3)
    for share in shares:
        print(f"   share {share.index}: {share.to_text()[:48]}...")
    _step("3. two shares are not enough: Shamir says nothing with t-1 of them")
    try:
        shares_mod.combine(shares[:2])
    except ShareError as exc:
        print(f"   refused: {exc}")
    _step("4. three shares (5, 1, 3) rebuild the key and decrypt")
    rebuilt = shares_mod.combine([shares[4], shares[0], shares[2]])
    print(f"   key rebuilt: {'yes' if rebuilt == key else 'NO'}")
    print(f"   plaintext  : {aead.aes_decrypt(ciphertext, rebuilt, nonce, tag).decode()!r}")
    _step("5. tampering is detected: one flipped bit in the ciphertext")
    flipped = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    try:
        aead.aes_decrypt(flipped, rebuilt, nonce, tag)
        print("   ACCEPTED (this must never happen)")
    except DecryptionError as exc:
        print(f"   refused: {exc}")
    _step("6. a share with one character changed is named, not silently used")
    text = shares[1].to_text()
    position = len(shares_mod.TEXT_PREFIX) + 10
    typo = text[:position] + ("A" if text[position] != "A" else "B") + text[position + 1 :]
    try:
        shares_mod.combine([Share.from_text(typo, name="share 2"), shares[2], shares[3]])
    except SecureCommError as exc:
        print(f"   refused: {exc}")
    print(f"\ndone in {time.perf_counter() - started:.2f} s")


def add_commands(sub: Any) -> None:
    def add(
        name: str, func: Callable[[argparse.Namespace], None], help_text: str, description: str
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=description)
        p.set_defaults(func=func)
        return p

    p = add(
        "split",
        cmd_split,
        "split a secret into text shares",
        "Read a secret from standard input (or --file) and print n shares, one a line;"
        " any t of them rebuild it with 'securecomm combine'. Every byte read is part of"
        " the secret, a trailing newline included.",
    )
    p.add_argument("-n", type=integer, default=5, help="number of shares (2..255, default 5)")
    p.add_argument("-t", type=integer, default=3, help="shares needed to rebuild (default 3)")
    p.add_argument("--file", metavar="PATH", help="read the secret from PATH instead of stdin")

    p = add(
        "combine",
        cmd_combine,
        "rebuild a secret from text shares",
        "Rebuild a secret from at least t shares given as arguments or one a line on"
        " standard input (or --file). Writes the secret to standard output (or --out)."
        " Shares beyond t are checked against the others.",
    )
    p.add_argument("shares", nargs="*", metavar="SHARE", help="a text share")
    p.add_argument("--file", metavar="PATH", help="read shares from PATH, one a line")
    p.add_argument("--out", metavar="PATH", help="write the secret to PATH (all or nothing)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")

    p = add(
        "keygen",
        cmd_keygen,
        "create an identity (signing and sealing keys)",
        "Create NAME.key (private, PKCS#8 PEM, mode 0600) and NAME.pub (public keys,"
        " JSON), and print the fingerprint to compare out of band.",
    )
    p.add_argument("name", metavar="NAME", help="the identity's name (a-z, 0-9, . _ -)")
    p.add_argument("--out", metavar="DIR", default=".", help="directory for the files (default .)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    # As register and devices init take it (it was refused here as unrecognised).
    passphrase_options(p).add_argument(
        "--no-passphrase",
        action="store_true",
        help="write the key file unprotected (the default), without the warning",
    )

    p = add(
        "encrypt",
        cmd_encrypt,
        "encrypt a file and write its key shares to files",
        "Single-machine mode, no server: encrypt FILE (or stdin) into an envelope and"
        " write n key shares to --shares-out, one file each, to hand to n people by"
        " other means. Any t of them decrypt with 'securecomm decrypt'.",
    )
    p.add_argument("file", metavar="FILE", nargs="?", help="the file to encrypt (default stdin)")
    p.add_argument("--shares-out", metavar="DIR", required=True, help="where to write shares")
    p.add_argument("-o", "--out", metavar="PATH", help="envelope path (default FILE.scm)")
    p.add_argument("--force", action="store_true", help="replace the envelope if it exists")
    p.add_argument("-n", type=integer, default=5, help="number of shares (default 5)")
    p.add_argument("-t", type=integer, default=3, help="shares needed (default 3)")
    p.add_argument("--key", metavar="KEYFILE", help="sign as this identity (from keygen)")
    p.add_argument("--to", metavar="PUBFILE", action="append", help="a recipient's .pub file")
    passphrase_options(p)

    p = add(
        "decrypt",
        cmd_decrypt,
        "decrypt an envelope with t share files",
        "Check the envelope's signature and each share's signed digest, rebuild the"
        " key, check the key commitment and decrypt. Nothing is written unless all of"
        " that succeeds.",
    )
    p.add_argument("envelope", metavar="ENVELOPE", help="the .scm file")
    p.add_argument("--shares", metavar="FILE", nargs="+", required=True, help="share files")
    p.add_argument("-o", "--out", metavar="PATH", help="write the plaintext to PATH")
    p.add_argument("--force", action="store_true", help="replace -o PATH if it exists")
    p.add_argument("--sender", metavar="PUBFILE", help="refuse unless signed by this identity")
