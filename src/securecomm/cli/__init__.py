"""The ``securecomm`` command: a thin layer over the library, one module per audience.

- :mod:`.offline`: split, combine, keygen, encrypt, decrypt (single-machine mode, no server)
- :mod:`.local`: init, up, demo, clean (the whole system on this machine)
- :mod:`.people`: send, inbox, read, unsend, delete
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
from collections.abc import Callable, Sequence
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


def _adds(module: str) -> Callable[[Any], None]:
    """What adds the commands of the one module ``module`` (imported only then)."""
    return lambda sub: importlib.import_module(f".{module}", __name__).add_commands(sub)


def _add_services(sub: Any) -> None:
    """The services' commands, and those the network's and the operators' modules add to
    the relay's and the custodian's."""
    from . import network, operators, services

    relay, custodian = services.add_commands(sub)
    network.add_commands(sub, relay, custodian)
    operators.add_commands(sub, custodian)


#: The top-level commands, in the order `--help` lists them, each group with what adds it.
#: A command builds its own group's part of the parser only: importing the other modules
#: and building their parsers cost every command 40-50 ms (issue 16).
_GROUPS: tuple[tuple[frozenset[str], Callable[[Any], None]], ...] = (
    (frozenset({"split", "combine", "keygen", "encrypt", "decrypt"}), _adds("offline")),
    (frozenset({"init", "up", "demo", "clean"}), _adds("local")),
    (frozenset({"send", "inbox", "read", "unsend", "delete"}), _adds("people")),
    (frozenset({"unlock", "passphrase", "lock", "sessions"}), _adds("sessions")),
    (frozenset({"devices"}), _adds("devices")),
    (frozenset({"register", "contacts"}), _adds("contacts")),
    (
        frozenset({"relay", "custodian", "db", "mitm", "network", "join", "audit"}),
        _add_services,
    ),
    (frozenset({"tls"}), _adds("tls")),
)


#: Commands whose positional words are secrets (text shares, a message), each with the
#: attribute they go to. argparse would quote such a word in an error: a word that begins
#: with one '-' (as a damaged share or a message may) it takes for an unknown option, and
#: a share after an option for an argument too many. Here the first is a word like any
#: other and the second joins the shares; an error names no such word. Neither command
#: has a short option but -h.
_SECRET_POSITIONALS = {"combine": "shares", "send": "text"}


def _chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)command ``args`` were parsed for: its usage is the one to show
    with an error about them (argparse's own shows the top level's, ``securecomm [-h]
    [--version] COMMAND ...``, for an unknown option of any command)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _chosen(chosen, args)
    return parser


def _parse(words: list[str]) -> argparse.Namespace:
    command = words[0] if words else None
    parser = build_parser(command)
    dest = _SECRET_POSITIONALS.get(command or "")
    if dest is None:
        args, extra = parser.parse_known_args(words)
        if extra:
            _chosen(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
        return args
    # Words such as "-x..." pass argparse as stand-ins, "(word N)", and come back after;
    # but one after an option that takes a value is that option's (`--expires -1d`), given
    # to it as `--expires=-1d`, so that an error about it shows it as it was typed.
    takes_a_value = _options_with_a_value(_chosen(parser, argparse.Namespace(command=command)))
    held: dict[str, str] = {}
    given = words[:1]
    for i, word in enumerate(words[1:], start=1):
        if word == "--":
            given += words[i:]
            break
        if given[-1] in takes_a_value and word.startswith("-") and word != "-":
            given[-1] = f"{given[-1]}={word}"
        elif len(word) > 1 and word[0] == "-" and word[1] != "-" and word != "-h":
            stand_in = f"(word {i})"
            while stand_in in words:
                stand_in = f"({stand_in})"
            given.append(stand_in)
            held[stand_in] = word
        else:
            given.append(word)
    args, extra = parser.parse_known_args(given)
    unknown = [word for word in extra if word.startswith("--")]
    if unknown:
        _chosen(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    # argparse fills a positional from one run of words; later ones it leaves, in order.
    value = getattr(args, dest)
    if isinstance(value, list):
        value, extra = value + extra, []
    elif value is None and extra:
        value, extra = extra[0], extra[1:]
    if extra:
        _chosen(parser, args).error(f"{len(extra)} word(s) more than '{command}' takes (not shown)")
    setattr(args, dest, value)
    for name, found in vars(args).items():
        if isinstance(found, str):
            setattr(args, name, held.get(found, found))
        elif isinstance(found, list):
            setattr(args, name, [held.get(v, v) if isinstance(v, str) else v for v in found])
    return args


def _options_with_a_value(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings of ``parser`` that take one value (``--expires``, not ``-h``)."""
    return {
        option
        for action in parser._actions
        if action.option_strings and action.nargs is None
        for option in action.option_strings
    }


class _Parser(argparse.ArgumentParser):
    """argparse's parser, taking no option by a prefix of its name: ``send --as x`` is an
    unknown option, not ``--ask-passphrase``. Every subcommand's parser is one too (argparse
    makes them of the class of the parser they are added to)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every command's, or only the part ``command`` (a
    top-level command name) is in when it is one."""
    parser = _Parser(
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
    known = any(command in commands for commands, _ in _GROUPS)
    for commands, add in _GROUPS:
        if not known or command in commands:
            add(sub)
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
    args = _parse(words)
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
