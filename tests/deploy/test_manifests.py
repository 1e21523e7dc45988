"""The deployment files agree with the code: image, command, resources and environment."""

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


def test_mlflow_server_uses_postgres_and_basic_auth_everywhere():
    compose = documents(DEPLOY / "mlflow" / "compose.yaml")[0]["services"]["mlflow"]
    command = " ".join(compose["command"])
    deployment = by_kind(DEPLOY / "mlflow" / "kubernetes.yaml", "Deployment")
    k8s_command = " ".join(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    for text in (command, k8s_command):
        assert re.search(r"--backend-store-uri[= ]\"?postgresql\+psycopg2://", text)
        assert re.search(r"--app-name[= ]basic-auth", text)
        assert "--artifacts-destination" in text
    assert compose["image"] == IMAGE


def test_dockerfile_builds_on_the_ray_version_the_project_uses():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-" in dockerfile
    for folder in ("sweeper", "trainables", "configs"):
        assert f"COPY --chown=ray:users {folder} ./{folder}" in dockerfile
