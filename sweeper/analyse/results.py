"""A sweep's trials as one Arrow table, read from MLflow.

Every model's child run carries its configuration as params (the objective's
kind as `objective`, its weights under the study's names), its final metrics
and its checkpoint folder as a tag, so one paged `search_runs` over the
sweep's tag returns everything a selection needs: no per-run calls, which
keeps a sweep of thousands of trials to a few seconds.

The table has one row per model: the columns of `TRIAL_COLUMNS` (the
objective, then one column per weight name of any objective, null where the
row's objective has no such weight), then one float64 column per metric any
trial reported (null where a trial did not). A metric named like a trial
column would be stored as `metric.<name>`. Runs of earlier releases record
`beta` and `capacity` (C_max) instead of an objective; their rows hold the
configuration those trained (`Configuration.from_beta_and_capacity`), so the
analysis sees one kind of row.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from sweeper.config import read_yaml
from sweeper.errors import EnvironmentProblem
from sweeper.record import RESOLVED_CONFIG, SweepRecord, find_sweep
from sweeper.tags import (
    CHECKPOINT_TAG,
    CONFIG_ARTIFACT,
    ERROR_TAG,
    LATENT_DIM_PARAM,
    LEGACY_BETA_PARAM,
    LEGACY_CAPACITY_PARAM,
    OBJECTIVE_PARAM,
    PICK_ROLE_TAG,
    ROLE_SWEEP,
    ROLE_TAG,
    ROLE_TRIAL,
    SEED_PARAM,
    SELECTED_TAG,
    SWEEP_TAG,
    TRIAL_TAG,
    WEIGHT_PARAMS,
)
from trainables.settings import TrialSettings
from trainables.trial import Configuration, ModelSpec

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

PAGE_SIZE = 1000  # MLflow's largest page
SWEEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # config name, date and a hex suffix

TRIAL_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("run_name", pa.string()),
        ("trial_id", pa.string()),
        ("status", pa.string()),
        ("objective", pa.string()),
        *((name, pa.float64()) for name in WEIGHT_PARAMS),
        ("seed", pa.int64()),
        ("latent_dim", pa.int64()),
        ("checkpoint", pa.string()),
        ("error", pa.string()),
        ("selected", pa.string()),
        ("role", pa.string()),
    ]
)
TRIAL_COLUMNS: tuple[str, ...] = tuple(TRIAL_SCHEMA.names)
CONFIGURATION_COLUMNS = ("objective", *WEIGHT_PARAMS)  # what a row's configuration is read from


@dataclass(frozen=True)
class SweepRef:
    """Where a sweep's runs live: enough to read them and to log to its parent run."""

    sweep_id: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    folder: Path | None  # the sweep folder, when it is on this machine


def locate_sweep(sweep: str, storage: Path, tracking_uri: str | None = None) -> SweepRef:
    """The sweep from its folder's sweep.json, or, given a tracking URI, from its parent run's tag."""
    if tracking_uri is None:
        folder = find_sweep(sweep, storage)
        record = SweepRecord.read(folder)
        return SweepRef(record.sweep_id, record.tracking_uri, record.experiment_id, record.parent_run_id, folder)
    from sweeper.tracking.client import connect

    client = connect(tracking_uri)
    parent = _find_parent_run(client, sweep)
    folder = storage / sweep
    return SweepRef(
        sweep, tracking_uri, parent.info.experiment_id, parent.info.run_id, folder if folder.is_dir() else None
    )


def _find_parent_run(client: MlflowClient, sweep_id: str) -> Run:
    if not SWEEP_ID.match(sweep_id):  # also keeps the filter string well-formed
        raise EnvironmentProblem(f"no sweep {sweep_id!r}: sweep ids are made of letters, digits, '_', '.' and '-'")
    experiment_ids = [e.experiment_id for e in _all_pages(lambda token: client.search_experiments(page_token=token))]
    query = f"tags.{SWEEP_TAG} = '{sweep_id}' and tags.`{ROLE_TAG}` = '{ROLE_SWEEP}'"
    found = client.search_runs(experiment_ids, filter_string=query, max_results=1) if experiment_ids else []
    if not found:
        raise EnvironmentProblem(f"no sweep {sweep_id!r} in the tracking store {client.tracking_uri}")
    return found[0]


