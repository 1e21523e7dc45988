"""`sweeper export`: a sweep's chosen checkpoints (`sweeper.export.choose`) as self-contained, verified
model folders, then registered if asked (`sweeper.export.registry`).

Each model becomes one folder under the target (see trainables.exported for
the files); `index.json` lists them. Everything is written into a hidden
temporary folder next to the target and renamed at the end, so a failed
export leaves nothing behind. Checkpoints are read with safetensors and a
weights-only torch load: nothing in a sweep is unpickled. How the model was
trained comes from the sweep's resolved config.yaml, read back through the
settings models.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from sweeper import object_store
from sweeper.analyse import plots, selection
from sweeper.analyse.checkpoints import encode, observation_set
from sweeper.analyse.results import (
    SweepRef,
    row_label,
    row_model,
    runs_table,
    sweep_settings,
    trial_runs,
)
from sweeper.errors import ConfigError, EnvironmentProblem
from sweeper.export.card import model_card
from sweeper.export.choose import Choice, choose
from sweeper.export.registry import register_model
from sweeper.record import SWEEP_RECORD, SweepRecord
from sweeper.tags import VERSION_PARAM_PREFIX
from trainables import exported
from trainables.checkpoint import check_identity, model_identity, saved_identity
from trainables.exported import ExportError
from trainables.settings import DataSettings, TrialSettings
from trainables.trial import Configuration, safe_name

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

EXPORTED_WITH = ("torch", "safetensors", "numpy", "mlflow")
ARCHITECTURE = (
    "VAE with the convolutional encoder and decoder of Locatello et al. (2019): "
    "4 conv layers + 256-unit dense layer to a diagonal Gaussian posterior; mirrored transposed convolutions "
    "to Bernoulli pixel logits; 64x64 inputs"
)


@dataclass
class Exported:
    """One exported model: its folder in the export and the trial it came from."""

    run_id: str
    folder: Path
    reason: str
    version: str | None = None  # its registry version, when registered


@dataclass
class ExportResult:
    out: Path
    models: list[Exported] = field(default_factory=list)


# -- one model ----------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_checkpoint(row: dict) -> tuple[dict, dict[str, Any] | None]:
    """The trial's weights (safetensors) and trainer state (weights-only torch load) from its checkpoint."""
    from safetensors import SafetensorError

    from trainables.checkpoint import STATE_FILE, WEIGHTS_FILE, load_state, load_weights

    checkpoint = row["checkpoint"]
    if not checkpoint:
        raise EnvironmentProblem(f"{row_label(row)}: no checkpoint was recorded; it cannot be exported")
    with object_store.local_folder(checkpoint) as folder:
        if not (folder / WEIGHTS_FILE).is_file():
            raise EnvironmentProblem(
                f"{row_label(row)}: checkpoint {checkpoint!r} has no {WEIGHTS_FILE}; it cannot be exported"
            )
        try:
            weights = load_weights(folder)
        except (SafetensorError, OSError, ValueError) as exc:
            raise EnvironmentProblem(f"{checkpoint}/{WEIGHTS_FILE}: not a readable safetensors file ({exc})") from None
        state = None
        if (folder / STATE_FILE).is_file():
            try:
                state = load_state(folder)
            except Exception as exc:  # noqa: BLE001 - weights-only unpickling refuses all but tensors and plain data
                raise EnvironmentProblem(f"{checkpoint}/{STATE_FILE}: cannot be read safely ({exc})") from None
    return weights, state


def build_config(
    row: dict, run: Run, ref: SweepRef, settings: TrialSettings, weights: dict, state: dict[str, Any] | None
) -> dict[str, Any]:
    """config.json: architecture, objective, seed, data, training and the library versions, from the
    sweep's settings and the run's recorded versions; refused when they do not fit the checkpoint."""
    params = run.data.params
    sizes = exported.model_config(weights)
    recorded = row["latent_dim"]
    if recorded is not None and recorded != sizes["latent_dim"]:
        raise EnvironmentProblem(
            f"{row_label(row)}: the run records model.latent_dim={recorded} but its checkpoint's weights have "
            f"{sizes['latent_dim']} latents"
        )
    model = row_model(row)
    if state is not None:
        try:
            saved = saved_identity(state)
        except KeyError as exc:
            raise EnvironmentProblem(
                f"{row_label(row)}: checkpoint {row['checkpoint']}: its trainer state names no model "
                f"(no {exc.args[0]!r}); it cannot be exported as this run's"
            ) from None
        try:
            check_identity(row["checkpoint"], saved, model_identity(model))
        except ValueError as exc:
            raise EnvironmentProblem(f"{row_label(row)}: {exc}") from None
    data_spec = data_record(settings.data, sizes["channels"])
    return {
        "model": {"class": "trainables.model.BetaVAE", "architecture": ARCHITECTURE, **sizes, "image_size": 64},
        "objective": objective_record(model.configuration, settings),
        "seed": row["seed"],
        "data": data_spec,
        "training": {
            **settings.training.model_dump(mode="json"),
            "steps_done": int(state["step"]) if state and "step" in state else None,
        },
        "evaluation": settings.eval.model_dump(mode="json"),
        "library_versions": {
            "trained_with": {
                k.removeprefix(VERSION_PARAM_PREFIX): v
                for k, v in sorted(params.items())
                if k.startswith(VERSION_PARAM_PREFIX)
            },
            "exported_with": {name: _version(name) for name in EXPORTED_WITH},
        },
        "source": {
            "sweep_id": ref.sweep_id,
            "experiment_id": ref.experiment_id,
            "run_id": row["run_id"],
            "run_name": row["run_name"],
            "trial_id": row["trial_id"],
            "tracking_uri": ref.tracking_uri,
            "checkpoint": row["checkpoint"],
        },
    }


