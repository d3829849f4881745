"""A throwaway PostgreSQL cluster for the tests: Debian's server, never a mock.

``initdb`` in a temporary directory, owned by the ``postgres`` user when the tests run as
root (PostgreSQL refuses to run as root), listening on a free port on 127.0.0.1 and on a
Unix socket in that directory only; stopped and removed by :meth:`Cluster.stop`. Each
caller gets a database of its own from :meth:`Cluster.database`.

``make test`` installs the server when it is missing (see the Makefile). Run by hand
without it, the PostgreSQL tests fail with what to install rather than being skipped.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Cluster", "find_bin", "start_cluster"]

SUPERUSER = "postgres"


def find_bin(name: str) -> str:
    """A PostgreSQL program: from Debian's versioned directory (newest first), else PATH."""
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed; the tests need Debian's postgresql"
            " (apt-get install postgresql, as root; make test does it)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    directory: Path
    port: int
    _as_user: list[str]
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def run(
        self, program: str, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A PostgreSQL program run as the cluster's owner."""
        return subprocess.run(
            [*self._as_user, find_bin(program), *args],
            capture_output=True,
            text=True,
            check=check,
            cwd=self.directory,
            input=stdin,
        )

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql; its output, unaligned and without headers."""
        done = self.run(
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
            "-d", database, "-c", statement,
        )  # fmt: skip
        return done.stdout.strip()

    def restore(self, url: str, dump: str) -> None:
        """Run ``dump`` (SQL, as ``pg_dump`` writes it) in the database at ``url``."""
        self.run(
            "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(self.port), "-U", SUPERUSER, "-d", url.rsplit("/", 1)[1], "-f", "-",
            stdin=dump,
        )  # fmt: skip

    def database(self, prefix: str = "test") -> str:
        """A new, empty database; its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster() -> Cluster:
    """initdb and start a cluster of our own; the caller stops it."""
    initdb = find_bin("initdb")  # fail before making anything if it is not installed
    directory = Path(tempfile.mkdtemp(prefix="securecomm-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster = Cluster(directory, _free_port(), as_user)
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(cluster.data), "-U", SUPERUSER, "--auth=trust",
             "--no-instructions", "-E", "UTF8", "--locale=C.UTF-8"],
            capture_output=True, text=True, check=True, cwd=directory,
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={cluster.port}"
            f" -c unix_socket_directories={directory} -c max_connections=300"
        )
        cluster.run(
            "pg_ctl", "-D", str(cluster.data), "-l", str(directory / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        deadline = time.monotonic() + 30
        ready = ("pg_isready", "-h", "127.0.0.1", "-p", str(cluster.port))
        while cluster.run(*ready, check=False).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("the test PostgreSQL cluster did not become ready")
            time.sleep(0.1)
    except BaseException as error:
        log = directory / "server.log"
        detail = log.read_text()[-2000:] if log.exists() else ""
        if isinstance(error, subprocess.CalledProcessError):
            detail = f"{error.stderr}\n{detail}"
        cluster.stop()
        raise RuntimeError(f"could not start a PostgreSQL cluster: {detail}") from error
    return cluster
