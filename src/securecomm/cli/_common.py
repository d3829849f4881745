"""What every ``securecomm`` command shares: errors, input, output, passphrases, progress."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import re
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from .._encoding import b64encode
from .._fields import HEX_MESSAGE_ID as _MESSAGE_ID
from .._files import write_atomic
from ..codes import Code
from ..config import DEFAULT_HOME, Settings, browser_refuses_port, load_settings
from ..errors import IdentityError, SecureCommError, ServiceError
from ..identity import Identity, Keys
from ..local.layout import PEOPLE_DIR, party_home, person_home, user_key_path
from ..passphrases import weakness

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
#: 128 + SIGPIPE: what a process reports that its pipe's signal ended (`yes | head`).
EXIT_BROKEN_PIPE = 141


def stdout_gone() -> bool:
    """Whether standard output is a pipe whose reader has gone (`securecomm inbox | head`)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


# Upper bound on what split reads from stdin or a file: shares are held in memory.
MAX_SECRET_BYTES = 64 * 1024 * 1024


class CliError(Exception):
    """A failure the CLI reports as one line, with an optional hint."""

    def __init__(self, message: str, *, hint: str | None = None, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.hint = hint
        self.code = code


def integer(value: str) -> int:
    """An argparse type: any integer (the range is the library's to check and name)."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None


def positive_int(value: str) -> int:
    """An argparse type: an integer of at least 1 (0 is refused, not taken for the default)."""
    number = integer(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected 1 or more")
    return number


_DURATION = re.compile(r"([0-9]+)([smhdw]?)")

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """'90' or '90s', '30m', '12h', '1d', '2w' -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: a whole number above 0, then s, m, h, d or w"
            " (30m, 12h, 1d, 2w; seconds without one)"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


def port_number(value: str) -> int:
    """An argparse type: a TCP port to listen on, 1 to 65535."""
    number = integer(value)
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port: expected 1 to 65535")
    return number


def positive_seconds(value: str) -> float:
    """An argparse type: a number of seconds above 0 (a deadline or a timeout)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: expected more than 0 seconds")
    return number


class IdStart(str):
    """The start of a message id, as a person copies one short: a command that can list the
    person's messages names those it begins, and acts on none of them on a guess."""


_ID_START = re.compile(r"[0-9a-f]{4,31}")


def message_id_or_start(value: str) -> str:
    """An argparse type: a message id, or the start of one (4 to 31 hex digits) as an
    :class:`IdStart` for the command to name the messages it begins."""
    text = value.strip().lower()
    if _ID_START.fullmatch(text):
        return IdStart(text)
    return message_id(value)


def message_id(value: str) -> str:
    """An argparse type: a message id as send and inbox print it (32 lowercase hex digits)."""
    text = value.strip().lower()
    if re.fullmatch(r"[0-9a-f]{1,31}", text):
        raise argparse.ArgumentTypeError(
            f"{value!r} is only the start of a message id: give all 32 hex digits, as send"
            " and inbox print them"
        )
    if not _MESSAGE_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a message id (32 hex digits, as send and inbox print them)"
        )
    return text


@contextlib.contextmanager
def interrupts() -> Iterator[Callable[[], bool]]:
    """While inside, SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) do not stop
    the process mid-step: they set a flag that the flow polls (the callable yielded), so it
    can finish or undo its work (a send withdraws the shares it deposited)."""
    from .._signals import stop_signals

    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    before = {sig: signal.signal(sig, handler) for sig in stop_signals()}
    try:
        yield stop.is_set
    finally:
        for sig, previous in before.items():
            signal.signal(sig, previous)


@contextlib.contextmanager
def finished_by_again(said: str, again: str) -> Iterator[None]:
    """Around steps that the same command, run again, finishes: an interrupt (Ctrl-C) says
    ``said`` (where it may have left things) and gives ``again``, not a bare "interrupted"."""
    try:
        yield
    except KeyboardInterrupt:
        raise CliError(said, hint=f"finish it: {again}", code=EXIT_INTERRUPTED) from None


