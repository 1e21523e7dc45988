"""`sweeper export`: a sweep's best checkpoints as self-contained, verified model folders.

Which models: the best trial by a score (the luckiest seed), the median seed
of the configuration with the best median score, the runs `sweeper select`
tagged, or explicit run ids. Each becomes one folder under the target (see
trainables.exported for the files); `index.json` lists them. Everything is
written into a hidden temporary folder next to the target and renamed at the
end, so a failed export leaves nothing behind. Checkpoints are read with
safetensors and a weights-only torch load: nothing in a sweep is unpickled.

`--register NAME` logs the model folder to its trial's run under
`exported_model` and registers it as a version of NAME in the MLflow Model
Registry, with an alias; `load_model_uri("models:/NAME@ALIAS")` loads it back.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sweeper import object_store, selection
from sweeper.errors import ConfigError, EnvironmentProblem
from sweeper.results import SweepRef, runs_table, trial_runs
from trainables import exported
from trainables.exported import ExportedModel, ExportError

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

ARTIFACT_PATH = "exported_model"  # where a registered model's files are logged in its trial's run
EXPORTED_WITH = ("torch", "safetensors", "numpy", "mlflow")
ALL_PICKS = "all"
ARCHITECTURE = (
    "beta-VAE with the convolutional encoder and decoder of Locatello et al. (2019): "
    "4 conv layers + 256-unit dense layer to a diagonal Gaussian posterior; mirrored transposed convolutions "
    "to Bernoulli pixel logits; 64x64 inputs"
)


@dataclass(frozen=True)
class Choice:
    """Which models to export: explicit runs, the selector's picks, or the best by a score."""

    by: str = "disent/mig"
    maximize: bool = True
    median_seed: bool = False  # the best configuration's median seed instead of the best trial
    picks: str | None = None  # "all" or a pick kind (beta_tradeoff, seed_sensitivity, udr_ranking)
    run_ids: tuple[str, ...] = ()


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


# -- choosing -----------------------------------------------------------------------------


def _describe(row: dict) -> str:
    return f"beta={row['beta']:g} C={row['capacity']:g} seed={row['seed']} (run {row['run_id']})"


def choose(table: pa.Table, choice: Choice) -> list[tuple[dict, str]]:
    """The rows to export, each with why it was chosen; clear errors for a choice that finds nothing."""
    done = selection.finished(table)
    if choice.run_ids:
        rows = {row["run_id"]: row for row in table.to_pylist()}
        unknown = [r for r in choice.run_ids if r not in rows]
        if unknown:
            raise ConfigError(f"no trial run {', '.join(unknown)} in this sweep")
        unfinished = [
            f"{_describe(rows[r])} is {rows[r]['status']}"
            for r in choice.run_ids
            if rows[r]["status"] != selection.FINISHED
        ]
        if unfinished:
            raise ConfigError("only finished trials are exported: " + "; ".join(unfinished))
        return [(rows[r], "run id") for r in dict.fromkeys(choice.run_ids)]
    if done.num_rows == 0:
        raise EnvironmentProblem("none of the sweep's trials has finished; nothing to export")
    if choice.picks is not None:
        tagged = [row for row in done.to_pylist() if row["selected"]]
        if choice.picks != ALL_PICKS:
            tagged = [row for row in tagged if choice.picks in row["selected"].split(",")]
        if not tagged:
            what = "picked" if choice.picks == ALL_PICKS else f"picked for {choice.picks}"
            raise EnvironmentProblem(f"no finished trial is tagged as {what}; run `sweeper select` first")
        return [(row, f"pick: {row['selected']} ({row['role']})") for row in tagged]
    selection.require_score(done, choice.by)
    scores, seeds = selection.column(done, choice.by), selection.column(done, "seed")
    if not choice.median_seed:
        signed = scores if choice.maximize else -scores
        index = selection.best_index(signed, seeds)
        return [(done.slice(index, 1).to_pylist()[0], f"best trial by {choice.by}")]
    keys, labels = selection.configurations(done)
    medians = np.array([_nan_median(scores[labels == i]) for i in range(len(keys))])
    best_config = selection.best_index(medians if choice.maximize else -medians, np.arange(len(keys)))
    rows = np.flatnonzero(labels == best_config)
    index = rows[selection.median_index(scores[rows], seeds[rows])]
    return [(done.slice(int(index), 1).to_pylist()[0], f"median seed of the best configuration by {choice.by}")]