def sweep_settings(client: MlflowClient, ref: SweepRef) -> TrialSettings:
    """The settings every trial of the sweep ran with: the resolved config.yaml the sweep wrote (its
    folder's copy, else the parent run's artifact), read back through the settings models."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = ref.folder / RESOLVED_CONFIG if ref.folder is not None else None
        if path is None or not path.is_file():
            try:
                path = Path(
                    mlflow.artifacts.download_artifacts(
                        run_id=ref.parent_run_id, artifact_path=CONFIG_ARTIFACT, dst_path=tmp,
                        tracking_uri=client.tracking_uri,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - any store failure: nothing says how the sweep trained
                raise EnvironmentProblem(
                    f"sweep {ref.sweep_id}: its {CONFIG_ARTIFACT} is neither in its folder nor on its parent run "
                    f"({str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__})"
                ) from None
        raw = read_yaml(path)
        try:
            return TrialSettings.model_validate({k: raw[k] for k in TrialSettings.model_fields if k in raw})
        except ValidationError as exc:
            raise EnvironmentProblem(f"{path}: not the settings of a sweep this version can read ({exc})") from None


def _all_pages(fetch) -> Iterable:
    """Every item of a paged MLflow search; `fetch(token)` returns one page."""
    token = None
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return


def trial_runs(client: MlflowClient, ref: SweepRef) -> list[Run]:
    """Every trial run of the sweep, page by page, with its final metrics, params and tags."""
    query = f"tags.{SWEEP_TAG} = '{ref.sweep_id}' and tags.`{ROLE_TAG}` = '{ROLE_TRIAL}'"
    return list(
        _all_pages(
            lambda token: client.search_runs(
                [ref.experiment_id], filter_string=query, max_results=PAGE_SIZE, page_token=token
            )
        )
    )


def _natural_key(name: str) -> list:
    """`kl/2` before `kl/10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _float(text: str | None) -> float | None:
    """A param as a number; None when the run did not record it (params are strings in MLflow)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _int(text: str | None) -> int | None:
    value = _float(text)
    return None if value is None else int(value)


def run_configuration(run: Run) -> Configuration:
    """The configuration a run trained: its `objective` and weights, or, for a run of an earlier release,
    the one its `beta` and `capacity` name."""
    params = run.data.params
    if OBJECTIVE_PARAM in params:
        weights = {name: _float(params.get(name)) for name in WEIGHT_PARAMS if name in params}
        bad = {name: params[name] for name, value in weights.items() if value is None}
        if not bad:
            return Configuration.of(params[OBJECTIVE_PARAM], weights)
        problem = f"weights that are not numbers: {bad}"
    else:
        beta, capacity = _float(params.get(LEGACY_BETA_PARAM)), _float(params.get(LEGACY_CAPACITY_PARAM))
        if beta is not None and capacity is not None:
            return Configuration.from_beta_and_capacity(beta, capacity)
        problem = f"no param {OBJECTIVE_PARAM!r}, nor {LEGACY_BETA_PARAM!r} and {LEGACY_CAPACITY_PARAM!r} as numbers"
    raise EnvironmentProblem(f"run {run.info.run_id} ({run.info.run_name}): {problem}; not a model run of a sweep")


def runs_table(runs: Iterable[Run]) -> pa.Table:
    """One row per run; columns `TRIAL_COLUMNS` then every metric (float64, null where not reported)."""
    rows: dict[str, list] = {name: [] for name in TRIAL_COLUMNS}
    metrics: list[dict[str, float]] = []
    for run in runs:
        params, tags = run.data.params, run.data.tags
        configuration = run_configuration(run)
        rows["run_id"].append(run.info.run_id)
        rows["run_name"].append(run.info.run_name)
        rows["trial_id"].append(tags.get(TRIAL_TAG))
        rows["status"].append(run.info.status)
        rows["objective"].append(configuration.objective)
        for name in WEIGHT_PARAMS:
            rows[name].append(configuration.weight(name))
        rows["seed"].append(_int(params.get(SEED_PARAM)))
        rows["latent_dim"].append(_int(params.get(LATENT_DIM_PARAM)))
        rows["checkpoint"].append(tags.get(CHECKPOINT_TAG))
        rows["error"].append(tags.get(ERROR_TAG))
        rows["selected"].append(tags.get(SELECTED_TAG))
        rows["role"].append(tags.get(PICK_ROLE_TAG))
        metrics.append(run.data.metrics)
    columns = [pa.array(rows[field.name], field.type) for field in TRIAL_SCHEMA]
    names = sorted({key for m in metrics for key in m}, key=_natural_key)
    columns += [pa.array([m.get(name) for m in metrics], pa.float64()) for name in names]
    renamed = [f"metric.{name}" if name in TRIAL_COLUMNS else name for name in names]
    table = pa.Table.from_arrays(columns, names=list(TRIAL_COLUMNS) + renamed)
    return table.sort_by([(name, "ascending") for name in (*CONFIGURATION_COLUMNS, "seed")])


def read_results(client: MlflowClient, ref: SweepRef) -> pa.Table:
    return runs_table(trial_runs(client, ref))


def row_configuration(row: dict) -> Configuration:
    """The configuration of a results row: its objective and the weights it has (in `WEIGHT_PARAMS` order,
    which is each objective's own)."""
    weights = {name: row[name] for name in WEIGHT_PARAMS if row.get(name) is not None}
    return Configuration.of(row["objective"], weights)


def row_model(row: dict) -> ModelSpec:
    """The model a results row describes."""
    return ModelSpec(row_configuration(row), row["seed"])


def row_label(row: dict) -> str:
    """A results row as messages name it: the model's label and its run."""
    return f"{row_model(row).label()} (run {row['run_id']})"


def metric_names(table: pa.Table) -> list[str]:
    """The metric columns of a results table, in their natural order."""
    return [name for name in table.column_names if name not in TRIAL_COLUMNS]


def write_parquet(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