def read_input(path: str | None, what: str, *, too_large: str | None = None) -> bytes:
    """All of standard input (``-`` or None) or of the file ``path``, up to
    MAX_SECRET_BYTES; over that, refused with the hint ``too_large``."""
    if path is None or path == "-":
        if sys.stdin.isatty():
            print(f"reading the {what} from standard input; end with Ctrl-D", file=sys.stderr)
        data = sys.stdin.buffer.read(MAX_SECRET_BYTES + 1)
    else:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_SECRET_BYTES:
        raise CliError(
            f"the {what} is larger than {MAX_SECRET_BYTES // (1024 * 1024)} MiB",
            hint=too_large,
            code=EXIT_BAD_INPUT,
        )
    return data


def refuse_existing(path: str | Path | None, force: bool, option: str = "--out") -> None:
    """Refuse to replace a file the user has unless they said --force (stdout is never one);
    and, --force or not, anything there but a file. An output is written to a new file
    renamed into place: it would have taken the place of a pipe or a device (as root,
    ``--out /dev/null --force`` replaced /dev/null), and failed on a directory after the
    work was done (``encrypt`` had handed out the shares)."""
    if path is None or str(path) == "-":
        return
    target = Path(path)
    if not target.exists():
        return
    if target.is_dir():
        raise CliError(f"{path} is a directory", hint=f"name a file in it with {option}")
    if not target.is_file():
        raise CliError(
            f"{path} is not a file (a device, a pipe or a socket): the output is written to"
            " a new file renamed into place, which would replace it",
            hint=f"choose another {option}",
        )
    if not force:
        raise CliError(f"{path} exists", hint=f"choose another {option}, or --force to replace it")


def check_output(path: str | Path | None, force: bool, option: str = "--out") -> None:
    """Refuse, before any work is done, a file the user named that cannot be written as
    asked: one that exists (unless --force), or one in a directory that does not. The
    write would make that directory, and a typo in it would then leave the file where
    nobody looks (as cp and curl do, it is refused)."""
    refuse_existing(path, force, option)
    if path is None or str(path) == "-":
        return
    # "new/" names a directory to write into, not a file "new" here.
    directory = Path(path) if str(path).endswith("/") else Path(path).parent
    if not directory.is_dir():
        raise CliError(
            f"cannot write {path}: {directory} is not a directory",
            hint=f"create it first, or choose another {option}",
        )


def write_output(path: str | None, data: bytes) -> None:
    """Write all of ``data`` or nothing: to a temporary file renamed into place."""
    if path is None or path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_atomic(path, data)


def passphrase(args: argparse.Namespace, *, confirm: bool) -> bytes | None:
    """The passphrase given (a file's first line, or asked); ``confirm``: a new one, for a
    key about to be locked with it, asked twice and held to :mod:`securecomm.passphrases`."""
    if getattr(args, "passphrase_file", None):
        try:
            text = Path(args.passphrase_file).read_text("utf-8").rstrip("\r\n")
        except OSError as exc:
            raise CliError(f"cannot read {args.passphrase_file}: {exc.strerror}") from None
        if not text:
            raise CliError("the passphrase file is empty", code=EXIT_BAD_INPUT)
    elif getattr(args, "ask_passphrase", False):
        text = _ask("passphrase: ")
        if confirm and _ask("again: ") != text:
            raise CliError("the two passphrases differ", code=EXIT_BAD_INPUT)
        if not text:
            raise CliError("the passphrase is empty", code=EXIT_BAD_INPUT)
    else:
        return None
    weak = weakness(text) if confirm else None
    if weak is not None:
        raise CliError(
            f"the new passphrase {weak[1]}: too easy to guess, so no key was locked with it",
            hint="choose a longer one, such as four words that do not go together; not a"
            " run like 'abcdefgh' or 'qwertyui', nor a common password",
            code=EXIT_BAD_INPUT,
        )
    return text.encode("utf-8")


def _ask(prompt: str) -> str:
    """A passphrase typed at the terminal; its end, with nothing typed, said in a sentence."""
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise CliError(
            "no passphrase was typed (the input ended)",
            hint="run it on a terminal, or give --passphrase-file PATH",
        ) from None


