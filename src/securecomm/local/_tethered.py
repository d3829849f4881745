"""Run a command that ends with the process that started it: ``python -m
securecomm.local._tethered PARENT_PID PROGRAM [ARG ...]``.

``up`` starts each service (and nginx, its front for relay replicas) in a session of
its own, so that Ctrl-C reaches ``up`` alone, which then stops each in order. Killed
outright (kill -9, the machine out of memory) ``up`` could stop nothing: its services
ran on without it, holding their ports. Through this, Linux sends each SIGTERM when
``up`` ends however it ends (``prctl(PR_SET_PDEATHSIG)``, which an exec keeps); gunicorn
and nginx take SIGTERM for a stop. A command whose parent is already another process
(``up`` gone before this ran) is not run. Elsewhere than Linux the command just runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def main(argv: list[str]) -> None:
    parent, command = argv[0], argv[1:]
    if sys.platform.startswith("linux"):
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != parent:
        sys.exit(f"{command[0]}: not started, as the process that started it ({parent}) is gone")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
