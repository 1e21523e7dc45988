"""Real tracking servers as child processes: PostgreSQL in a temporary folder, and `mlflow server` on a store.

The tracking tests and the tracking benchmark start them the same way, so the
figures are of the store the tests check: PostgreSQL from the distribution's
packages (`initdb`, `pg_ctl`, `createdb`) and one `mlflow server` worker on it.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` as a child process, stopped and started again on the same port and store."""

    def __init__(self, folder: Path, backend: str, env: dict[str, str] | None = None, app: str | None = None):
        self.folder, self.backend, self.env, self.app = folder, backend, env or {}, app
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout_s: float = 180.0) -> None:
        self.starts += 1
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", self.backend, "--artifacts-destination", str(self.folder / "artifacts"),
            "--workers", "1",
        ]  # fmt: skip
        if self.app:
            command += ["--app-name", self.app]
        log = (self.folder / f"server-{self.starts}.log").open("w")
        self.proc = subprocess.Popen(
            command, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not come up in {timeout_s} s:\n{self.log()}")

    def stop(self) -> None:
        """The whole process group: the server and its uvicorn workers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def log(self) -> str:
        return (self.folder / f"server-{self.starts}.log").read_text()[-3000:]


def postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql; .ci/run does it)")
    return found


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own, in a temporary folder: the backend URI of an empty database.
    Stopped, and its folder removed, on leaving."""
    folder = Path(tempfile.mkdtemp(prefix="sweeper-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(folder, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    password = secrets.token_hex(8)
    (folder / "pw").write_text(password)
    if as_postgres:
        shutil.chown(folder / "pw", "postgres", "postgres")
    port = free_port()
    data = folder / "data"

    def run(*command: str) -> None:
        done = subprocess.run([*as_postgres, *command], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{command}: {done.stdout}{done.stderr}")

    try:
        run(postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(folder / "pw"),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8")  # fmt: skip
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
        run(postgres_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "postgres.log"), "-w", "start")
        try:
            run(postgres_bin("createdb"), "-h", str(folder), "-p", str(port), "-U", "postgres", "mlflow")
            yield f"postgresql+psycopg2://postgres:{password}@127.0.0.1:{port}/mlflow"
        finally:
            subprocess.run(
                [*as_postgres, postgres_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], timeout=120
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def mlflow_server(folder: Path, backend: str) -> Iterator[MlflowServer]:
    """A started `mlflow server` on `backend`, stopped on leaving."""
    server = MlflowServer(folder, backend)
    try:
        server.start()
        yield server
    finally:
        server.stop()
