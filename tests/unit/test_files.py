"""_files: a whole file or the old one, and a lock that holds between threads and processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from securecomm._files import locked, write_atomic


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b"one", private=True)
    write_atomic(target, b"two", private=True)
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_held_lock_keeps_another_thread_out_until_it_is_let_go(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    entered = threading.Event()

    def other() -> None:
        with locked(target):
            entered.set()

    with locked(target):
        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.3), "a second holder entered while the lock was held"
    assert entered.wait(10), "the second holder never entered once the lock was let go"
    thread.join()
    assert (tmp_path / "state.json.lock").stat().st_mode & 0o777 == 0o600


def test_a_held_lock_keeps_another_process_out(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    script = (
        "import sys\nfrom securecomm._files import locked\n"
        "with locked(sys.argv[1]):\n    print('in', flush=True)\n"
    )
    with locked(target):
        other = subprocess.Popen(
            [sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True
        )
        try:
            other.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
        assert other.returncode is None, "another process took the lock while it was held"
    out, _ = other.communicate(timeout=30)
    assert out == "in\n"
