"""The deployment files agree with the code (image, command, resources, environment) and ship no
secret, no privilege and no exposure they do not need (the live server: test_mlflow_server.py)."""

import configparser
import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO = DEPLOY.parent
IMAGE = "beta-sweeper:0.1.0"


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(path: Path, kind: str) -> dict:
    (doc,) = [d for d in documents(path) if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_parses(path):
    assert documents(path)


def test_ray_cluster_runs_the_project_image_with_token_auth_and_no_trials_on_the_head():
    cluster = by_kind(DEPLOY / "kuberay" / "raycluster.yaml", "RayCluster")["spec"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    containers = [head["template"]["spec"]["containers"][0]]
    containers += [g["template"]["spec"]["containers"][0] for g in cluster["workerGroupSpecs"]]
    for container in containers:
        assert container["image"] == IMAGE
        env = {e["name"] for e in container["env"]}
        # Read by sweeper.config (tracking URI) and by the MLflow client (credentials).
        assert {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= env
        assert {"name": "sweeps", "mountPath": "/mnt/sweeps"} in container["volumeMounts"]
    gpu_group = cluster["workerGroupSpecs"][0]
    assert gpu_group["minReplicas"] < gpu_group["maxReplicas"] and cluster["enableInTreeAutoscaling"]


def test_gpu_workers_fit_a_whole_number_of_beta_grid_trials():
    cluster = by_kind(DEPLOY / "kuberay" / "raycluster.yaml", "RayCluster")["spec"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]
    gpus, cpus = int(worker["limits"]["nvidia.com/gpu"]), int(worker["limits"]["cpu"])
    resources = load_config(REPO / "configs" / "beta_grid.yaml").resources
    per_gpu = gpus / resources.gpu
    assert per_gpu == int(per_gpu) and per_gpu >= 2
    assert cpus >= per_gpu * resources.cpu  # the CPUs do not cap the packing


def test_ray_job_runs_a_valid_sweeper_command_on_shared_storage():
    job = by_kind(DEPLOY / "kuberay" / "rayjob.yaml", "RayJob")["spec"]
    assert job["submitterPodTemplate"]["spec"]["containers"][0]["image"] == IMAGE
    argv = shlex.split(job["entrypoint"])
    assert argv[:2] == ["sweeper", "launch"]
    result = CliRunner().invoke(app, [*argv[1:], "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "storage /mnt/sweeps" in result.output


def mlflow_servers() -> dict[str, tuple[list[str], dict[str, str]]]:
    """The MLflow server's command line and plain environment, in compose and in Kubernetes."""
    compose = documents(DEPLOY / "mlflow" / "compose.yaml")[0]["services"]["mlflow"]
    deployment = by_kind(DEPLOY / "mlflow" / "kubernetes.yaml", "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    k8s_env = {e["name"]: e.get("value") for e in container["env"]}
    return {
        "compose": (compose["command"], compose["environment"]),
        "kubernetes": ([*container.get("command", []), *container.get("args", [])], k8s_env),
    }


def test_mlflow_server_uses_postgres_and_basic_auth_everywhere():
    for where, (command, env) in mlflow_servers().items():
        assert command[:2] == ["mlflow", "server"], where
        assert "--app-name=basic-auth" in command and any(a.startswith("--artifacts-destination=") for a in command)
        # Read by `mlflow server` itself; the password is not in it (next tests).
        assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow@"), where
    assert documents(DEPLOY / "mlflow" / "compose.yaml")[0]["services"]["mlflow"]["image"] == IMAGE


def test_dockerfile_builds_on_the_ray_version_the_project_uses():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-" in dockerfile
    for folder in ("sweeper", "trainables", "configs"):
        assert f"COPY --chown=ray:users {folder} ./{folder}" in dockerfile


# The hardening of what deploy/ ships: every check below reads the files a user applies.

SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN", re.IGNORECASE)
CREDENTIAL_URI = re.compile(r"://[^/\s:@]+:[^/\s@]+@")  # user:password@ in any URI
SHIPPED = sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def pod_specs() -> list[tuple[str, dict]]:
    """Every pod template in the Kubernetes manifests (Deployments, Jobs, Ray groups, the RayJob submitter):
    any mapping with a list of containers."""
    found = []

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                found.append((where, node))
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name != "compose.yaml":
            for doc in documents(path):
                walk(doc, f"{path.relative_to(DEPLOY)}:{doc['kind']}/{doc['metadata']['name']}")
    return found


def containers() -> list[tuple[str, dict]]:
    return [
        (f"{where}/{c['name']}", c) for where, pod in pod_specs() for c in pod["containers"] + pod.get("initContainers", [])
    ]


def compose_services() -> dict[str, dict]:
    return documents(DEPLOY / "mlflow" / "compose.yaml")[0]["services"]


def auth_ini() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(DEPLOY / "mlflow" / "basic_auth.ini")
    return dict(parser["mlflow"])


def image_uid() -> int:
    """The UID of the Dockerfile's last USER instruction; numeric, or Kubernetes cannot check runAsNonRoot."""
    users = re.findall(r"^USER\s+(\S+)", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), f"USER {users[-1]} must be numeric"
    return int(uid)


def test_the_image_runs_as_a_fixed_non_root_uid_without_sudo():
    assert image_uid() != 0
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    # The base image gives its user passwordless sudo; the image removes it and fails to build if any is left.
    as_root = dockerfile.split("USER root", 1)[1].split("USER ", 1)[0]
    assert "/etc/sudoers" in as_root and "! grep -rqsE '^[^#]*NOPASSWD'" in as_root


@pytest.mark.parametrize("where, pod", pod_specs(), ids=[where for where, _ in pod_specs()])
def test_every_pod_runs_as_a_non_root_user_with_the_default_seccomp_profile(where, pod):
    security = pod.get("securityContext") or {}
    assert security.get("runAsNonRoot") is True, where
    assert isinstance(security.get("runAsUser"), int) and security["runAsUser"] > 0, where
    assert security.get("seccompProfile") == {"type": "RuntimeDefault"}, where
    if any(c["image"] == IMAGE for c in pod["containers"]):
        assert security["runAsUser"] == image_uid(), where


@pytest.mark.parametrize("where, container", containers(), ids=[where for where, _ in containers()])
def test_every_container_drops_every_capability_and_cannot_gain_privileges(where, container):
    security = container.get("securityContext") or {}
    assert security.get("allowPrivilegeEscalation") is False, where
    assert security.get("capabilities") == {"drop": ["ALL"]}, where
    assert isinstance(security.get("readOnlyRootFilesystem"), bool), f"{where}: say whether the root is read-only"


def test_the_ray_autoscaler_sidecar_is_locked_down_like_the_ray_containers():
    cluster = by_kind(DEPLOY / "kuberay" / "raycluster.yaml", "RayCluster")["spec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert cluster["autoscalerOptions"]["securityContext"] == head["securityContext"]


def test_the_mlflow_server_postgres_and_the_sweep_user_job_have_a_read_only_root():
    read_only = {where.rsplit("/", 1)[1] for where, c in containers() if c["securityContext"]["readOnlyRootFilesystem"]}
    assert {"mlflow", "postgres", "sweep-user"} <= read_only


def test_the_auth_database_is_on_a_volume_of_its_own_that_is_never_served():
    database = Path(auth_ini()["database_uri"].removeprefix("sqlite:///"))
    assert auth_ini()["database_uri"].startswith("sqlite:////") and database.is_absolute()
    artifacts = {}
    for where, (command, _) in mlflow_servers().items():
        (artifacts[where],) = [Path(a.split("=", 1)[1]) for a in command if a.startswith("--artifacts-destination=")]
        assert not database.is_relative_to(artifacts[where]) and not artifacts[where].is_relative_to(database.parent)
    # In both, the database's folder is a writable volume of its own, apart from the artifacts'.
    pod = by_kind(DEPLOY / "mlflow" / "kubernetes.yaml", "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {Path(m["mountPath"]): m for m in pod["containers"][0]["volumeMounts"]}
    auth_mount = mounts[database.parent]
    assert "persistentVolumeClaim" in volumes[auth_mount["name"]] and not auth_mount.get("readOnly")
    assert volumes[auth_mount["name"]] != volumes[mounts[artifacts["kubernetes"]]["name"]]
    compose_mounts = dict(m.split(":")[1::-1] for m in compose_services()["mlflow"]["volumes"])  # path -> source
    assert compose_mounts[str(database.parent)] != compose_mounts[str(artifacts["compose"])]


def test_no_password_is_written_in_any_shipped_file():
    assert not {"admin_password", "password"} & set(auth_ini())
    for path in SHIPPED:
        text = path.read_text()
        assert not CREDENTIAL_URI.search(text), f"{path}: {CREDENTIAL_URI.search(text).group()}"
        # Secrets documented for `kubectl create secret` are generated on the spot, never written out.
        for key, value in re.findall(r"--from-literal=([\w-]+)=(\S+)", text):
            if SECRETISH.search(key) or key.endswith("key"):
                assert value.startswith('"$(openssl'), f"{path}: {key}={value}"
    for where, container in containers():
        for entry in container.get("env", []):
            if SECRETISH.search(entry["name"]):
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], f"{where}: {entry['name']}"
                assert not entry["valueFrom"]["secretKeyRef"].get("optional"), f"{where}: {entry['name']}"
    for name, service in compose_services().items():
        for key, value in service.get("environment", {}).items():
            if SECRETISH.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value), f"compose {name}: {key} must be required from the environment"


def test_no_password_reaches_a_command_line():
    command_lines = {where: [*c.get("command", []), *c.get("args", [])] for where, c in containers()}
    command_lines |= {f"compose {name}": s.get("command", []) for name, s in compose_services().items()}
    command_lines["rayjob entrypoint"] = shlex.split(by_kind(DEPLOY / "kuberay" / "rayjob.yaml", "RayJob")["spec"]["entrypoint"])
    for where, argv in command_lines.items():
        line = " ".join(argv)
        assert not re.search(r"password|\$\{|\$\(|--backend-store-uri", line, re.IGNORECASE), f"{where}: {line}"
        assert not CREDENTIAL_URI.search(line) and "@" not in line, f"{where}: {line}"


def test_the_admin_password_is_required_from_a_secret_everywhere():
    # MLflow creates the admin user from MLFLOW_AUTH_ADMIN_PASSWORD and refuses to start without one
    # (test_mlflow_server.py starts the shipped server without it).
    deployment = by_kind(DEPLOY / "mlflow" / "kubernetes.yaml", "Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in deployment["containers"][0]["env"]}
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-admin", "key": "password"}
    compose_value = compose_services()["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"]
    assert compose_value.startswith("${MLFLOW_ADMIN_PASSWORD:?")


def test_compose_publishes_the_server_on_loopback_only_by_default():
    for name, service in compose_services().items():
        for port in service.get("ports", []):
            default = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(port))  # as compose reads it with nothing set
            host, _, _ = default.rpartition(":")[0].rpartition(":")
            assert host == "127.0.0.1", f"compose {name}: {port}"
    assert "ports" not in compose_services()["postgres"]


def test_the_compose_server_runs_as_the_image_user_without_privileges():
    server = compose_services()["mlflow"]
    assert server["user"].split(":")[0] == str(image_uid())
    assert server["cap_drop"] == ["ALL"] and "no-new-privileges:true" in server["security_opt"]
    assert server["read_only"] is True
    assert "no-new-privileges:true" in compose_services()["postgres"]["security_opt"]


def test_sweeps_log_as_a_user_of_their_own_never_the_admin():
    admin = auth_ini()["admin_username"]
    admin_secret_users = set()
    for where, container in containers():
        env = {e["name"]: e for e in container.get("env", [])}
        if any(e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "mlflow-admin" for e in env.values()):
            admin_secret_users.add(container["name"])
        if "MLFLOW_TRACKING_USERNAME" in env and container["name"].startswith("ray-"):
            assert env["MLFLOW_TRACKING_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-credentials", "key": "username"}
    # The admin's password reaches only the server and the job that creates the sweep user.
    assert admin_secret_users == {"mlflow", "sweep-user"}
    job = by_kind(DEPLOY / "mlflow" / "sweep-user.yaml", "Job")["spec"]["template"]["spec"]["containers"][0]
    job_env = {e["name"]: e for e in job["env"]}
    assert job_env["MLFLOW_TRACKING_USERNAME"]["value"] == admin
    assert job_env["SWEEP_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-credentials", "key": "username"}
    # Every experiment of the shipped configs is granted to the sweep user.
    names = {load_config(p).name for p in (REPO / "configs").glob("*.yaml")}
    assert names <= set(job["command"][2:])
    readme = (DEPLOY / "README.md").read_text()
    (username,) = re.findall(r"secret generic mlflow-credentials --from-literal=username=(\S+)", readme)
    assert username != admin


def test_the_sweeps_volume_is_mounted_only_by_the_ray_cluster():
    for where, pod in pod_specs():
        claims = {v.get("persistentVolumeClaim", {}).get("claimName") for v in pod.get("volumes", [])}
        if "beta-sweeper-sweeps" in claims:
            assert where.startswith("kuberay/raycluster.yaml:RayCluster/"), where
