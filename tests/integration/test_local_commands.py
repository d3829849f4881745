"""The commands that run the local system: ``clean``, ``up`` when it cannot start, the demo.

``clean`` touches its data directory only, never the files of the directory
it is run from. A second ``up``, or any program on one of its ports, makes
``up`` fail before it starts anything, naming the port. A service that stops
under ``up`` is reported with its reason and the command that starts it again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .test_cli_system import CLI, TIMEOUT, clean_env, explain


def run_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``securecomm ARGS`` from ``cwd``, with no home given: the default ./securecomm-data."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
    )


# clean


def user_files(root: Path) -> list[Path]:
    """Files a user keeps where ``clean`` used to sweep: build, egg-info, caches."""
    files = [
        root / "build" / "important.txt",
        root / "src" / "x.egg-info" / "PKG-INFO",
        root / "pkg" / "__pycache__" / "mod.cpython-311.pyc",
        root / ".pytest_cache" / "README.md",
    ]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep\n")
    return files


def test_clean_removes_only_the_logs_under_home(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    home = tmp_path / "securecomm-data"
    initialised = run_in(tmp_path, "init")
    assert initialised.returncode == 0, explain(initialised)
    logs = home / "logs"
    logs.mkdir()
    (logs / "relay.log").write_text("a log\n")

    cleaned = run_in(tmp_path, "clean")
    assert cleaned.returncode == 0, explain(cleaned)
    for path in files:
        assert path.read_text() == "keep\n", f"{path} removed\n{explain(cleaned)}"
    assert not logs.exists()
    assert (home / "known_keys.json").exists()
    assert f"removed {logs}" in cleaned.stdout, explain(cleaned)

    again = run_in(tmp_path, "clean")
    assert again.returncode == 0, explain(again)
    assert "nothing to remove" in again.stdout, explain(again)


def test_clean_all_removes_home_and_nothing_else(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    home = tmp_path / "securecomm-data"
    initialised = run_in(tmp_path, "init")
    assert initialised.returncode == 0, explain(initialised)

    refused = run_in(tmp_path, "clean", "--all")  # stdin is not a terminal: no one to ask
    assert refused.returncode == 2, explain(refused)
    assert (home / "known_keys.json").exists()

    cleaned = run_in(tmp_path, "clean", "--all", "--yes")
    assert cleaned.returncode == 0, explain(cleaned)
    assert not home.exists()
    assert f"removed {home}" in cleaned.stdout, explain(cleaned)
    for path in files:
        assert path.read_text() == "keep\n", f"{path} removed\n{explain(cleaned)}"


def test_clean_all_refuses_a_directory_that_is_not_a_data_directory(tmp_path: Path) -> None:
    files = user_files(tmp_path)
    refused = run_in(tmp_path, "clean", "--all", "--yes", "--home", str(tmp_path))
    assert refused.returncode == 2, explain(refused)
    assert "not a securecomm data directory" in refused.stderr, explain(refused)
    for path in files:
        assert path.read_text() == "keep\n", f"{path} removed\n{explain(refused)}"


def test_clean_help_says_it_stays_in_home() -> None:
    helped = subprocess.run(
        [*CLI, "clean", "--help"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert helped.returncode == 0, explain(helped)
    flat = " ".join(helped.stdout.split())
    assert "under the current directory" not in flat
    assert "nothing outside it" in flat
