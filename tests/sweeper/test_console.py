"""The trial table `launch`, `resume` and `status` print: a row per trial, named by its configuration."""

from sweeper.console import TrialRow, trial_table
from trainables.settings import TrialSettings
from trainables.trial import TRIAL_INDEX, TrialSpec

SETTINGS = TrialSettings().model_dump(mode="json")


def row(trial_id: str, config: dict, **result) -> TrialRow:
    spec = TrialSpec.from_config({**config, "settings": SETTINGS})
    return TrialRow(trial_id, "TERMINATED", spec, {"step": 10, **result}, None)


def test_rows_show_the_configuration_label_and_sort_by_objective_weights_and_seed():
    rows = [
        row("t3", {"objective": "factor_vae", "weights": {"gamma": 10.0}, "pack_seeds": [0, 1, 2]}, recon=3.0),
        row("t2", {"objective": "annealed_vae", "weights": {"gamma": 1000.0, "c_max": 25.0}, "pack_seeds": [5]}),
        row("t1", {"objective": "annealed_vae", "weights": {"gamma": 1000.0, "c_max": 5.0}, "pack_seeds": [0, 2]}),
        row("t0", {"beta": 4.0, "capacity": 0.0, TRIAL_INDEX: 1}),  # a trial of an earlier release
    ]
    lines = trial_table(sorted(rows, key=TrialRow.sort_key), "disent/mig").splitlines()
    assert lines[0].split() == ["trial", "status", "configuration", "seed", "step", "recon", "kl", "disent/mig"]
    assert [line.split() for line in lines[1:]] == [
        ["t1", "TERMINATED", "annealed_vae", "gamma=1000", "c_max=5", "0,2", "10", "-", "-", "-"],
        ["t2", "TERMINATED", "annealed_vae", "gamma=1000", "c_max=25", "5", "10", "-", "-", "-"],
        ["t0", "TERMINATED", "beta_vae", "beta=4", "1", "10", "-", "-", "-"],
        ["t3", "TERMINATED", "factor_vae", "gamma=10", "0-2", "10", "3", "-", "-"],
    ]
