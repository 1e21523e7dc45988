"""Bad multi-objective search settings are config errors: exit 2, key and value named, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.config import load_config
from sweeper.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
OPTUNA = REPO / "configs" / "optuna_pareto.yaml"


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["search.mode=[min]"], r"search\.metric = \['recon', 'disent/mig'\] and mode = \['min'\]: give one mode"),
        (["search.mode=max"], r"search\.metric = \['recon', 'disent/mig'\] and mode = max: give one mode"),
        (["search.sampler=cmaes"], r"search\.sampler = 'cmaes': Input should be 'tpe', 'gp', 'random' or 'nsga2'"),
        (["search.pack_seeds=false"], r"search\.scheduler = 'pareto' needs pack_seeds: true"),
        (["search.scheduler=asha"], r"search\.scheduler = 'asha' with metric = \['recon', 'disent/mig'\]"),
        (["search.metric=[recon, disent/sap]"], r"search\.metric = 'disent/sap': not reported"),
        (["search.metric=[recon, recon]"], r"search\.metric = \['recon', 'recon'\]: needs one or more metrics, each"),
        (["search.reduction_factor=1"], r"search\.reduction_factor = 1: Input should be greater than or equal to 2"),
    ],
)
def test_bad_objectives_are_refused_naming_key_and_value(sets, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(OPTUNA, ["eval.metrics=[mig]", *sets])


def test_one_metric_as_a_string_or_a_list_of_one_works(sweeper_cli, tmp_path):
    single = load_config(OPTUNA, ["search.metric=loss", "search.mode=min", "search.scheduler=fifo"])
    listed = load_config(OPTUNA, ["search.metric=[loss]", "search.mode=[min]"])
    assert single.search.metrics == listed.search.metrics == ["loss"] and listed.search.modes == ["min"]
    refused = sweeper_cli(["launch", str(OPTUNA), "--set", "search.mode=[max]"], tmp_path)
    assert refused.returncode == 2 and "give one mode per metric" in refused.stderr
    assert list(tmp_path.iterdir()) == []  # no sweep folder, no tracking store
