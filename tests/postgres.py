"""A real PostgreSQL server for the tests (and benchmarks): initdb + pg_ctl on a temp folder.

The Debian package (``postgresql``; ``.ci/run`` and ``make install-system`` install it) gives
``initdb`` / ``pg_ctl``. PostgreSQL refuses to run as root, so under root (CI) the server
runs as the ``postgres`` system user through ``runuser``. It listens on 127.0.0.1 on a free
port with ``trust`` authentication for local connections only, and is stopped (``pg_ctl stop
-m immediate``) and its folder removed at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One throw-away PostgreSQL cluster; ``url(db)`` gives SQLAlchemy URLs into it."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise FileNotFoundError(
                "PostgreSQL is not installed (initdb / pg_ctl not found): "
                "apt-get install postgresql (or run `make install-system`)")
        self.root = Path(tempfile.mkdtemp(prefix="tt-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:  # postgres refuses root: hand the folder to the postgres user
            shutil.chown(self.root, "postgres", "postgres")
        self.user = "postgres" if self.as_root else os.environ.get("USER", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> "PostgresServer":
        self._run(self.initdb, "-D", str(self.data), "-U", self.user, "--auth=trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        res = self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"),
                        "-o", opts, "-w", "-t", "60", "start", check=False)
        if res.returncode != 0:
            log = (self.root / "log").read_text(errors="replace")[-2000:] \
                if (self.root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {res.stderr.strip()}\n{log}")
        return self

    def url(self, db: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import sqlalchemy as sa

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop",
                      check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