def load_identity(path: str, args: argparse.Namespace) -> Identity:
    """A key file, asking for its passphrase on a terminal when it has one and none was
    given."""
    given = passphrase(args, confirm=False)
    try:
        return Identity.load(path, given)
    except IdentityError as exc:
        if "passphrase is needed" not in str(exc):
            raise
        if not sys.stdin.isatty():
            raise CliError(str(exc), hint="add --ask-passphrase or --passphrase-file") from None
    asked = _ask(f"passphrase for {path}: ")
    return Identity.load(path, asked.encode("utf-8"))


def new_passphrase(
    args: argparse.Namespace, file_option: str = "--passphrase-file"
) -> bytes | None:
    """The passphrase for a key about to be made (or written again): asked twice on a
    terminal, from ``args.passphrase_file`` (the command's ``file_option``), or none with
    --no-passphrase."""
    if args.no_passphrase:
        return None
    if args.passphrase_file or args.ask_passphrase:
        return passphrase(args, confirm=True)
    if not sys.stdin.isatty():
        raise CliError(
            "a new key is protected by a passphrase, and there is no terminal to ask for one",
            hint=f"run it on a terminal, or give {file_option} PATH (or --no-passphrase"
            " for a script or a demo)",
            code=EXIT_BAD_INPUT,
        )
    args.ask_passphrase = True
    return passphrase(args, confirm=True)


def new_passphrase_options(p: argparse.ArgumentParser) -> None:
    """The options of a command that makes a key file (read by :func:`new_passphrase`)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--no-passphrase", action="store_true", help="write the key file unprotected"
    )
    group.add_argument(
        "--passphrase-file", metavar="PATH", help="read the passphrase from the first line"
    )
    group.add_argument(
        "--ask-passphrase",
        action="store_true",
        help="prompt for it (what a terminal does anyway; the hints name it)",
    )


def passphrase_options(p: argparse.ArgumentParser) -> Any:
    """The options that give the passphrase of an existing key file; their group."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--ask-passphrase", action="store_true", help="prompt for the key file's passphrase"
    )
    group.add_argument(
        "--passphrase-file", metavar="PATH", help="read the passphrase from the first line of PATH"
    )
    return group


def require_whole_fingerprint(said: str, refused: str, *, printed_by: str) -> None:
    """Refuse, as bad input, a fingerprint typed short (fewer than the 32 hex digits of the
    short form): too little to compare, not a key that differs. ``refused`` says what was
    not done; ``printed_by`` where the whole one is to be found."""
    digits = "".join(ch for ch in said if ch not in " :")
    if len(digits) < 32:
        raise CliError(
            f"the fingerprint {said.strip()} is too short to compare: {refused}",
            hint=f"give all of it, the eight groups of four that {printed_by} printed",
            code=EXIT_BAD_INPUT,
        )


