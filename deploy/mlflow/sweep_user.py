"""Create the MLflow user that sweeps log as: EDIT on the named experiments, and never an admin.

Sweeps need to create runs, log to them and tag them in their own experiments; an admin's
password on every Ray pod would let any of them read and change every user and permission.
Run it as the admin against a basic-auth server (deploy/mlflow/sweep-user.yaml does, as a Job):

    MLFLOW_TRACKING_URI=http://mlflow:5000 MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=... \\
    SWEEP_USERNAME=sweeper SWEEP_PASSWORD=... python deploy/mlflow/sweep_user.py beta_grid ...

Every password comes from the environment, none from the command line. Running it again sets the
password and the grants again, so a rotated secret takes effect by running it once more. It makes
plain calls to MLflow's REST API with the standard library only, so it runs wherever Python does
(importing MLflow's auth client would load the whole server).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

PERMISSION = "EDIT"
# As sweeper creates experiments: the MLflow UI then opens them on their runs table.
EXPERIMENT_TAGS = [{"key": "mlflow.experimentKind", "value": "custom_model_development"}]
ENVIRONMENT = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "SWEEP_USERNAME",
               "SWEEP_PASSWORD")  # fmt: skip


class Refused(Exception):
    """The server said no, or holds something this script must not paper over."""


class Api:
    """The server's REST API, as the admin."""

    def __init__(self, uri: str, username: str, password: str) -> None:
        self.uri = uri.rstrip("/")
        self.authorization = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def call(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> tuple[int, dict]:
        """The status and the decoded answer; a status that is not 200 comes back rather than raising,
        so that a caller can tell 'does not exist' from a failure."""
        url = f"{self.uri}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode())
        request.add_header("Authorization", self.authorization)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                answer = json.loads(exc.read() or b"{}")
            except ValueError:
                answer = {}
            return exc.code, answer

    def ok(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> dict:
        status, answer = self.call(method, path, body, query)
        if status != 200:
            raise refusal(method, path, status, answer)
        return answer


def refusal(method: str, path: str, status: int, answer: dict) -> Refused:
    return Refused(f"{method} {path}: HTTP {status} {answer.get('error_code', '')} {answer.get('message', '')}".rstrip())


def ensure_user(api: Api, username: str, password: str) -> str:
    """Create the user, or set its password if it exists; an existing admin is refused, since
    its password on the Ray pods is exactly what this user exists to avoid."""
    status, answer = api.call("GET", "/api/2.0/mlflow/users/get", query={"username": username})
    if status == 404:
        api.ok("POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password})
        return "created"
    if status != 200:
        raise refusal("GET", "/api/2.0/mlflow/users/get", status, answer)
    if answer["user"]["is_admin"]:
        raise Refused(f"MLflow user {username!r} is an admin; sweeps must log as a user that is not")
    api.ok("PATCH", "/api/2.0/mlflow/users/update-password", {"username": username, "password": password})
    return "exists, password set"


def ensure_experiment(api: Api, name: str) -> str:
    """The experiment's id, created if it does not exist; a deleted one is refused, not restored."""
    status, answer = api.call("GET", "/api/2.0/mlflow/experiments/get-by-name", query={"experiment_name": name})
    if status == 404:
        return api.ok("POST", "/api/2.0/mlflow/experiments/create", {"name": name, "tags": EXPERIMENT_TAGS})["experiment_id"]
    if status != 200:
        raise refusal("GET", "/api/2.0/mlflow/experiments/get-by-name", status, answer)
    experiment = answer["experiment"]
    if experiment["lifecycle_stage"] == "deleted":
        raise Refused(f"MLflow experiment {name!r} is deleted; restore it first")
    return experiment["experiment_id"]


def grant_edit(api: Api, username: str, experiment_id: str) -> None:
    """EDIT on the experiment, replacing whatever grant the user had on it (MANAGE, if it created it)."""
    grant = {"username": username, "resource_type": "experiment", "resource_id": experiment_id}
    status, answer = api.call("POST", "/api/3.0/mlflow/users/permissions/grant", {**grant, "permission": PERMISSION})
    if status == 200:
        return
    if answer.get("error_code") != "RESOURCE_ALREADY_EXISTS":
        raise refusal("POST", "/api/3.0/mlflow/users/permissions/grant", status, answer)
    api.ok("POST", "/api/3.0/mlflow/users/permissions/revoke", grant)
    api.ok("POST", "/api/3.0/mlflow/users/permissions/grant", {**grant, "permission": PERMISSION})


def main(experiments: list[str]) -> int:
    missing = [name for name in ENVIRONMENT if not os.environ.get(name)]
    if missing or not experiments:
        print(f"usage: {' '.join(f'{n}=...' for n in ENVIRONMENT)} python sweep_user.py EXPERIMENT ...", file=sys.stderr)
        if missing:
            print(f"not set: {', '.join(missing)}", file=sys.stderr)
        return 2
    uri, admin, username = (os.environ[n] for n in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "SWEEP_USERNAME"))
    if username == admin:
        print(f"SWEEP_USERNAME is the admin ({admin!r}); sweeps must log as a user of their own", file=sys.stderr)
        return 2
    api = Api(uri, admin, os.environ["MLFLOW_TRACKING_PASSWORD"])
    try:
        print(f"user {username!r}: {ensure_user(api, username, os.environ['SWEEP_PASSWORD'])}")
        for name in experiments:
            experiment_id = ensure_experiment(api, name)
            grant_edit(api, username, experiment_id)
            print(f"experiment {name!r} ({experiment_id}): {PERMISSION} for {username!r}")
    except (Refused, urllib.error.URLError, OSError) as exc:
        print(f"{uri}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