def objective_record(configuration: Configuration, settings: TrialSettings) -> dict[str, Any]:
    """config.json's `objective`: its kind and weights, and AnnealedVAE's annealing length (a setting)."""
    record: dict[str, Any] = {"kind": configuration.objective, "weights": dict(configuration.weights)}
    if configuration.objective == "annealed_vae":
        record["capacity_steps"] = settings.objective.capacity_steps
    return record


def data_record(settings: DataSettings, channels: int) -> dict[str, Any]:
    """config.json's `data`: which dataset, file, variant and ground-truth factors the run trained on."""
    from trainables import data

    dataset, variant, ground_truth = settings.name, settings.variant, settings.ground_truth
    spec: dict[str, Any] = {"name": dataset, "image_shape": [channels, data.IMAGE_SIZE, data.IMAGE_SIZE]}
    if dataset == "dsprites":
        spec.update(
            kind="procedural dSprites (the original factor grid, rendered)",
            factor_names=list(data.FACTOR_NAMES),
            factor_sizes=list(data.FACTOR_SIZES),
        )
    else:
        kinds = {"dsprites_file": "a dSprites file", "npz": "an own dataset file (images, factor classes, names)"}
        spec.update(kind=kinds.get(dataset, dataset), path=settings.path)
    if settings.subset is not None:
        spec.update(subset=settings.subset, kind=f"{spec['kind']} {settings.subset}")
    if variant != "none":
        spec.update(variant=variant, kind=f"{spec['kind']}, {variant} variant")
    if settings.background is not None:
        spec["background"] = settings.background
    if ground_truth is not None:
        spec["ground_truth"] = list(ground_truth)
        spec["kind"] += f", ground truth {', '.join(spec['ground_truth'])}"
        if dataset == "dsprites":
            keep = [data.FACTOR_NAMES.index(n) for n in spec["ground_truth"] if n in data.FACTOR_NAMES]
            spec["factor_names"] = [data.FACTOR_NAMES[k] for k in keep]
            spec["factor_sizes"] = [data.FACTOR_SIZES[k] for k in keep]
    return spec


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def build_metrics(row: dict, run: Run, done: pa.Table, by: str, maximize: bool, reason: str) -> dict[str, Any]:
    """metrics.json: the final metrics, and the seed statistics of its configuration with its rank in it."""
    configuration = row_model(row).configuration
    keys, labels = selection.configurations(done)
    same = done.filter(selection.rows_of(keys, labels, [configuration]))
    names = selection.score_names(same)
    statistics = {
        s.pop("metric"): {k: _finite(v) for k, v in s.items() if k not in ("objective", "configuration")}
        for s in selection.seed_statistics(same, names).to_pylist()
    }
    rank = None
    value = run.data.metrics.get(by)
    if value is not None and by in same.column_names:
        others = selection.column(same, by)
        others = others[np.isfinite(others)]
        better = (others > value) if maximize else (others < value)
        mode = "max" if maximize else "min"
        rank = {"score": by, "mode": mode, "rank": int(better.sum()) + 1, "of": int(others.size)}
    return {
        "run_id": row["run_id"],
        "chosen": reason,
        "final": {k: _finite(v) for k, v in sorted(run.data.metrics.items())},
        "configuration": {
            "objective": configuration.objective,
            "weights": dict(configuration.weights),
            "seeds": same.num_rows,
            "seed_statistics": statistics,
            "rank_among_seeds": rank,
        },
    }


def folder_name(row: dict) -> str:
    return f"{row_model(row).file_stem()}_{safe_name(row['run_id'][:8])}"