class ProgressBar:
    """A one-line progress display on standard error, shown only on a terminal and only
    for work large enough to wait for. A stage that moves a megabyte or more (uploading,
    downloading, posting) shows bytes, the rate and the time left; once nothing moved for
    STALLED_SECONDS, it says for how long the relay has not answered instead. Used as a
    context manager, which stops that watch before anything else is said."""

    #: How often the line is redrawn, at most (the last state is always drawn).
    REDRAW_SECONDS = 0.1
    STALLED_SECONDS = 3.0
    WATCH_SECONDS = 1.0

    def __init__(self, total_bytes: int, *, threshold: int = 1024 * 1024) -> None:
        self.active = sys.stderr.isatty() and total_bytes >= threshold
        self._counts: dict[str, int] = {}
        self._started: dict[str, tuple[float, int]] = {}
        self._drawn = 0.0
        self._lock = threading.Lock()
        self._last: tuple[str, int, int, float] | None = None  # stage, count, total, when
        self._closed = threading.Event()
        self._watch: threading.Thread | None = None
        self._open = False  # a line drawn and not yet ended

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        if self._watch is not None:
            self._watch.join()
        if self._open:
            # A transfer that stopped part way (an error, an interrupt): its line stays,
            # saying where it stopped, and what is said next starts on a line of its own.
            print(file=sys.stderr, flush=True)
            self._open = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.active or total <= 0:
            return
        with self._lock:
            self._advance(stage, done, total)

    def _advance(self, stage: str, done: int, total: int) -> None:
        # Stages reported from several threads add up; a final call carries done == total.
        count = min(total, self._counts.get(stage, 0) + done) if done < total else total
        self._counts[stage] = count
        now = time.monotonic()
        self._last = (stage, count, total, now)
        # The rate counts from the first call (a resumed transfer's first call says where
        # it resumes: those bytes did not move now).
        since, base = self._started.setdefault(stage, (now, count))
        in_bytes = total >= _MIB and stage in _BYTE_STAGES
        if in_bytes and self._watch is None and not self._closed.is_set():
            self._watch = threading.Thread(target=self._watch_for_stalls, daemon=True)
            self._watch.start()
        if in_bytes and count < total and now - self._drawn < self.REDRAW_SECONDS:
            return
        if in_bytes:
            amount = f"{count / _MIB:,.1f}/{total / _MIB:,.1f} MiB"
            elapsed = now - since
            if elapsed > 0.5 and count > base:
                rate = (count - base) / elapsed
                left = int((total - count) / rate)
                amount += f"  {rate / 1e6:,.1f} MB/s"
                if count < total:
                    amount += f"  {left // 60}:{left % 60:02d} left"
        elif stage in _BYTE_STAGES:
            amount = f"{count / 1024:,.1f}/{total / 1024:,.1f} KiB"
        else:
            amount = f"{count}/{total}"
        self._draw(stage, count, total, amount)

    def _draw(self, stage: str, count: int, total: int, amount: str) -> None:
        self._drawn = time.monotonic()
        self._open = count < total
        width = 30
        filled = width * count // total
        print(
            f"\r{stage:<18} [{'#' * filled}{'.' * (width - filled)}] {amount}\033[K",
            end="" if count < total else "\n",
            file=sys.stderr,
            flush=True,
        )

    def _watch_for_stalls(self) -> None:
        """Each WATCH_SECONDS: where a transfer has not moved for STALLED_SECONDS, say so."""
        while not self._closed.wait(self.WATCH_SECONDS):
            with self._lock:
                if self._last is None:
                    continue
                stage, count, total, moved = self._last
                quiet = time.monotonic() - moved
                if stage in _BYTE_STAGES and count < total and quiet >= self.STALLED_SECONDS:
                    amount = f"{count / _MIB:,.1f}/{total / _MIB:,.1f} MiB"
                    self._draw(stage, count, total, f"{amount}  no answer for {quiet:.0f} s")


_MIB = 1024 * 1024
_BYTE_STAGES = frozenset({"uploading", "downloading", "posting"})


def preview(data: bytes, width: int = 40) -> str:
    """The start of ``data`` in base64, for showing what crosses the wire."""
    text = b64encode(data)
    return text if len(text) <= width else text[:width] + "..."


def home_option(p: argparse.ArgumentParser, default: Any = None) -> None:
    """``--home DIR``; on a verb whose command takes it too, ``default=argparse.SUPPRESS``
    keeps the one given before the verb (a verb's default would replace it)."""
    p.add_argument(
        "--home",
        metavar="DIR",
        default=default,
        help=f"data directory (env SECURECOMM_HOME, default ./{DEFAULT_HOME})",
    )


def home_of(args: argparse.Namespace) -> Path:
    return Path(args.home) if args.home else load_settings(None).home


def home_flag(home: Path) -> str:
    """`` --home HOME`` for a command a hint gives, or nothing for the default home."""
    return f" --home {home}" if home != DEFAULT_HOME else ""


def service_settings(args: argparse.Namespace, name: str | None) -> Settings:
    """The settings of service ``name`` (a custodian, or the relay for "relay" or None) as
    its own home has them: in a data directory that ``up`` runs, which keeps each party in
    HOME/NAME, that home's (where its database and identity are); else HOME's."""
    home = home_of(args)
    if (home / PEOPLE_DIR).is_dir():
        own = party_home(home, name or "relay")
        if own.is_dir():
            return load_settings(own)
    return load_settings(home)


