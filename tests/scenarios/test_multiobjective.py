"""Two-objective packed Optuna sweeps end to end, with and without the Pareto scheduler.

Real local Ray sweeps of configs/optuna_pareto.yaml at toy size: the study
holds every configuration once, told both objectives' seed means, and
`status` and `select` show its front; with the Pareto scheduler a pack that
the others dominate at a rung stops there, is pruned in the study and its
model runs say so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sweeper.analyse.study import read_study

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "optuna_pareto.yaml")
pytestmark = pytest.mark.sweep
SEEDS = 3
TOY = [
    f"--set=search.seeds={SEEDS}", "--set", "search.num_samples=3",
    "--set", "resources.cpu=1", "--set", "resources.gpu=0", "--set", "training.batch_size=16",
]  # fmt: skip


def study_trials(sweep_dir: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    return optuna.load_study(study_name=sweep_dir.name, storage=storage).trials


def model_runs(db: Path) -> list:
    client = MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([client.get_experiment_by_name("optuna_pareto").experiment_id])
    return [r for r in runs if r.data.tags.get("sweeper.role") == "trial"]


def seed_means(runs: list, beta: float, metrics: list[str]) -> list[float]:
    seeds = [r for r in runs if float(r.data.params["beta"]) == beta]
    assert len(seeds) == SEEDS
    return [float(np.mean([r.data.metrics[m] for r in seeds])) for m in metrics]


def test_two_objectives_are_told_as_seed_means_and_the_study_front_is_shown(tmp_path, sweeper_cli):
    launched = sweeper_cli(
        [
        "launch", CONFIG, *TOY, "--set", "search.scheduler=fifo", "--set", "search.objectives={beta_vae: {beta: {low: 1.0, high: 64.0}}}",
        "--set", "training.steps=40", "--set", "training.report_every=20", "--set", "training.checkpoint_every=40",
        "--set", "eval.every=40", "--set", "eval.metrics=[mig]", "--set", "eval.preset=fast",
        ],
        tmp_path,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    runs = model_runs(tmp_path / "mlflow.db")
    assert len(runs) == 3 * SEEDS
    trials = study_trials(sweep_dir)
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:  # once each, with both objectives' seed means
        assert trial.values == pytest.approx(seed_means(runs, trial.params["beta_vae.beta"], ["recon", "disent/mig"]), rel=1e-6)

    front = read_study(sweep_dir).front
    assert front and {t.number for t in front} <= {t.number for t in trials}
    status = sweeper_cli(["status", sweep_dir.name], tmp_path)
    assert status.returncode == 0, status.stderr
    assert "optuna study: 3 complete; Pareto front of recon (min), disent/mig (max)" in status.stdout
    assert sum(line.startswith("  optuna trial ") for line in status.stdout.splitlines()) == len(front)
    selected = sweeper_cli(["select", sweep_dir.name, "--by", "disent/mig", "--no-udr"], tmp_path)
    assert selected.returncode == 0, selected.stdout[-2000:] + selected.stderr[-2000:]
    lines = selected.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("beta_vae trade-off"))
    header, rows = lines[first + 1], lines[first + 2 : first + 5]
    column = header.index("study_front")
    assert sum(row[column:].strip() == "yes" for row in rows) == len(front)


def test_the_pareto_scheduler_stops_a_dominated_pack_and_optuna_prunes_it(tmp_path, sweeper_cli):
    # Random sampling of beta in {1, 64} draws 64, 1, 64: the third pack meets, at the first rung, a
    # pack (beta 1) with lower loss and recon, and 1 in 3 go on.
    launched = sweeper_cli(
        [
        "launch", CONFIG, *TOY, "--set", "search.sampler=random", "--set", "search.objectives={beta_vae: {beta: [1.0, 64.0]}}",
        "--set", "search.metric=[loss, recon]", "--set", "search.mode=[min, min]", "--set", "search.max_concurrent=1",
        "--set", "training.steps=40", "--set", "training.report_every=10", "--set", "training.checkpoint_every=40",
        "--set", "eval.every=10", "--set", "eval.metrics=[]",
        ],
        tmp_path,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    trials = study_trials(sweep_dir)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 3 and len(pruned) >= 1 and len(pruned) + len(complete) == 3
    assert all(t.values is None for t in pruned)  # never a truncated value

    runs = model_runs(tmp_path / "mlflow.db")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    stopped = [r for r in runs if "stopped_early_at_step" in r.data.tags]
    assert len(stopped) == SEEDS * len(pruned)
    for run in stopped:  # stopped at the first rung, after the report that reached it
        assert run.info.status == "KILLED" and run.data.tags["stopped_early_at_step"] == "10"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [10]
    finished = [r for r in runs if r not in stopped]
    for trial in complete:
        mates = [r for r in finished if float(r.data.params["beta"]) == trial.params["beta_vae.beta"]]
        assert trial.values == pytest.approx(seed_means(mates, trial.params["beta_vae.beta"], ["loss", "recon"]), rel=1e-6)