def _nan_median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else float("nan")


# -- one model ----------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _value(text: str) -> Any:
    """A param (always a string in MLflow) as the number or flag it was."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def _section(params: dict[str, str], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) + 1 :]: _value(v) for k, v in sorted(params.items()) if k.startswith(prefix + ".")}


def read_checkpoint(row: dict) -> tuple[dict, dict[str, Any] | None]:
    """The trial's weights (safetensors) and trainer state (weights-only torch load) from its checkpoint."""
    from safetensors import SafetensorError

    from trainables.checkpoint import STATE_FILE, WEIGHTS_FILE, load_state, load_weights

    checkpoint = row["checkpoint"]
    if not checkpoint:
        raise EnvironmentProblem(f"{_describe(row)}: no checkpoint was recorded; it cannot be exported")
    with object_store.local_folder(checkpoint) as folder:
        if not (folder / WEIGHTS_FILE).is_file():
            raise EnvironmentProblem(
                f"{_describe(row)}: checkpoint {checkpoint!r} has no {WEIGHTS_FILE}; it cannot be exported"
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


def build_config(row: dict, run: Run, ref: SweepRef, weights: dict, state: dict[str, Any] | None) -> dict[str, Any]:
    """config.json: architecture, objective, seed, data, training and the library versions, from the run's
    params; refused when they do not fit the checkpoint."""
    params = run.data.params
    sizes = exported.model_config(weights)
    recorded = row["latent_dim"]
    if recorded is not None and recorded != sizes["latent_dim"]:
        raise EnvironmentProblem(
            f"{_describe(row)}: the run records model.latent_dim={recorded} but its checkpoint's weights have "
            f"{sizes['latent_dim']} latents"
        )
    if state is not None and "beta" in state:
        saved = (state.get("beta"), state.get("capacity_max"), state.get("seed"))
        if saved != (row["beta"], row["capacity"], row["seed"]):
            raise EnvironmentProblem(
                f"{_describe(row)}: its checkpoint belongs to beta={saved[0]}, C_max={saved[1]}, seed={saved[2]}"
            )
    data_spec = data_record(params, sizes["channels"])
    return {
        "model": {"class": "trainables.model.BetaVAE", "architecture": ARCHITECTURE, **sizes, "image_size": 64},
        "objective": {
            "loss": "recon + beta * |KL - C(t)|, C(t) rising linearly to C_max over capacity_steps",
            "beta": row["beta"],
            "capacity_max": row["capacity"],
            "capacity_steps": _value(params.get("objective.capacity_steps", "None")),
        },
        "seed": row["seed"],
        "data": data_spec,
        "training": {
            **_section(params, "training"),
            "steps_done": int(state["step"]) if state and "step" in state else None,
        },
        "evaluation": _section(params, "eval"),
        "library_versions": {
            "trained_with": {
                k.removeprefix("version."): v for k, v in sorted(params.items()) if k.startswith("version.")
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


def data_record(params: dict[str, str], channels: int) -> dict[str, Any]:
    """config.json's `data`: which dataset, file, variant and ground-truth factors the run trained on."""
    from trainables import data

    dataset = params.get("data.name", "dsprites")
    variant = params.get("data.variant", "none")
    ground_truth = params.get("data.ground_truth", "None")
    spec: dict[str, Any] = {"name": dataset, "image_shape": [channels, data.IMAGE_SIZE, data.IMAGE_SIZE]}
    if dataset == "dsprites":
        spec.update(
            kind="procedural dSprites (the original factor grid, rendered)",
            factor_names=list(data.FACTOR_NAMES),
            factor_sizes=list(data.FACTOR_SIZES),
        )
    else:
        kinds = {"dsprites_file": "a dSprites file", "npz": "an own dataset file (images, factor classes, names)"}
        spec.update(kind=kinds.get(dataset, dataset), path=params.get("data.path"))
    if variant != "none":
        spec.update(variant=variant, kind=f"{spec['kind']}, {variant} variant")
    if ground_truth != "None":
        spec["ground_truth"] = [name.strip(" '\"") for name in ground_truth.strip("[]").split(",")]
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
    same = done.filter(
        pc.and_(pc.equal(done["beta"], row["beta"]), pc.equal(done["capacity"], row["capacity"]))
    )
    names = selection.score_names(same)
    statistics = {
        s.pop("metric"): {k: _finite(v) for k, v in s.items() if k not in ("beta", "capacity")}
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
            "beta": row["beta"],
            "capacity_max": row["capacity"],
            "seeds": same.num_rows,
            "seed_statistics": statistics,
            "rank_among_seeds": rank,
        },
    }


def _number(value: Any) -> str:
    return "–" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def model_card(config: dict, metrics: dict, by: str) -> str:
    """MODEL_CARD.md: what the model is, how it was trained, its scores among its seeds, a traversal."""
    obj, src, cfgn = config["objective"], config["source"], metrics["configuration"]
    training = config["training"]
    lines = [
        f"# beta-VAE: beta={obj['beta']:g}, C_max={obj['capacity_max']:g}, seed={config['seed']}",
        "",
        "## What it is",
        "",
        f"A {config['model']['architecture']}, with {config['model']['latent_dim']} latents, trained on "
        f"{config['data'].get('kind', config['data']['name'])}.",
        f"Trial `{src['trial_id']}` (MLflow run `{src['run_id']}`) of sweep `{src['sweep_id']}`; chosen as: "
        f"{metrics['chosen']}.",
        "",
        "## How it was trained",
        "",
        f"- objective: {obj['loss']}; beta = {obj['beta']:g}, C_max = {obj['capacity_max']:g}, "
        f"capacity_steps = {_number(obj['capacity_steps'])}",
        f"- seed {config['seed']}; {_number(training.get('steps_done'))} of {_number(training.get('steps'))} steps, "
        f"batch size {_number(training.get('batch_size'))}, Adam lr {_number(training.get('lr'))}",
        "- libraries: "
        + (", ".join(f"{k} {v}" for k, v in config["library_versions"]["trained_with"].items()) or "not recorded"),
        "",
        "## Scores, in the context of its seeds",
        "",
        f"The same configuration was trained with {cfgn['seeds']} seeds; "
        "each score of this model next to their statistics.",
        "",
        "| score | this model | median | mean | std | min | max | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, stats in cfgn["seed_statistics"].items():
        lines.append(
            f"| {name} | {_number(metrics['final'].get(name))} | "
            + " | ".join(_number(stats.get(k)) for k in ("median", "mean", "std", "min", "max", "n"))
            + " |"
        )
    rank = cfgn["rank_among_seeds"]
    if rank:
        lines += ["", f"By `{rank['score']}` ({rank['mode']}) it ranks {rank['rank']} of {rank['of']} seeds."]
    lines += [
        "",
        "## Latent traversals",
        "",
        f"![latent traversals]({exported.TRAVERSAL_FILE})",
        "",
        "Each row sweeps one latent over -2.5…2.5 from one image's code, latents in decreasing KL.",
        "",
        "## Use",
        "",
        "```python",
        "from trainables.exported import load_exported",
        "",
        "model = load_exported('path/to/this/folder')  # verifies every file against manifest.json",
        "z = model.encode(x)            # x: (n, 1, 64, 64) in [0, 1] -> posterior means (n, D)",
        "x_hat = model.reconstruct(x)   # pixel probabilities",
        "grid = model.traverse(x, latent=0, values=[-2, 0, 2])",
        "```",
        "",
        f"Files: `{exported.WEIGHTS_FILE}` (weights only), `{exported.CONFIG_FILE}`, `{exported.METRICS_FILE}`, "
        f"`{exported.TRAVERSAL_FILE}`, this card, and `{exported.MANIFEST_FILE}` with the sha256 of each.",
        "",
    ]
    return "\n".join(lines)


def _traversal(model, row: dict, metrics: dict, title: str, path: Path) -> None:
    from sweeper import plots
    from sweeper.models import encode, observation_set

    codes, kl_mean = encode(model, observation_set(8))
    final = metrics["final"]
    kl = np.array(
        [final.get(f"kl/{d}") if final.get(f"kl/{d}") is not None else kl_mean[d] for d in range(model.latent_dim)],
        dtype=np.float64,
    )
    plots.traversal(model, codes[0], kl, title, path)


def folder_name(row: dict) -> str:
    name = f"beta={row['beta']:g}_C={row['capacity']:g}_seed={row['seed']}_{row['run_id'][:8]}"
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", name)


def export_model(row: dict, run: Run, ref: SweepRef, done: pa.Table, choice: Choice, reason: str, folder: Path) -> Path:
    """One model folder: weights, config, metrics, card, traversal, then the manifest."""
    weights, state = read_checkpoint(row)
    config = build_config(row, run, ref, weights, state)
    try:
        exported.save_exported(folder, weights, config)
        model = exported.check_fits(config, weights)
    except ExportError as exc:
        raise EnvironmentProblem(f"{_describe(row)}: {exc}") from None
    model.load_state_dict(weights)
    model.eval()
    metrics = build_metrics(row, run, done, choice.by, choice.maximize, reason)
    exported.write_json(folder / exported.METRICS_FILE, metrics)
    title = f"beta={row['beta']:g} C={row['capacity']:g} seed={row['seed']}"
    _traversal(model, row, metrics, title, folder / exported.TRAVERSAL_FILE)
    (folder / exported.CARD_FILE).write_text(model_card(config, metrics, choice.by), encoding="utf-8")
    exported.write_manifest(folder)
    return folder


# -- the export ---------------------------------------------------------------------------


def export_sweep(
    client: MlflowClient,
    ref: SweepRef,
    out: Path,
    choice: Choice,
    force: bool = False,
    register: str | None = None,
    alias: str | None = None,
    echo: Callable[[str], None] = print,
) -> ExportResult:
    """Export the chosen models of the sweep into `out`, then register them if asked.

    Nothing is left at `out` (or next to it) when any step before the rename fails.
    """
    out = Path(out)
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
    done = selection.finished(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    result = ExportResult(out)
    try:
        index = []
        for row, reason in chosen:
            name = folder_name(row)
            echo(f"export: {_describe(row)} ({reason}) -> {out / name}")
            export_model(row, by_id[row["run_id"]], ref, done, choice, reason, staging / name)
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


# -- the registry -------------------------------------------------------------------------


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
        registry.log_artifacts(run_id, str(folder), ARTIFACT_PATH)
        try:
            registry.get_registered_model(name)
        except MlflowException:
            registry.create_registered_model(name, description="beta-VAE exported by `sweeper export`")
        tags = {"sweep_id": sweep_id} if sweep_id else None
        source = f"runs:/{run_id}/{ARTIFACT_PATH}"
        version = registry.create_model_version(name, source=source, run_id=run_id, tags=tags)
        if alias:
            registry.set_registered_model_alias(name, alias, version.version)
    except ExportError as exc:
        raise EnvironmentProblem(str(exc)) from None
    except MlflowException as exc:
        raise EnvironmentProblem(f"registering {name!r} in {client.tracking_uri} failed: {exc.message}") from None
    return str(version.version)


_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))/?$")


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
            raise ConfigError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri)
            return exported.load_exported(local)
    except MlflowException as exc:
        raise EnvironmentProblem(f"{uri}: {exc.message}") from None


def print_export(result: ExportResult, echo: Callable[[str], None] = print) -> None:
    for model in result.models:
        line = f"{model.folder}  run {model.run_id}  ({model.reason})"
        echo(line + (f"  registered version {model.version}" if model.version else ""))