def settings_of(args: argparse.Namespace, person: str | None = None) -> Settings:
    """The settings of a home that joined a network (or that ``init`` set up); with
    ``person``, of that person's own home in it."""
    home = home_of(args)
    if person is not None:
        people = home / PEOPLE_DIR
        if person_home(home, person) == home and people.is_dir():
            # A local network's data directory, where no one of that name acts from.
            names = ", ".join(sorted(p.name for p in people.iterdir() if p.is_dir()))
            raise CliError(
                f"no one named {person!r} in {home} (its people: {names})",
                hint=f"add them with: securecomm register {person}{home_flag(home)}",
            )
        home = person_home(home, person)
    if not (home / "known_keys.json").exists():
        raise CliError(
            f"{home} is not set up",
            hint="join a network with 'securecomm join network.json', or run 'securecomm"
            " init' (or 'securecomm up') for one on this machine",
        )
    return load_settings(home)


def user(args: argparse.Namespace, settings: Settings, name: str) -> Keys:
    """``name``'s keys: held by their agent if they unlocked them (``securecomm unlock``),
    else read from their key file, asking for its passphrase."""
    path = user_key_path(settings.home, name)
    if not path.exists() and (held := _device(args, settings, name)) is not None:
        return held
    if not path.exists():
        raise CliError(
            f"no identity {name!r} at {path}",
            hint=f"make it and register it with: securecomm register {name}"
            + home_flag(settings.home),
        )
    if not (getattr(args, "passphrase_file", None) or getattr(args, "ask_passphrase", False)):
        held = _session(path, name)
        if held is not None:
            return held
    return load_identity(str(path), args)


def _device(args: argparse.Namespace, settings: Settings, name: str) -> Keys | None:
    """The keys of this home if it is a device of ``name`` (``securecomm devices init``):
    its own key, acting for them while their delegation holds."""
    from ..client.devices import device_key_path, keys_of_device

    path = device_key_path(settings.home, name)
    if not path.exists():
        return None
    device = load_identity(str(path), args)
    revoked = (
        f"a revoked key stays revoked: 'securecomm devices init --as {name}"
        f"{home_flag(settings.home)}' makes this home a new key in its place, for {name} to add"
    )
    try:
        keys = keys_of_device(settings, device, name)
    except ServiceError as exc:
        if exc.code in {Code.NOT_FOUND, Code.DEVICE_REVOKED, Code.DELEGATION_EXPIRED}:
            raise CliError(
                f"this home is a device of {name}, and the relay says: {exc}",
                hint=revoked
                if exc.code == Code.DEVICE_REVOKED
                else f"{name} adds it with 'securecomm devices add' on their own device",
            ) from None
        raise
    keys.revoked_hint = revoked
    return keys


def _session(key_path: Path, name: str) -> Keys | None:
    """``name``'s agent, if it runs and holds the keys of their public key file."""
    public_path = key_path.with_suffix(".pub")
    home = key_path.parent.parent
    # Looked for before the agent's module is imported (most commands find none): where
    # agent.socket_path puts it.
    if not public_path.exists() or not (home / "sessions" / f"{name}.sock").exists():
        return None
    from .. import agent
    from ..identity import load_public

    try:
        return agent.find(home, name, load_public(public_path))
    except SecureCommError as exc:
        warn(f"not using {name}'s session: {exc}")
        return None


def warn(line: str) -> None:
    # On a terminal, over a progress bar being drawn (which draws itself again after).
    start = "\r\033[K" if sys.stderr.isatty() else ""
    print(f"{start}warning: {line}", file=sys.stderr)


def command_group(sub: Any, name: str, help_text: str, description: str) -> Any:
    """A command with verbs of its own (``securecomm custodian pending``): its subparsers."""
    parser = sub.add_parser(name, help=help_text, description=description)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)


def warn_if_browsers_refuse(url: str) -> None:
    """A warning when the page is served on a port browsers will not open (ERR_UNSAFE_PORT
    in Chromium): the CLI works there, the web client cannot."""
    port = browser_refuses_port(url)
    if port is not None:
        warn(
            f"browsers refuse to open port {port} (one of the Fetch standard's 'bad ports'),"
            " so the web client cannot be used at that address; the CLI is not affected."
            " To use the page, serve the relay on another port ([server] port in"
            " securecomm.toml)."
        )
