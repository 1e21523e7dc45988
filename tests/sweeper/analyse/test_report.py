"""`sweeper select` and `sweeper report` on fake sweeps whose answers are known, and on a real smoke sweep."""

import html
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from sweeper.analyse.report import REPORT_MARKER
from sweeper.analyse.report_html import Section, render
from sweeper.analyse.udr import udr_within_configurations
from sweeper.cli import app
from trainables.trial import Configuration

runner = CliRunner()
REPO = Path(__file__).resolve().parents[3]
FIGURES = (
    "rate_distortion.png",
    "tradeoff.png",
    "scores_by_configuration.png",
    "score_correlations.png",
    "kl_per_latent.png",
)


def trial_tags(client: MlflowClient, record) -> dict[str, dict[str, str]]:
    """Model label (the fake sweep's run name, `beta_vae beta=1 seed=2`) -> the run's selection tags."""
    runs = client.search_runs([record.experiment_id], "tags.`sweeper.role` = 'trial'")
    return {r.info.run_name: {k: v for k, v in r.data.tags.items() if k in ("selected", "role")} for r in runs}


def artifact_paths(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {Path(a.path).name for a in client.list_artifacts(run_id, path)}


def written_by_report(out: Path) -> set[str]:
    """The files of a report folder the report wrote: all but its marker."""
    return {p.name for p in out.iterdir()} - {REPORT_MARKER}


# -- UDR from hand-made codes -------------------------------------------------------------


def test_udr_is_one_for_the_same_latents_and_low_for_unrelated_ones():
    rng = np.random.default_rng(0)
    codes = np.indices((4,) * 5).reshape(5, -1).T.astype(float)  # a full factorial: latents exactly unrelated
    kl = np.ones(5)
    same = {"a0": codes, "a1": -codes[:, ::-1] * 3, "a2": codes[:, [2, 0, 1, 4, 3]]}  # permuted, flipped, scaled
    unrelated = {f"b{i}": rng.normal(size=codes.shape) for i in range(3)}
    # Two seeds: their pair score is symmetric, so UDR would give both the same value.
    pair = {"d0": codes, "d1": rng.normal(size=codes.shape)}
    encoded = {run: (c, kl) for run, c in {**same, **unrelated, "c0": codes, **pair}.items()}
    table = pa.table(
        {
            "run_id": list(encoded),
            "status": ["FINISHED"] * 9,
            "objective": ["beta_vae"] * 9,
            "beta": [1.0] * 3 + [8.0] * 3 + [16.0] + [32.0] * 2,
            **{name: pa.nulls(9, pa.float64()) for name in ("gamma", "c_max", "lambda_od")},
        }
    )
    found = udr_within_configurations(table, encoded)
    assert [found.by_run[r] for r in same] == pytest.approx([1.0, 1.0, 1.0])
    assert max(found.by_run[r] for r in unrelated) < 0.2
    assert not {"c0", "d0", "d1"} & set(found.by_run)
    assert [p.split(";")[0] for p in found.problems] == [
        "beta_vae beta=16: 1 model(s) to compare", "beta_vae beta=32: 2 model(s) to compare"
    ]
    assert all("UDR needs at least 3 seeds" in p for p in found.problems)


def test_html_escapes_text_and_marks_what_is_missing():
    table = pa.table(
        {"name": ["<b>"], "value": [None], "ok": [True]},
        schema=pa.schema([("name", pa.string()), ("value", pa.float64()), ("ok", pa.bool_())]),
    )
    page = render("t", [("sweep", "s&1")], ["checkpoint <gone>"], [Section("S", "text", tables=[("cap", table)])])
    assert "&lt;b&gt;" in page and "s&amp;1" in page and "checkpoint &lt;gone&gt;" in page
    assert "<td>–</td>" in page and "<td>✓</td>" in page and "what is missing" in page


# -- a fake sweep, reported ---------------------------------------------------------------


@pytest.fixture(scope="module")
def reported(tmp_path_factory, make_sweep, two_by_three, trial_metrics):
    """A fake 2 x 3 sweep with a failed trial and a lost checkpoint, through `sweeper report`."""
    folder = tmp_path_factory.mktemp("reported")
    trials = two_by_three()
    trials[4]["checkpoint"] = str(folder / "gone")  # beta 8 seed 1: its checkpoint was deleted
    del trials[4]["init"]
    trials.append(
        {
            "configuration": trials[4]["configuration"],
            "seed": 3,
            "status": "FAILED",
            "error": "non-finite loss at step 10",
            "metrics": trial_metrics(1, 0.99, 0.9),
        }
    )
    record = make_sweep(folder, trials)
    result = runner.invoke(app, ["report", record.sweep_id, "--storage", record.storage])
    return record, result, Path(record.storage) / record.sweep_id / "report"


def test_report_writes_html_figures_and_table(reported):
    record, result, out = reported
    assert result.exit_code == 0, result.output
    for name in ("report.html", "results.parquet") + FIGURES:
        assert (out / name).is_file(), name
    traversals = sorted(p.name for p in out.glob("model_*_traversal.png"))
    reconstructions = sorted(out.glob("model_*_reconstruction.png"))
    # Picked: every seed of beta 1 and beta 8 seeds 0 and 2 (seed 1, the worst, lost its checkpoint).
    assert len(traversals) == len(reconstructions) == 5
    page = html.unescape((out / "report.html").read_text())
    assert page.count("data:image/png;base64,") == len(FIGURES) + 10
    assert (
        "non-finite loss at step 10" in page
        and f"no model.safetensors in checkpoint '{out.parent.parent.parent / 'gone'}'" in page
    )
    table = pq.read_table(out / "results.parquet")
    assert table.num_rows == 7 and "udr" in table.column_names


def test_report_tags_the_picks_and_logs_its_folder_to_the_parent_run(reported):
    record, result, out = reported
    client = MlflowClient(record.tracking_uri)
    tags = trial_tags(client, record)
    assert tags["beta_vae beta=1 seed=2"] == {"selected": "tradeoff,seed_sensitivity", "role": "median_seed,pareto"}
    # beta 8 keeps two checkpoints: one pair, one symmetric score, so no UDR and no top_udr pick.
    assert tags["beta_vae beta=8 seed=0"] == {"selected": "seed_sensitivity", "role": "best_seed"}
    assert tags["beta_vae beta=8 seed=1"] == {"selected": "seed_sensitivity", "role": "worst_seed"}
    assert tags["beta_vae beta=8 seed=3"] == {}  # failed: never picked
    parent = client.get_run(record.parent_run_id)
    assert parent.data.tags["selected.by"] == "disent/mig (max)"
    assert artifact_paths(client, record.parent_run_id, "report") == written_by_report(out)


def test_udr_from_checkpoints_ranks_seeds_with_equal_weights_alike(reported):
    _, _, out = reported
    rows = pq.read_table(out / "results.parquet").to_pylist()
    udr = {(r["beta"], r["seed"]): r["udr"] for r in rows}
    assert udr[(1.0, 0)] == udr[(1.0, 1)] == udr[(1.0, 2)] > 0
    # Beta 8 keeps two checkpoints (seed 1's is gone, seed 3 failed): too few seeds to rank by UDR.
    assert udr[(8.0, 0)] is None and udr[(8.0, 2)] is None and udr[(8.0, 1)] is None and udr[(8.0, 3)] is None
    assert "UDR needs at least 3 seeds" in (out / "report.html").read_text()


# -- several objectives, and sweeps of earlier releases -----------------------------------


def test_a_report_of_two_objectives_shows_each_ones_tradeoff_and_variance(workdir, make_sweep, trial_metrics):
    """beta_vae beta 1, 4 and factor_vae gamma 10, 40, two seeds each (as in test_selection's two_objectives)."""
    mig = {("beta_vae", "beta", 1.0): [0.1, 0.3], ("beta_vae", "beta", 4.0): [0.5, 0.7],
           ("factor_vae", "gamma", 10.0): [0.2, 0.6], ("factor_vae", "gamma", 40.0): [0.3, 0.5]}
    trials = [
        {"configuration": Configuration.of(kind, {name: value}), "seed": seed, "metrics": trial_metrics(100, m, m)}
        for (kind, name, value), scores in mig.items()
        for seed, m in enumerate(scores)
    ]
    record = make_sweep(workdir, trials)
    result = runner.invoke(app, ["report", record.sweep_id, "--out", str(workdir / "out")])
    assert result.exit_code == 0, result.output
    assert "beta_vae trade-off along beta, by disent/mig" in result.output
    assert "factor_vae trade-off along gamma, by disent/mig" in result.output
    table = pq.read_table(workdir / "out" / "results.parquet")
    assert sorted(set(table["objective"].to_pylist())) == ["beta_vae", "factor_vae"]
    page = html.unescape((workdir / "out" / "report.html").read_text())
    # η² of MIG within each objective: 0.8 for beta_vae, 0 for factor_vae (worked out in test_selection).
    assert "<td>beta_vae</td><td>disent/mig</td><td>2</td><td>0.8</td><td>0.2</td>" in page.replace(
        ' class="text"', ""
    )
    assert "<td>factor_vae</td><td>disent/mig</td><td>2</td><td>0</td><td>1</td>" in page.replace(
        ' class="text"', ""
    )
    assert "pareto_overall" in page


def test_select_and_report_read_a_sweep_of_an_earlier_release(workdir, make_sweep, earlier_release):
    """Params beta and capacity, checkpoints at the root of a trial's, states naming beta and C_max."""
    record = make_sweep(workdir, earlier_release(), legacy=True)
    result = runner.invoke(app, ["report", record.sweep_id, "--out", str(workdir / "out")])
    assert result.exit_code == 0, result.output
    tags = trial_tags(MlflowClient(record.tracking_uri), record)
    assert tags["annealed_vae gamma=4 c_max=25 seed=2"] == {"selected": "seed_sensitivity", "role": "best_seed"}
    # C_max 25 reconstructs as well as C_max 0 (median 110) and scores better: the front of both objectives.
    assert tags["annealed_vae gamma=4 c_max=25 seed=1"] == {
        "selected": "tradeoff,seed_sensitivity",
        "role": "median_seed,pareto,pareto_overall",
    }
    assert tags["beta_vae beta=1 seed=2"] == {"selected": "tradeoff,seed_sensitivity", "role": "median_seed,pareto"}
    rows = pq.read_table(workdir / "out" / "results.parquet").to_pylist()
    assert {(r["objective"], r["beta"], r["gamma"], r["c_max"]) for r in rows} == {
        ("beta_vae", 1.0, None, None),
        ("annealed_vae", None, 4.0, 25.0),
    }
    assert all(r["udr"] is not None for r in rows)  # every root-level checkpoint was read
    assert len(list((workdir / "out").glob("model_annealed_vae_gamma=4_c_max=25_seed=*_traversal.png"))) == 3


# -- the report folder is the report's own ------------------------------------------------


def test_report_refuses_a_folder_it_did_not_make_and_leaves_its_files_alone(workdir, make_sweep, two_by_three):
    record = make_sweep(workdir, two_by_three(with_checkpoints=False))
    client = MlflowClient(record.tracking_uri)
    mine = workdir / "mine"
    mine.mkdir()
    (mine / ".env").write_text("AWS_SECRET_ACCESS_KEY=very-secret\n")
    (mine / "model_of_my_own.png").write_bytes(b"not a report figure")
    refused = runner.invoke(app, ["report", record.sweep_id, "--out", str(mine)])
    assert refused.exit_code == 2, refused.output
    assert f"--out {mine}: the folder exists and was not made by `sweeper report`" in refused.output
    assert sorted(p.name for p in mine.iterdir()) == [".env", "model_of_my_own.png"]
    assert artifact_paths(client, record.parent_run_id, "report") == set()

    # A folder the report made: files put there later stay, and are not logged, on the next report.
    out = workdir / "made"
    first = runner.invoke(app, ["report", record.sweep_id, "--out", str(out)])
    assert first.exit_code == 0, first.output
    (out / ".env").write_text("AWS_SECRET_ACCESS_KEY=very-secret\n")
    (out / "model_of_my_own.png").write_bytes(b"not a report figure")
    again = runner.invoke(app, ["report", record.sweep_id, "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert (out / ".env").read_text() == "AWS_SECRET_ACCESS_KEY=very-secret\n"
    assert (out / "model_of_my_own.png").read_bytes() == b"not a report figure"
    logged = artifact_paths(client, record.parent_run_id, "report")
    assert "report.html" in logged and ".env" not in logged and "model_of_my_own.png" not in logged
    assert logged == written_by_report(out) - {".env", "model_of_my_own.png"}


def test_a_tampered_report_marker_exits_2_and_deletes_nothing(workdir, make_sweep, two_by_three):
    # The marker says which files a later report may delete: a name outside the folder must not be one.
    record = make_sweep(workdir, two_by_three(with_checkpoints=False))
    victim = workdir / "victim.txt"
    victim.write_text("keep me")
    out = workdir / "made"
    out.mkdir()
    (out / "report.html").write_text("an earlier report")
    not_files = "lists names that are not files of the folder"
    for marker, expected in [
        ("{not json", "not a marker written by `sweeper report` (Expecting property name"),
        ('{"written": "report.html"}', "not a marker written by `sweeper report` ('written' is not a list"),
        ('{"written": ["../victim.txt"]}', f"{not_files}: ['../victim.txt']"),
        (json.dumps({"written": [str(victim)]}), f"{not_files}: [{str(victim)!r}]"),
    ]:
        (out / REPORT_MARKER).write_text(marker)
        result = runner.invoke(app, ["report", record.sweep_id, "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert f"{out / REPORT_MARKER}: {expected}" in result.output
        assert victim.read_text() == "keep me"
        left = {p.name: p.read_text() for p in out.iterdir()}
        assert left == {"report.html": "an earlier report", REPORT_MARKER: marker}
    assert artifact_paths(MlflowClient(record.tracking_uri), record.parent_run_id, "report") == set()


# -- tags follow the picks ----------------------------------------------------------------


def test_select_again_moves_the_tags_to_the_new_picks(workdir, make_sweep, two_by_three):
    record = make_sweep(workdir, two_by_three(with_checkpoints=False))
    client = MlflowClient(record.tracking_uri)
    first = runner.invoke(app, ["select", record.sweep_id, "--no-udr"])
    assert first.exit_code == 0, first.output
    assert "seed sensitivity by disent/mig" in first.output
    assert len([t for t in trial_tags(client, record).values() if t]) == 6
    # By sap, lower is better: beta 1 seed 0 (0.05) is best, beta 8 seed 0 (0.35) worst, beta 1 seed 1 untouched.
    second = runner.invoke(app, ["select", record.sweep_id, "--no-udr", "--by", "disent/sap", "--mode", "min"])
    assert second.exit_code == 0, second.output
    tags = trial_tags(client, record)
    assert tags["beta_vae beta=1 seed=0"] == {"selected": "seed_sensitivity", "role": "best_seed"}
    assert tags["beta_vae beta=8 seed=0"] == {"selected": "seed_sensitivity", "role": "worst_seed"}
    assert tags["beta_vae beta=8 seed=1"] == {"selected": "seed_sensitivity", "role": "best_seed"}
    assert client.get_run(record.parent_run_id).data.tags["selected.by"] == "disent/sap (min)"


# -- bad input ----------------------------------------------------------------------------


def test_unknown_sweep_and_unknown_score_exit_3_and_2(workdir, make_sweep, two_by_three):
    record = make_sweep(workdir, two_by_three(with_checkpoints=False))
    unknown = runner.invoke(app, ["report", "smoke-20990101-000000-ffff"])
    assert unknown.exit_code == 3 and "no sweep 'smoke-20990101-000000-ffff'" in unknown.output
    elsewhere = runner.invoke(app, ["select", "nope", "--tracking-uri", record.tracking_uri])
    assert elsewhere.exit_code == 3 and "no sweep 'nope' in the tracking store" in elsewhere.output
    score = runner.invoke(app, ["report", record.sweep_id, "--by", "disent/dci_disentanglement"])
    assert score.exit_code == 2
    assert (
        "no finished trial reported 'disent/dci_disentanglement'; scores reported: recon, kl, disent/mig, disent/sap"
        in score.output
    )
    assert not (Path(record.storage) / record.sweep_id / "report").exists()
    no_udr = runner.invoke(app, ["select", record.sweep_id, "--by", "udr", "--no-udr"])
    assert no_udr.exit_code == 2 and "no finished trial reported 'udr'" in no_udr.output


def test_a_sweep_without_finished_trials_exits_3(workdir, make_sweep, trial_metrics):
    failed = [
        {
            "configuration": Configuration.of("beta_vae", {"beta": 1.0}),
            "seed": s,
            "status": "FAILED",
            "error": "boom",
            "metrics": trial_metrics(1, 0.1, 0.1),
        }
        for s in range(2)
    ]
    record = make_sweep(workdir, failed)
    result = runner.invoke(app, ["report", record.sweep_id])
    assert result.exit_code == 3
    assert "none of its 2 trials has finished (FAILED)" in result.output


# -- a real smoke sweep, reported ---------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_report(smoke_sweep, sweeper_cli):
    """`sweeper report` on the real smoke sweep (beta 1 and 8 x 3 seeds)."""
    folder, sweep_dir, _ = smoke_sweep
    report = sweeper_cli(["report", sweep_dir.name], cwd=folder)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    return folder, sweep_dir, report


@pytest.mark.sweep
def test_report_on_a_real_sweep(smoke_report):
    folder, sweep_dir, report = smoke_report
    out = sweep_dir / "report"
    for name in ("report.html", "results.parquet") + FIGURES:
        assert (out / name).is_file(), name
    table = pq.read_table(out / "results.parquet")
    assert table.num_rows == 6 and set(table["status"].to_pylist()) == {"FINISHED"}
    assert all(u is not None for u in table["udr"].to_pylist())  # every checkpoint was found
    picked = [r for r in table.to_pylist() if r["selected"]]
    assert len(list(out.glob("model_*_traversal.png"))) == len(picked)
    assert "no model.safetensors" not in (out / "report.html").read_text()
    # 150 steps leave every model at the prior: the report says so before anything else.
    assert set(table["active_latents"].to_pylist()) == {0.0}
    assert "no model left the prior: none of the 6 finished models" in (out / "report.html").read_text()
    assert "note: no model left the prior" in report.stdout

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    record = json.loads((sweep_dir / "sweep.json").read_text())
    runs = {r.info.run_id: r for r in client.search_runs([record["experiment_id"]], "tags.`sweeper.role` = 'trial'")}
    for row in table.to_pylist():
        tags = runs[row["run_id"]].data.tags
        assert (tags.get("selected"), tags.get("role")) == (row["selected"], row["role"])
    medians = [r for r in picked if "median_seed" in r["role"].split(",")]
    assert sorted(r["beta"] for r in medians) == [1.0, 8.0]
    for beta in (1.0, 8.0):
        mig = sorted((r["disent/mig"], r["seed"]) for r in table.to_pylist() if r["beta"] == beta)
        assert next(r["seed"] for r in medians if r["beta"] == beta) == mig[1][1]
    assert artifact_paths(client, record["parent_run_id"], "report") == written_by_report(out)
