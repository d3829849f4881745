"""A command run on a pseudo-terminal, as a person at a keyboard runs it: what it printed,
and the answers typed when it asked (getpass reads the controlling terminal, not stdin)."""

from __future__ import annotations

import os
import pty
import select
import signal
import time


def run_on_terminal(
    argv: list[str], answers: dict[str, str], *, env: dict[str, str], timeout: float = 60.0
) -> tuple[int, str]:
    """Run ``argv`` on a new terminal; whenever it has printed a key of ``answers`` since
    the last answer and then waits (prints nothing for a tenth of a second), type that
    answer and Enter. Returns the exit status and everything it printed."""
    pid, master = pty.fork()
    if pid == 0:  # the command, its terminal the pty's other end
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    output = b""
    since_answer = 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:  # it waits: for an answer, if it asked
                pending = output[since_answer:].decode(errors="replace")
                for prompt, answer in answers.items():
                    if prompt in pending:
                        os.write(master, answer.encode() + b"\r")
                        since_answer = len(output)
                        break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # the command ended: its side of the terminal closed
                break
            if not data:
                break
            output += data
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")
