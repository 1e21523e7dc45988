"""`sweeper study` end to end, on sweeps made in a SQLite MLflow store as `sweeper launch` leaves them."""

import html
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from sweeper.analyse.study_report import STUDY_MARKER
from sweeper.cli import app
from trainables.trial import Configuration

runner = CliRunner()
FIGURES = ("variance_shares.png", "score_by_objective.png", "score_vs_hyperparameter.png")
# MIG of each configuration; seed s adds s / 100. The same order on both datasets: beta 8 best.
BETA_1, BETA_8 = Configuration.of("beta_vae", {"beta": 1.0}), Configuration.of("beta_vae", {"beta": 8.0})
MIG = {("beta_vae", 1.0): 0.1, ("beta_vae", 8.0): 0.5, ("annealed_vae", 1.0): 0.2, ("annealed_vae", 8.0): 0.3}


def legacy_trials(metrics, weights_from: int = 0) -> list[dict]:
    """beta 1 and 8 x C_max 0 and 5 x 3 seeds, with params beta and capacity only, as before objectives."""
    trials = []
    for (objective, beta), mig in MIG.items():
        capacity = 0.0 if objective == "beta_vae" else 5.0
        for seed in range(3):
            configuration = Configuration.from_beta_and_capacity(beta, capacity)
            trial = {"configuration": configuration, "seed": seed, "metrics": metrics(100, mig + seed / 100, 0.1)}
            trial["init"] = weights_from + len(trials)
            trials.append(trial)
    return trials


def objective_trials(metrics, weights_from: int | None = None) -> list[dict]:
    """The same configurations, logged as newer sweeps log them: an objective param and its weights."""
    trials = []
    for (objective, beta), mig in MIG.items():
        weights = {"beta": beta} if objective == "beta_vae" else {"gamma": beta, "c_max": 5.0}
        for seed in range(3):
            trial = {"configuration": Configuration.of(objective, weights), "seed": seed,
                     "metrics": metrics(100, 2 * mig + seed / 50, 0.2)}  # fmt: skip
            if weights_from is not None:
                trial["init"] = weights_from + len(trials)
            trials.append(trial)
    return trials


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory, make_sweep, trial_metrics):
    """A legacy sweep on dSprites with checkpoints, a failed trial among them; a newer one on colour dSprites."""
    folder = tmp_path_factory.mktemp("study")
    legacy = legacy_trials(trial_metrics)
    failed = {"configuration": BETA_8, "seed": 3, "status": "FAILED", "error": "boom", "metrics": trial_metrics(1, 0.9, 0.1)}
    first = make_sweep(folder, [*legacy, failed], "legacy-20260101-000000-aaaa", legacy=True)
    second = make_sweep(folder, objective_trials(trial_metrics), "colour-20260101-000000-bbbb", data={"variant": "color"})
    return folder, first, second


@pytest.fixture(scope="module")
def studied(two_sweeps):
    folder, first, second = two_sweeps
    out = folder / "study"
    args = ["study", first.sweep_id, second.sweep_id, "--out", str(out), "--storage", first.storage, "--no-udr"]
    result = runner.invoke(app, args)
    return folder, first, second, out, result


