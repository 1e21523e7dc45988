"""The shipped MLflow server, started as deploy/mlflow/kubernetes.yaml configures it, attacked over HTTP.

The server is a real `mlflow server --app-name basic-auth` on loopback, with the shipped
basic_auth.ini and the container's command and environment. What the test changes, and only
that: the volumes become folders of a temporary directory (their mount paths are rewritten, in
the ini too), the secrets are fresh random values, the tracking store is SQLite instead of
PostgreSQL, the server listens on 127.0.0.1 on a free port, with one worker for the test
machine's CPUs.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ADMIN = "admin"
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shipped_container() -> tuple[dict, dict]:
    """The MLflow server's container and its pod spec in kubernetes.yaml."""
    (deployment,) = [
        d for d in yaml.safe_load_all((DEPLOY / "mlflow" / "kubernetes.yaml").read_text())
        if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow"
    ]  # fmt: skip
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container, pod


@dataclass
class Launch:
    """The shipped server's command and environment, moved into `folder`."""

    folder: Path
    command: list[str]
    env: dict[str, str]
    uri: str
    secret_values: dict[tuple[str, str], str]
    mounts: dict[str, Path]

    @classmethod
    def of_shipped(cls, folder: Path) -> Launch:
        container, pod = shipped_container()
        mounts = {m["mountPath"]: folder / m["name"] for m in container["volumeMounts"]}
        for local in mounts.values():
            local.mkdir()

        # One pass, so that a path already moved (under /tmp) is not moved again by the /tmp mount.
        mount_paths = re.compile("|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True)) + r"(?=/|\s|$)")

        def local(text: str) -> str:
            return mount_paths.sub(lambda match: str(mounts[match.group()]), text)

        # The configmap volume holds the shipped ini, under the key kubernetes.yaml names.
        (config_map,) = [v for v in pod["volumes"] if "configMap" in v]
        (config_mount,) = [m for m in container["volumeMounts"] if m["name"] == config_map["name"]]
        ini = (DEPLOY / "mlflow" / "basic_auth.ini").read_text()
        (mounts[config_mount["mountPath"]] / "basic_auth.ini").write_text(local(ini))

        port = free_port()
        secret_values: dict[tuple[str, str], str] = {}
        env = {}
        for entry in container["env"]:
            if "valueFrom" in entry:
                ref = entry["valueFrom"]["secretKeyRef"]
                key = (ref["name"], ref["key"])
                env[entry["name"]] = secret_values.setdefault(key, secrets.token_hex(16))
            else:
                env[entry["name"]] = local(entry["value"])
        env["MLFLOW_BACKEND_STORE_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
        program, *args = container["command"]
        assert program == "mlflow"
        args = [local(a) for a in args]
        args = ["--host=127.0.0.1" if a.startswith("--host") else a for a in args]
        args = [f"--port={port}" if a.startswith("--port") else a for a in args]
        command = [sys.executable, "-m", "mlflow", *args, "--workers=1"]
        return cls(folder, command, env, f"http://127.0.0.1:{port}", secret_values, mounts)

    def popen(self, env: dict[str, str]) -> subprocess.Popen:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        log = (self.folder / "server.log").open("w")
        return subprocess.Popen(
            self.command, env={**clean, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return (self.folder / "server.log").read_text()[-4000:]

    def local_path(self, mount_path: str) -> Path:
        """Where a path inside the container lies in `folder`."""
        for root in sorted(self.mounts, key=len, reverse=True):
            if mount_path.startswith(root + "/"):
                return self.mounts[root] / mount_path[len(root) + 1 :]
        raise AssertionError(f"{mount_path} is on no volume of the container")


def stop(proc: subprocess.Popen) -> None:
    """The whole process group, the server and its uvicorn worker: nothing in it is worth a clean shutdown."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@dataclass
class Server:
    launch: Launch
    admin_password: str
    proc: subprocess.Popen

    def call(
        self, method: str, path: str, user: tuple[str, str] | None = None, body: dict | None = None,
        host: str | None = None,
    ) -> tuple[int, bytes]:  # fmt: skip
        """One HTTP request; the status and the body, whatever the status."""
        request = urllib.request.Request(
            self.launch.uri + path, method=method, data=None if body is None else json.dumps(body).encode()
        )
        request.add_header("Content-Type", "application/json")
        if user:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(user).encode()).decode())
        if host:
            request.add_header("Host", host)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    @property
    def admin(self) -> tuple[str, str]:
        return ADMIN, self.admin_password

    def create_user(self, username: str) -> tuple[str, str]:
        user = (username, secrets.token_hex(16))
        status, body = self.call("POST", "/api/2.0/mlflow/users/create", self.admin, {"username": user[0], "password": user[1]})
        assert status == 200, body
        return user


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    launch = Launch.of_shipped(tmp_path_factory.mktemp("shipped-mlflow"))
    proc = launch.popen(launch.env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy(launch.uri):
            assert proc.poll() is None, launch.log()
            if time.monotonic() >= deadline:
                pytest.fail(f"no /health in {START_TIMEOUT_S} s:\n{launch.log()}")
            time.sleep(0.5)  # between polls of /health, which is the event waited for
        yield Server(launch, launch.env["MLFLOW_AUTH_ADMIN_PASSWORD"], proc)
    finally:
        stop(proc)


def test_the_server_refuses_to_start_without_an_admin_password(tmp_path):
    launch = Launch.of_shipped(tmp_path)
    env = {k: v for k, v in launch.env.items() if k != "MLFLOW_AUTH_ADMIN_PASSWORD"}
    proc = launch.popen(env)
    try:
        returncode = proc.wait(timeout=START_TIMEOUT_S)
    finally:
        stop(proc)
    assert returncode != 0
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" in launch.log()


def test_a_reader_cannot_download_the_password_hashes(server):
    reader = server.create_user("reader")
    ini = (server.launch.local_path("/etc/mlflow/basic_auth.ini")).read_text()
    (database_uri,) = [line.split("=", 1)[1].strip() for line in ini.splitlines() if line.startswith("database_uri")]
    database = Path(database_uri.removeprefix("sqlite:///"))
    assert database.read_bytes().startswith(b"SQLite format 3")  # the hashes are there, with the reader's
    artifacts = server.launch.local_path("/mlartifacts/x").parent
    attempts = [
        database.name,
        os.path.relpath(database, artifacts),  # ../auth-db/basic_auth.db
        urllib.request.quote(os.path.relpath(database, artifacts), safe=""),
    ]
    for path in attempts:
        status, body = server.call("GET", f"/api/2.0/mlflow-artifacts/artifacts/{path}", reader)
        assert status != 200 and b"SQLite format 3" not in body, (path, status)
    status, body = server.call("GET", "/api/2.0/mlflow-artifacts/artifacts", reader)
    assert status == 200 and database.name.encode() not in body


def run_sweep_user(server: Server, username: str, *experiments: str) -> tuple[subprocess.CompletedProcess, str]:
    """deploy/mlflow/sweep_user.py as the Job runs it, with a new sweep password; the run and that password."""
    password = "sweep-" + secrets.token_hex(8)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
        "MLFLOW_TRACKING_URI": server.launch.uri, "MLFLOW_TRACKING_USERNAME": ADMIN,
        "MLFLOW_TRACKING_PASSWORD": server.admin_password, "SWEEP_USERNAME": username, "SWEEP_PASSWORD": password,
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "mlflow" / "sweep_user.py"), *experiments],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return done, password


def test_the_sweep_user_has_edit_on_its_experiment_and_is_no_admin(server):
    first, old_password = run_sweep_user(server, "sweeper", "beta_grid")
    assert first.returncode == 0, first.stdout + first.stderr
    # Run again (a rotated secret): the new password replaces the old one.
    done, password = run_sweep_user(server, "sweeper", "beta_grid")
    assert done.returncode == 0, done.stdout + done.stderr
    for output in (first.stdout + first.stderr, done.stdout + done.stderr):
        assert old_password not in output and password not in output
    sweeper = ("sweeper", password)
    status, body = server.call("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=beta_grid", sweeper)
    assert status == 200, body
    experiment_id = json.loads(body)["experiment"]["experiment_id"]
    status, body = server.call("POST", "/api/2.0/mlflow/runs/create", sweeper, {"experiment_id": experiment_id})
    assert status == 200, body
    status, _ = server.call("POST", "/api/2.0/mlflow/runs/create", ("sweeper", old_password), {"experiment_id": experiment_id})
    assert status == 401
    status, body = server.call("GET", "/api/2.0/mlflow/users/get?username=sweeper", server.admin)
    assert status == 200 and json.loads(body)["user"]["is_admin"] is False
    # Not an admin: it may not make users.
    assert server.call("POST", "/api/2.0/mlflow/users/create", sweeper, {"username": "x", "password": "y" * 16})[0] == 403
    # Everybody else only reads the experiment (default_permission = READ).
    reader = server.create_user("other-reader")
    assert server.call("POST", "/api/2.0/mlflow/runs/create", reader, {"experiment_id": experiment_id})[0] == 403


def test_the_sweep_user_may_not_be_the_admin(server):
    done, _ = run_sweep_user(server, ADMIN, "beta_grid")
    assert done.returncode == 2 and "admin" in done.stderr


def test_the_server_answers_to_its_service_name_and_refuses_other_hosts(server):
    # The Ray pods reach it as http://mlflow:5000 (MLFLOW_TRACKING_URI in raycluster.yaml).
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert server.call("GET", path, server.admin, host="mlflow:5000")[0] == 200
    assert server.call("GET", path, server.admin, host="attacker.example:5000")[0] == 403
    # The kubelet's readiness probe comes with the pod's IP address; /health answers any host.
    assert server.call("GET", "/health", host="10.1.2.3:5000")[0] == 200
