"""Tracking into a real `mlflow server`: on PostgreSQL with basic authentication, and through an outage.

Every server here is a real process: PostgreSQL from the distribution's
packages (`.ci/run` installs them), `mlflow server` on it, and `sweeper
launch` as a subprocess. They are stopped in the fixtures' finalizers.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bench import servers
from bench.servers import MlflowServer
from sweeper.tags import PARENT_TAG, ROLE_TAG, SWEEP_TAG, TRIAL_TAG
from sweeper.tracking.buffer import PENDING_FILE, REJECTED_FILE, TrackingBuffer
from sweeper.tracking.client import SweepTracking, finish_tracking

REPO = Path(__file__).resolve().parents[3]
SMOKE = str(REPO / "configs" / "smoke.yaml")
# Two trials of a short training without evaluations: the tracking is what is under test.
TINY = [
    "--set", "search.objectives.beta_vae.beta=[1.0]", "--set", "search.seeds=2", "--set", "eval.metrics=[]",
    "--set", "search.metric=loss", "--set", "search.mode=min", "--set", "resources.cpu=1",
    "--set", "training.batch_size=8",
]  # fmt: skip


def sweeper_env(**extra: str) -> dict[str, str]:
    """The environment a user has: no tracking or Ray settings of this machine's, plus `extra`."""
    drop = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


class CountingProxy:
    """A TCP forwarder on loopback to a server's port that counts the HTTP requests passing through it:
    how many requests a client made, retries included, whatever time they took."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.uri = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                if count:  # each request line ends so; the JSON bodies never hold it
                    with self._lock:
                        self.requests += data.count(b" HTTP/1.1\r\n")
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def connections(monkeypatch) -> list[tuple[str, int]]:
    """The address of every TCP connection this process's HTTP client (urllib3, under requests and MLflow)
    opens: a request retried after a refused or timed-out connection opens another one."""
    import urllib3.util.connection as connection

    opened: list[tuple[str, int]] = []
    real = connection.create_connection

    def counted(address, *args, **kwargs):  # noqa: ANN001, ANN202 - urllib3's own signature
        opened.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(connection, "create_connection", counted)
    return opened


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of its own, in a temporary folder: the backend URI of an empty database."""
    with servers.postgres() as uri:
        yield uri


@pytest.fixture(scope="module")
def auth_server(postgres, tmp_path_factory):
    """`mlflow server --app-name basic-auth` on the PostgreSQL store; yields (server, admin password)."""
    folder = tmp_path_factory.mktemp("auth-server")
    password = secrets.token_urlsafe(12)
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        f"admin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
    server = MlflowServer(folder, postgres, env, app="basic-auth")
    try:
        server.start()
        yield server, password
    finally:
        server.stop()


