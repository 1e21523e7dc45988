"""MODEL_CARD.md: what an exported model is, how it was trained, and its scores among its seeds."""

from __future__ import annotations

from typing import Any

from trainables import exported
from trainables.trial import ModelSpec


def _number(value: Any) -> str:
    return "–" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def model_card(config: dict, metrics: dict, by: str) -> str:
    """MODEL_CARD.md: what the model is, how it was trained, its scores among its seeds, a traversal."""
    src, cfgn, training = config["source"], metrics["configuration"], config["training"]
    configuration = exported.read_configuration(config)
    objective = config["objective"]
    weights = ", ".join(f"{name} = {value:g}" for name, value in configuration.weights)
    annealing = f", capacity_steps = {_number(objective['capacity_steps'])}" if "capacity_steps" in objective else ""
    lines = [
        f"# {ModelSpec(configuration, config['seed']).label()}",
        "",
        "## What it is",
        "",
        f"A {config['model']['architecture']}, with {config['model']['latent_dim']} latents, trained with the "
        f"{configuration.objective} objective on {config['data'].get('kind', config['data']['name'])}.",
        f"Trial `{src['trial_id']}` (MLflow run `{src['run_id']}`) of sweep `{src['sweep_id']}`; chosen as: "
        f"{metrics['chosen']}.",
        "",
        "## How it was trained",
        "",
        f"- objective: `{configuration.objective}`; {weights}{annealing}",
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
        f"model.objective, model.weights  # {configuration.objective!r}, {dict(configuration.weights)}",
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
