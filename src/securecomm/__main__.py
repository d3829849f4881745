"""``securecomm`` and ``python -m securecomm``: start the command line, quietly on Ctrl-C.

Only the standard library is imported here, so an interrupt that arrives while the
rest loads (or while the arguments are read) ends the process with a line and exit
code 130 instead of a traceback.
"""

from __future__ import annotations

import atexit
import os
import sys

TYPE_CHECKING = False  # as in securecomm/__init__.py: typing is not imported at start
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> None:
    try:
        from .cli import main as run

        run(argv)
    except KeyboardInterrupt:
        print("securecomm: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        # The command is done: a Ctrl-C now would only interrupt the interpreter's own
        # shutdown (flushing logs, joining threads) and print its traceback. (signal is
        # imported here: with enum, 3 ms more before the try above.)
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run() -> NoReturn:
    """The installed command: :func:`main`, then the process ends as soon as its exit
    handlers have run and its output is out.

    The interpreter's own teardown (clearing every module, collecting what they held)
    took a command 80-130 ms after its work was done, a fifth of a `securecomm send`
    (issue 16); the operating system frees the memory at once. The exit handlers still
    run (pools closed, logs flushed, weakref finalizers); every file the commands write
    is closed before they return."""
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = _status(exc.code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # its reader went (`securecomm inbox | head`): 128 + SIGPIPE
            status = status or 141
        except (OSError, ValueError):  # what Python itself exits 120 for
            status = status or 120
    os._exit(status)


def _status(code: object) -> int:
    """The exit status ``sys.exit(code)`` gives: None is 0, an integer itself, anything
    else printed to stderr and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    run()
