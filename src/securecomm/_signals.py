"""The signals that ask a command to stop: what ``up`` and a send or a read in progress
take as "stop now, in order" instead of dying mid-step."""

from __future__ import annotations

import signal

__all__ = ["stop_signals"]


def stop_signals() -> tuple[signal.Signals, ...]:
    """Ctrl-C (SIGINT), SIGTERM, and SIGHUP (the terminal closed, an ssh link dropped)
    unless this process was started with SIGHUP ignored (``nohup``), which stays so."""
    hangup = () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
    return (signal.SIGINT, signal.SIGTERM, *hangup)
