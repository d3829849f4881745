"""The ``securecomm`` command: a thin layer over the library, one module per audience.

- :mod:`.offline`: split, combine, keygen, encrypt, decrypt (single-machine mode, no server)
- :mod:`.local`: init, up, demo, clean (the whole system on this machine)
- :mod:`.people`: send, inbox, read, unsend
- :mod:`.sessions`: unlock, lock, sessions (a key unlocked for a while, by an agent),
  passphrase (set or change a key file's)
- :mod:`.devices`: devices init, add, list, revoke (another device acting for a person)
- :mod:`.operators`: a custodian's operator (pending, approve, deny) and audit verify
- :mod:`.services`: relay serve, custodian serve, db status|upgrade, and mitm for testing
- :mod:`.network`: relay init, custodian init, network create (each party on its own host)

This module only builds the parser from theirs and turns errors into exit codes:
0 success, 1 a failure (decryption, signature, key file, I/O), 2 bad input (arguments,
shares, formats), 130 interrupted, 141 the output's reader went away (quietly, as
`yes | head`). Errors are one line and a hint, never a traceback,
never a secret.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__
from ..errors import (
    DecryptionError,
    FormatError,
    InterruptedOperationError,
    ParameterError,
    SecureCommError,
    ShareError,
    SignatureError,
)
from ._common import (
    EXIT_BAD_INPUT,
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    CliError,
    stdout_gone,
)

__all__ = ["build_parser", "main"]


#: The modules that add the top-level commands, in the order `--help` lists them, each
#: with its commands. A command builds its own module's part of the parser only: importing
#: the other modules and building their parsers cost every command 40-50 ms (issue 16).
#: The services' module, the network's and the operators' add to one another's commands.
_GROUPS: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = (
    (("offline",), frozenset({"split", "combine", "keygen", "encrypt", "decrypt"})),
    (("local",), frozenset({"init", "up", "demo", "clean"})),
    (("people",), frozenset({"send", "inbox", "read", "unsend"})),
    (("sessions",), frozenset({"unlock", "passphrase", "lock", "sessions"})),
    (("devices",), frozenset({"devices"})),
    (("contacts",), frozenset({"register", "contacts"})),
    (
        ("services", "network", "operators"),
        frozenset({"relay", "custodian", "db", "mitm", "network", "join", "audit"}),
    ),
    (("tls",), frozenset({"tls"})),
)


def _add_group(sub: Any, modules: tuple[str, ...]) -> None:
    loaded = [importlib.import_module(f".{name}", __name__) for name in modules]
    if modules == ("services", "network", "operators"):
        services, network, operators = loaded
        relay, custodian = services.add_commands(sub)
        network.add_commands(sub, relay, custodian)
        operators.add_commands(sub, custodian)
    else:
        (module,) = loaded
        module.add_commands(sub)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every command's, or only the part ``command`` (a
    top-level command name) is in when it is one."""
    parser = argparse.ArgumentParser(
        prog="securecomm",
        description=(
            "Encrypt a message with AES-256-GCM and split its key among custodians with"
            " Shamir's secret sharing, so that no single party can read it."
        ),
        epilog="Exit codes: 0 success, 1 failure, 2 bad input, 130 interrupted, 141 the"
        " output's reader went away."
        " 'securecomm COMMAND --help' for more.",
    )
    parser.add_argument("--version", action="version", version=f"securecomm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    known = any(command in commands for _, commands in _GROUPS)
    for modules, commands in _GROUPS:
        if not known or command in commands:
            _add_group(sub, modules)
    return parser


def _fail(message: str, hint: str | None, code: int) -> NoReturn:
    print(f"securecomm: error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    sys.exit(code)


def _reader_gone() -> NoReturn:
    """Whoever read the output stopped reading (`securecomm inbox | head`): end quietly, as
    a process its pipe's signal ends, with nothing left to write at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(EXIT_BROKEN_PIPE)


def main(argv: Sequence[str] | None = None) -> None:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(words[0] if words else None).parse_args(words)
    try:
        args.func(args)
    except CliError as exc:
        _fail(str(exc), exc.hint, exc.code)
    except InterruptedOperationError as exc:
        _fail(str(exc), None, EXIT_INTERRUPTED)
    except (FormatError, ShareError, ParameterError) as exc:
        _fail(str(exc), exc.hint, EXIT_BAD_INPUT)
    except (DecryptionError, SignatureError) as exc:
        _fail(str(exc), exc.hint or "nothing was written", EXIT_FAILURE)
    except SecureCommError as exc:
        _fail(str(exc), exc.hint, EXIT_FAILURE)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError) and stdout_gone():
            _reader_gone()
        _fail(
            f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": "),
            None,
            EXIT_FAILURE,
        )
    except KeyboardInterrupt:
        _fail("interrupted", None, EXIT_INTERRUPTED)
    except Exception as exc:
        # Third-party messages may quote data; print the type only.
        _fail(f"internal error ({type(exc).__name__})", "please report this", EXIT_FAILURE)