def study_runs(client: MlflowClient):
    experiment = client.get_experiment_by_name("sweeper-studies")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_the_study_writes_its_table_page_and_figures(studied):
    _, first, second, out, result = studied
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"study.parquet", "study.html", STUDY_MARKER, *FIGURES} <= names
    assert {"score_correlations_0.png", "score_correlations_1.png"} <= names
    table = pq.read_table(out / "study.parquet")
    assert table.num_rows == 24  # the failed trial is left out
    keys = ["sweep", "dataset", "objective", "beta", "gamma", "c_max", "lambda_od", "seed", "run_id"]
    assert table.column_names[:9] == keys
    rows = table.to_pylist()
    datasets = {(r["sweep"], r["dataset"]) for r in rows}
    assert datasets == {(first.sweep_id, "dsprites"), (second.sweep_id, "dsprites-color")}
    # Legacy runs: C_max 0 is the beta-VAE with its beta, C_max 5 the annealed VAE with beta as gamma.
    legacy = {(r["objective"], r["beta"], r["gamma"], r["c_max"]) for r in rows if r["sweep"] == first.sweep_id}
    newer = {(r["objective"], r["beta"], r["gamma"], r["c_max"]) for r in rows if r["sweep"] == second.sweep_id}
    assert legacy == newer == {
        ("beta_vae", 1.0, None, None), ("beta_vae", 8.0, None, None),
        ("annealed_vae", None, 1.0, 5.0), ("annealed_vae", None, 8.0, 5.0),
    }
    mig = {(r["dataset"], r["objective"], r["beta"] or r["gamma"], r["seed"]): r["disent/mig"] for r in rows}
    assert mig[("dsprites", "annealed_vae", 8.0, 2)] == pytest.approx(0.32)
    assert mig[("dsprites-color", "beta_vae", 1.0, 1)] == pytest.approx(0.22)

    page = html.unescape((out / "study.html").read_text())
    assert page.count("data:image/png;base64,") == len(FIGURES) + 2
    assert "legacy-20260101-000000-aaaa" in page and "is FAILED: boom; left out" in page
    for title in ("Which matters more", "Metric agreement", "Unsupervised model selection", "Transfer"):
        assert title in page
    # beta_vae beta=8 is best on either dataset and beats every model of the others on the other dataset.
    raw = (out / "study.html").read_text()
    for source, target in (("dsprites", "dsprites-color"), ("dsprites-color", "dsprites")):
        row = f'<td class="text">{source}</td><td class="text">{target}</td><td>4</td>'
        assert row + '<td class="text">beta_vae beta=8</td><td>1</td>' in raw


def test_the_study_is_logged_as_a_run_of_its_own(studied):
    _, first, second, out, _ = studied
    client = MlflowClient(first.tracking_uri)
    (run,) = study_runs(client)
    assert run.info.status == "FINISHED"
    assert run.data.tags["sweeper.role"] == "study"
    assert run.data.tags["study.sweeps"] == f"{first.sweep_id},{second.sweep_id}"
    assert run.data.params == {"by": "disent/mig", "mode": "max"}
    assert run.data.metrics == {"models": 24.0, "datasets": 2.0, "sweeps": 2.0}
    logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "study")}
    assert logged == {p.name for p in out.iterdir()} - {STUDY_MARKER}


def test_udr_from_the_checkpoints_joins_the_scores(tmp_path, make_sweep, trial_metrics):
    """UDR where every sweep has checkpoints: it becomes a score of the study, and UDR selection is shown."""
    first = make_sweep(tmp_path, legacy_trials(trial_metrics), "a-20260101-000000-aaaa", legacy=True)
    second = make_sweep(tmp_path, objective_trials(trial_metrics, 100), "b-20260101-000000-bbbb", data={"variant": "noisy"})
    out = tmp_path / "out"
    args = ["study", first.sweep_id, second.sweep_id, "--out", str(out), "--storage", first.storage]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out / "study.parquet")
    assert table["udr"].null_count == 0  # newer runs are grouped by objective and weights, as older ones
    page = html.unescape((out / "study.html").read_text())
    assert "disent/mig of the model chosen by UDR, of a random seed and of the best" in page


# -- bad input: a clear error, nothing written ------------------------------------------------


def test_an_unknown_sweep_exits_3_and_writes_nothing(two_sweeps):
    folder, first, _ = two_sweeps
    out = folder / "never"
    args = ["study", first.sweep_id, "nope-20990101-000000-ffff", "--out", str(out), "--storage", first.storage]
    result = runner.invoke(app, args)
    assert result.exit_code == 3 and "no sweep 'nope-20990101-000000-ffff'" in result.output
    in_store = runner.invoke(app, ["study", "nope", "--out", str(out), "--tracking-uri", first.tracking_uri])
    assert in_store.exit_code == 3 and "no sweep 'nope' in the tracking store" in in_store.output
    assert not out.exists()


