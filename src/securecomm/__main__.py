"""``securecomm`` and ``python -m securecomm``: start the command line, quietly on Ctrl-C.

Only the standard library is imported here, so an interrupt that arrives while the
rest loads (or while the arguments are read) ends the process with a line and exit
code 130 instead of a traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

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
        # shutdown (flushing logs, joining threads) and print its traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    main()
