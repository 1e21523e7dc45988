"""The MLflow Model Registry side of an export: register a model folder, load one back by URI.

`sweeper export --register NAME` logs the model folder to its trial's run
under `exported_model` and registers it as a version of NAME, with an alias;
`load_model_uri("models:/NAME@ALIAS")` loads it back, verified against its
manifest.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.errors import ConfigError, EnvironmentProblem
from sweeper.tags import EXPORTED_MODEL_ARTIFACT, SWEEP_TAG
from trainables import exported
from trainables.exported import ExportedModel, ExportError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


def register_model(
    client: MlflowClient, run_id: str, folder: Path, name: str, alias: str | None, sweep_id: str | None = None
) -> str:
    """Log the model folder to its run under `exported_model` and register it as a new version of `name`
    (created if needed), with `alias` pointing at it; returns the version."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    registry = MlflowClient(tracking_uri=client.tracking_uri, registry_uri=client.tracking_uri)
    try:
        exported.verify_manifest(folder)
        registry.log_artifacts(run_id, str(folder), EXPORTED_MODEL_ARTIFACT)
        try:
            registry.get_registered_model(name)
        except MlflowException:
            registry.create_registered_model(name, description="VAE exported by `sweeper export`")
        tags = {SWEEP_TAG: sweep_id} if sweep_id else None
        source = f"runs:/{run_id}/{EXPORTED_MODEL_ARTIFACT}"
        version = registry.create_model_version(name, source=source, run_id=run_id, tags=tags)
        if alias:
            registry.set_registered_model_alias(name, alias, version.version)
    except ExportError as exc:
        raise EnvironmentProblem(str(exc)) from None
    except MlflowException as exc:
        raise EnvironmentProblem(f"registering {name!r} in {client.tracking_uri} failed: {exc.message}") from None
    return str(version.version)


# A version is a number or `latest`: anything else reached the registry as a model that does not exist.
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[0-9]+|latest))/?$")


def load_model_uri(uri: str, tracking_uri: str | None = None) -> ExportedModel:
    """An exported model from `models:/NAME@ALIAS`, `models:/NAME/VERSION`, a `runs:/` URI or a local path.

    Registry URIs are resolved in `tracking_uri` (default: MLflow's current
    tracking URI), the files downloaded to a temporary folder and verified
    there by `load_exported`.
    """
    if "://" not in uri and not uri.startswith(("models:/", "runs:/")):
        return exported.load_exported(uri)
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    tracking_uri = tracking_uri or mlflow.get_tracking_uri()
    source = uri
    try:
        match = _MODELS_URI.match(uri)
        if match:
            registry = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            name, alias, version = match["name"], match["alias"], match["version"]
            if alias:
                version = registry.get_model_version_by_alias(name, alias).version
            elif version == "latest":
                versions = registry.search_model_versions(f"name = '{name}'")
                if not versions:
                    raise EnvironmentProblem(f"{uri}: the registered model {name!r} has no version")
                version = max(int(v.version) for v in versions)
            source = registry.get_model_version_download_uri(name, str(version))
        elif uri.startswith("models:/"):
            raise ConfigError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION (a number or latest)")
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri)
            return exported.load_exported(local)
    except MlflowException as exc:
        raise EnvironmentProblem(f"{uri}: {exc.message}") from None