def trial_runs(client: MlflowClient, experiment: str) -> tuple[list, list]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return (
        [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"],
        [r for r in runs if r.data.tags.get("sweeper.role") == "trial"],
    )


def reported(sweep_dir: Path) -> dict[str, list[dict]]:
    """Tune's record of every report of every trial (result.json), by Ray trial id: the ground truth."""
    out: dict[str, list[dict]] = {}
    for path in sweep_dir.glob("*/result.json"):
        results = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if results:
            out[results[0]["trial_id"]] = results
    return out


def metric_points(results: list[dict], seed: int) -> dict[str, list[int]]:
    """The steps of every metric the trial reported for its model of `seed`: its own values
    (`model/<seed>/<key>`) and the trial's step, speed and restore, numbers each; the trial's seed means
    under the plain keys are the searcher's, not the model's."""
    own, shared = f"model/{seed}/", ("step", "images_per_sec", "restored_from_step")
    points: dict[str, list[int]] = {}
    for result in results:
        for key, value in result.items():
            name = key.removeprefix(own) if key.startswith(own) else key if key in shared else None
            if name is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                points.setdefault(name, []).append(int(result["step"]))
    return points


def assert_every_point_arrived(client: MlflowClient, sweep_dir: Path, children: list) -> int:
    """Each run's metric histories hold exactly the reported steps; returns the number of points."""
    truth = reported(sweep_dir)
    assert len(truth) == len(children)
    total = 0
    for run in children:
        expected = metric_points(truth[run.data.tags["ray_trial_id"]], int(run.data.tags["seed"]))
        assert set(run.data.metrics) == set(expected)
        for key, steps in expected.items():
            history = client.get_metric_history(run.info.run_id, key)
            assert sorted(m.step for m in history) == steps, key
            total += len(history)
    return total


# -- PostgreSQL + basic authentication ------------------------------------------------------------
@pytest.mark.sweep
def test_sweep_tracks_into_mlflow_on_postgres_with_basic_auth(auth_server, tmp_path, monkeypatch):
    server, password = auth_server
    args = ["launch", SMOKE, *TINY, "--set", "training.steps=20", "--set", "training.report_every=5",
            "--set", f"tracking.uri={server.uri}", "--set", "tracking.experiment=auth"]  # fmt: skip
    env = sweeper_env(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password)
    done = subprocess.run(
        [sys.executable, "-m", "sweeper", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert password not in done.stdout + done.stderr

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    client = MlflowClient(server.uri)
    parents, children = trial_runs(client, "auth")
    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert assert_every_point_arrived(client, sweep_dir, children) > 0
    for run in children:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [5, 10, 15, 20]
    # The credentials are in no param or tag, and in no file of the sweep.
    for run in parents + children:
        assert not any(password in v for v in [*run.data.params.values(), *run.data.tags.values()])
    files = [p for p in sweep_dir.rglob("*") if p.is_file() and p.stat().st_size < 10_000_000]
    assert files and not any(password in p.read_text(errors="ignore") for p in files)


def test_wrong_password_is_a_clear_error_before_anything_starts(auth_server, tmp_path):
    server, password = auth_server
    proxy = CountingProxy(server.port)  # the server's answer, and a count of the requests that got it
    wrong = password + "x"
    args = ["launch", SMOKE, *TINY, "--set", f"tracking.uri={proxy.uri}"]
    done = subprocess.run(
        [sys.executable, "-m", "sweeper", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=sweeper_env(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=wrong),
    )  # fmt: skip
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"tracking URI '{proxy.uri}': authentication failed for user 'admin' (HTTP 401)" in done.stderr
    assert wrong not in done.stdout + done.stderr
    assert not (tmp_path / "sweeps").exists()
    assert proxy.requests == 1  # refused at the first request: no retries with backoff
    proxy.requests = 0

    anonymous = subprocess.run(
        [sys.executable, "-m", "sweeper", *args], cwd=tmp_path, env=sweeper_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert anonymous.returncode == 3
    assert f"tracking URI '{proxy.uri}' requires authentication (HTTP 401)" in anonymous.stderr
    assert not (tmp_path / "sweeps").exists()
    assert proxy.requests == 1
    proxy.close()


def test_a_user_who_may_only_read_is_told_so_and_nothing_is_created(auth_server, tmp_path, monkeypatch):
    from mlflow.server.auth.client import AuthServiceClient

    server, password = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    AuthServiceClient(server.uri).create_user("reader", "reader-password")
    admin = MlflowClient(server.uri)
    experiment = admin.create_experiment("admins-only")  # the server's default permission for others: READ
    args = ["launch", SMOKE, *TINY, "--set", f"tracking.uri={server.uri}", "--set", "tracking.experiment=admins-only"]
    done = subprocess.run(
        [sys.executable, "-m", "sweeper", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=sweeper_env(MLFLOW_TRACKING_USERNAME="reader", MLFLOW_TRACKING_PASSWORD="reader-password"),
    )  # fmt: skip
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "user 'reader' cannot create the sweep's runs in experiment 'admins-only'" in done.stderr
    assert "reader-password" not in done.stdout + done.stderr
    assert not (tmp_path / "sweeps").exists()
    assert admin.search_runs([experiment]) == []


def test_credentials_in_the_tracking_uri_are_refused_and_not_printed(tmp_path, sweeper_cli):
    done = sweeper_cli(["launch", SMOKE, "--set", "tracking.uri=http://admin:hunter2@127.0.0.1:9"], cwd=tmp_path)
    assert done.returncode == 2
    assert "tracking.uri = 'http://***@127.0.0.1:9'" in done.stderr
    assert "MLFLOW_TRACKING_PASSWORD" in done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    assert not (tmp_path / "sweeps").exists()


# -- an outage mid-sweep --------------------------------------------------------------------------
@pytest.fixture
def sqlite_server(tmp_path):
    with servers.mlflow_server(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}") as server:
        yield server


def wait_for(condition, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ended = proc is not None and proc.poll() is not None  # before the look: what it saw came first
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 - the server may be starting
            pass
        if ended:
            raise AssertionError(f"the sweep ended (rc {proc.returncode}) while waiting for {what}")
        time.sleep(1.0)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


OUTAGE_STEPS = 2000  # long enough that the server is back (30 s or more to start here) while the trials train


@pytest.mark.sweep
def test_a_tracking_outage_mid_sweep_loses_no_metric_point(sqlite_server, tmp_path):
    server = sqlite_server
    work = tmp_path / "work"
    work.mkdir()
    args = ["launch", SMOKE, *TINY, "--set", f"training.steps={OUTAGE_STEPS}", "--set", "training.report_every=20",
            "--set", "training.checkpoint_every=400", "--set", "eval.every=400",
            "--set", f"tracking.uri={server.uri}", "--set", "tracking.experiment=outage"]  # fmt: skip
    out = (tmp_path / "sweep.out").open("w")
    sweep = subprocess.Popen(
        [sys.executable, "-m", "sweeper", *args], cwd=work, env=sweeper_env(), stdout=out, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        client = MlflowClient(server.uri)

        def some_points_of_both_trials() -> bool:
            _, children = trial_runs(client, "outage")
            return len(children) == 2 and all(
                len(client.get_metric_history(r.info.run_id, "loss")) >= 2 for r in children
            )

        wait_for(some_points_of_both_trials, 600, "the first reports of both trials in MLflow", sweep)
        server.stop()
        down_at = time.time()

        def reports_during_the_outage() -> bool:
            (sweep_dir,) = (work / "sweeps").iterdir()
            return len([r for rs in reported(sweep_dir).values() for r in rs if r["timestamp"] > down_at]) >= 2

        wait_for(reports_during_the_outage, 300, "two reports of the trials while the server is away", sweep)
        assert sweep.poll() is None, "the sweep stopped during the outage"
        server.start()
        up_at = time.time()
        print(f"server stopped at {down_at:.0f}, answering again at {up_at:.0f}")
        # The kept writes go out while the trials still train, not only when the sweep ends.
        back = f"tracking: MLflow at {server.uri} is back after"
        wait_for(lambda: back in (tmp_path / "sweep.out").read_text(), 300, "the flush of the kept writes", sweep)
        sweep.wait(timeout=600)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGTERM)
            sweep.wait(timeout=60)
        out.close()
    output = (tmp_path / "sweep.out").read_text()
    assert sweep.returncode == 0, output[-4000:]
    assert f"tracking: MLflow at {server.uri} is not taking writes (connection refused)" in output

    (sweep_dir,) = (work / "sweeps").iterdir()
    assert not (sweep_dir / PENDING_FILE).exists() and not (sweep_dir / REJECTED_FILE).exists()
    # The trials went on training while the server was away: reports from the outage exist.
    during = [r for rs in reported(sweep_dir).values() for r in rs if down_at < r["timestamp"] < up_at]
    assert len(during) >= 2, "no trial reported during the outage: it did not happen mid-sweep"

    parents, children = trial_runs(client, "outage")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    points = assert_every_point_arrived(client, sweep_dir, children)
    for run in children:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == list(range(20, OUTAGE_STEPS + 1, 20))
        assert run.data.tags["checkpoint"]
    print(f"outage {up_at - down_at:.0f} s, {len(during)} reports during it, {points} metric points all in MLflow")


# -- the buffer on its own, against a real server -------------------------------------------------
@pytest.fixture
def retry_after_the_test(monkeypatch) -> None:
    """A retry interval longer than any test here: "not tried again before it" holds however slow the machine
    (with the real 5 s, a pause of the loaded machine between two flushes let a retry through)."""
    import sweeper.tracking.buffer as buffer

    monkeypatch.setattr(buffer, "RETRY_EVERY_S", 3600.0)


def report(step: int) -> dict:
    now = int(time.time() * 1000)
    return {"step": step, "metrics": [["loss", 100.0 / step, now, step], ["step", float(step), now, step]], "tags": {}}


def test_writes_kept_during_an_outage_outlive_the_driver_and_are_written_later(
    sqlite_server, tmp_path, connections, retry_after_the_test
):
    server = sqlite_server
    client = MlflowClient(server.uri)
    experiment = client.create_experiment("kept")
    parent = client.create_run(experiment, tags={SWEEP_TAG: "s", ROLE_TAG: "sweep"}).info.run_id
    tracking = SweepTracking(server.uri, experiment, parent, "s")
    folder = tmp_path / "sweep"
    folder.mkdir()
    lines: list[str] = []
    buffer = TrackingBuffer(tracking, folder, lines.append)
    tags = {PARENT_TAG: parent, SWEEP_TAG: "s", TRIAL_TAG: "t1", ROLE_TAG: "trial"}
    buffer.add("open", "t1", name="trial 1", tags=tags)
    buffer.add("metrics", "t1", **report(1))
    assert buffer.flush() and not (folder / PENDING_FILE).exists()

    server.stop()
    before = len(connections)
    for step in range(2, 41):
        buffer.add("metrics", "t1", **report(step))
        assert not buffer.flush()
    assert len(connections) - before == 1  # one refused request, then none before the retry: no backoff loop
    buffer.add("terminate", "t1", status="FINISHED")
    buffer.flush()
    assert [line for line in lines if "not taking writes" in line] == [
        f"tracking: MLflow at {server.uri} is not taking writes (connection refused); "
        "training goes on, its tracking is kept and retried every 3600 s"
    ]
    # The driver dies here: what it kept is on disk, in order.
    kept = [json.loads(line) for line in (folder / PENDING_FILE).read_text().splitlines()]
    assert [(op["op"], op.get("step")) for op in kept] == [("metrics", s) for s in range(2, 41)] + [("terminate", None)]
    del buffer

    # The end of the sweep waits a bounded time for the server, then says where the writes are.
    assert finish_tracking(tracking, folder, "FINISHED", wait_s=3, echo=lines.append) == 41
    assert f"did not take 41 writes within 3 s; they are kept in {folder / PENDING_FILE}" in lines[-1]
    assert "sweeper resume" in lines[-1]

    # Later (a resume does this), with the server back: everything lands, once, in order.
    server.start()
    assert finish_tracking(tracking, folder, "FINISHED", wait_s=60, echo=lines.append) == 0
    assert not (folder / PENDING_FILE).exists() and not (folder / REJECTED_FILE).exists()
    (run,) = client.search_runs([experiment], filter_string=f"tags.{TRIAL_TAG} = 't1'")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == list(range(1, 41))
    assert run.info.status == "FINISHED" and client.get_run(parent).info.status == "FINISHED"


def test_a_server_that_does_not_answer_holds_the_driver_one_timeout_then_not_again(
    tmp_path, connections, retry_after_the_test
):
    """A black hole (connections accepted, never answered): one request's timeout, then retries are spaced."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        uri = f"http://127.0.0.1:{hole.getsockname()[1]}"
        lines: list[str] = []
        buffer = TrackingBuffer(SweepTracking(uri, "1", "parent", "s"), tmp_path, lines.append)
        buffer.add("terminate", "parent", status="FINISHED")
        assert not buffer.flush()
        first = len(connections)
        assert not buffer.flush()
        second = len(connections) - first
    assert (first, second) == (1, 0)  # one request timed out, not retried; the next flush waits its turn
    assert lines == [
        f"tracking: MLflow at {uri} is not taking writes (timed out); "
        "training goes on, its tracking is kept and retried every 3600 s"
    ]
    assert (tmp_path / PENDING_FILE).is_file()


@pytest.mark.sweep
def test_a_server_still_away_at_the_end_leaves_the_writes_on_disk_and_resume_writes_them(sqlite_server, tmp_path):
    server = sqlite_server
    work = tmp_path / "work"
    work.mkdir()
    args = ["launch", SMOKE, *TINY, "--set", "training.steps=200", "--set", "training.report_every=20",
            "--set", "eval.every=200", "--set", f"tracking.uri={server.uri}", "--set", "tracking.experiment=away", "--set", "tracking.wait_s=5"]  # fmt: skip
    out = (tmp_path / "sweep.out").open("w")
    sweep = subprocess.Popen(
        [sys.executable, "-m", "sweeper", *args], cwd=work, env=sweeper_env(),
        stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    client = MlflowClient(server.uri)
    try:
        wait_for(lambda: len(trial_runs(client, "away")[1]) == 2, 600, "both trials' runs in MLflow", sweep)
        server.stop()
        sweep.wait(timeout=600)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGTERM)
            sweep.wait(timeout=60)
        out.close()
    output = (tmp_path / "sweep.out").read_text()
    assert sweep.returncode == 3, output[-4000:]
    (sweep_dir,) = (work / "sweeps").iterdir()
    pending = sweep_dir / PENDING_FILE
    assert "did not take" in output and f"they are kept in {pending}" in output
    assert "tracking writes are not in MLflow yet" in output
    kept = len(pending.read_text().splitlines())
    assert kept > 2

    server.start()
    done = subprocess.run(
        [sys.executable, "-m", "sweeper", "resume", sweep_dir.name, "--storage", str(work / "sweeps")],
        cwd=work, env=sweeper_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not pending.exists()
    parents, children = trial_runs(client, "away")
    assert parents[0].info.status == "FINISHED"
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    points = assert_every_point_arrived(client, sweep_dir, children)
    print(f"{kept} writes kept on disk at the end, written by the resume: {points} metric points in MLflow")