def export_model(
    row: dict,
    run: Run,
    ref: SweepRef,
    settings: TrialSettings,
    done: pa.Table,
    choice: Choice,
    reason: str,
    folder: Path,
) -> Path:
    """One model folder: weights, config, metrics, card, traversal, then the manifest."""
    weights, state = read_checkpoint(row)
    config = build_config(row, run, ref, settings, weights, state)
    try:
        exported.save_exported(folder, weights, config)
        model = exported.check_fits(config, weights)
    except ExportError as exc:
        raise EnvironmentProblem(f"{row_label(row)}: {exc}") from None
    model.load_state_dict(weights)
    model.eval()
    metrics = build_metrics(row, run, done, choice.by, choice.maximize, reason)
    exported.write_json(folder / exported.METRICS_FILE, metrics)
    codes, kl = encode(model, observation_set(8))
    title = row_model(row).label()
    plots.model_traversal(model, codes[0], kl, metrics["final"], title, folder / exported.TRAVERSAL_FILE)
    (folder / exported.CARD_FILE).write_text(model_card(config, metrics, choice.by), encoding="utf-8")
    exported.write_manifest(folder)
    return folder


# -- the export ---------------------------------------------------------------------------


def check_target(out: Path, ref: SweepRef, storage: Path | None) -> None:
    """Refuse a target that is, holds or lies inside the sweep folder or a folder of sweeps (symlinks
    resolved): replacing it with --force would delete the sweep, and an export inside it would mix with it.
    A target whose parent is a file is refused here too."""
    keep: dict[str, Path] = {}
    if storage is not None:
        keep["the storage folder"] = storage
    if ref.folder is not None:
        keep["the sweep folder"] = ref.folder
        if (ref.folder / SWEEP_RECORD).is_file():
            keep["the sweep's storage folder"] = Path(SweepRecord.read(ref.folder).storage)
    target = out.resolve()
    for what, folder in keep.items():
        folder = folder.resolve()
        if target == folder or folder.is_relative_to(target):
            raise ConfigError(f"--to {out}: it holds {what} {folder}; export to a folder outside it")
        if target.is_relative_to(folder):
            raise ConfigError(f"--to {out}: it lies inside {what} {folder}; export to a folder outside it")
    for parent in target.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--to {out}: {parent} is a file, not a folder")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--to {out}: a file, not a folder")


def export_sweep(
    client: MlflowClient,
    ref: SweepRef,
    out: Path,
    choice: Choice,
    force: bool = False,
    register: str | None = None,
    alias: str | None = None,
    echo: Callable[[str], None] = print,
    storage: Path | None = None,
) -> ExportResult:
    """Export the chosen models of the sweep into `out`, then register them if asked.

    Nothing is left at `out` (or next to it) when any step before the rename fails.
    `storage` is the folder of sweeps the user named; `out` may hold neither it nor the sweep.
    """
    out = Path(out)
    check_target(out, ref, storage)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; choose another folder or replace it with --force")
    if alias and not register:
        raise ConfigError("--alias needs --register NAME")
    runs = trial_runs(client, ref)
    table = runs_table(runs)
    if table.num_rows == 0:
        raise EnvironmentProblem(f"sweep {ref.sweep_id} has no trial runs in {ref.tracking_uri}")
    chosen = choose(table, choice)
    if register and len(chosen) != 1:
        raise ConfigError(f"--register takes one model; this choice gives {len(chosen)}")
    by_id = {run.info.run_id: run for run in runs}
    settings = sweep_settings(client, ref)
    done = selection.finished(table)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise ConfigError(f"--to {out}: cannot create a folder there ({exc.strerror or exc})") from None
    result = ExportResult(out)
    try:
        index = []
        for row, reason in chosen:
            name = folder_name(row)
            echo(f"export: {row_label(row)} ({reason}) -> {out / name}")
            export_model(row, by_id[row["run_id"]], ref, settings, done, choice, reason, staging / name)
            index.append({"folder": name, "run_id": row["run_id"], "chosen": reason})
            result.models.append(Exported(row["run_id"], out / name, reason))
        exported.write_json(staging / exported.INDEX_FILE, {"sweep_id": ref.sweep_id, "models": index})
        os.chmod(staging, 0o755)  # mkdtemp makes it private
        exported.replace_folder(staging, out, force)
    except ExportError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if register:
        model = result.models[0]
        model.version = register_model(client, model.run_id, model.folder, register, alias, ref.sweep_id)
        echo(f"registered: {register} version {model.version}" + (f", alias {alias}" if alias else ""))
    return result


def print_export(result: ExportResult, echo: Callable[[str], None] = print) -> None:
    for model in result.models:
        line = f"{model.folder}  run {model.run_id}  ({model.reason})"
        echo(line + (f"  registered version {model.version}" if model.version else ""))