def test_a_sweep_without_finished_models_exits_3(tmp_path, make_sweep, trial_metrics):
    good = make_sweep(tmp_path, legacy_trials(trial_metrics)[:3], "good-20260101-000000-aaaa", legacy=True)
    failed = [
        {"configuration": BETA_1, "seed": s, "status": "FAILED", "error": "boom", "metrics": trial_metrics(1, 0.1, 0.1)}
        for s in range(2)
    ]
    bad = make_sweep(tmp_path, failed, "bad-20260101-000000-bbbb")
    out = tmp_path / "out"
    args = ["study", good.sweep_id, bad.sweep_id, "--out", str(out), "--storage", good.storage, "--no-udr"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3
    assert "sweep bad-20260101-000000-bbbb: none of its 2 trials has finished (FAILED); nothing to study" in (
        result.output
    )
    assert not out.exists() and study_runs(MlflowClient(good.tracking_uri)) == []


def test_sweeps_without_a_score_in_common_or_an_unknown_score_exit_2(tmp_path, make_sweep):
    only_mig = [{"configuration": BETA_1, "seed": s, "metrics": {"recon": 1.0, "disent/mig": 0.1 * s}} for s in range(3)]
    only_sap = [{"configuration": BETA_1, "seed": s, "metrics": {"recon": 1.0, "disent/sap": 0.1 * s}} for s in range(3)]
    a = make_sweep(tmp_path, only_mig, "mig-20260101-000000-aaaa")
    b = make_sweep(tmp_path, only_sap, "sap-20260101-000000-bbbb")
    out = tmp_path / "out"
    base = ["--out", str(out), "--storage", a.storage, "--no-udr"]
    result = runner.invoke(app, ["study", a.sweep_id, b.sweep_id, *base])
    assert result.exit_code == 2
    assert (
        "the sweeps have no score in common to compare them by (mig-20260101-000000-aaaa: disent/mig; "
        "sap-20260101-000000-bbbb: disent/sap)" in result.output
    )
    score = runner.invoke(app, ["study", a.sweep_id, *base, "--by", "disent/sap"])
    assert score.exit_code == 2
    assert "'disent/sap' is not a score every sweep reported; scores in common: disent/mig" in score.output
    twice = runner.invoke(app, ["study", a.sweep_id, a.sweep_id, *base])
    assert twice.exit_code == 2 and f"sweep '{a.sweep_id}' is named more than once" in twice.output
    assert not out.exists() and study_runs(MlflowClient(a.tracking_uri)) == []


def test_the_study_folder_is_its_own(two_sweeps):
    folder, first, second = two_sweeps
    mine = folder / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    args = [first.sweep_id, second.sweep_id, "--storage", first.storage, "--no-udr", "--by", "disent/sap"]
    refused = runner.invoke(app, ["study", *args, "--out", str(mine)])
    assert refused.exit_code == 2 and "was not made by `sweeper study`" in refused.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    # A folder the study made is taken back: its own files replaced, others left alone and not logged.
    out = folder / "again"
    assert runner.invoke(app, ["study", *args, "--out", str(out)]).exit_code == 0
    (out / "notes.txt").write_text("mine")
    again = runner.invoke(app, ["study", *args, "--out", str(out), "--mode", "min"])
    assert again.exit_code == 0, again.output
    assert (out / "notes.txt").read_text() == "mine"
    client = MlflowClient(first.tracking_uri)
    latest = max(study_runs(client), key=lambda r: r.info.start_time)
    assert latest.data.params == {"by": "disent/sap", "mode": "min"}
    assert "notes.txt" not in {Path(a.path).name for a in client.list_artifacts(latest.info.run_id, "study")}
