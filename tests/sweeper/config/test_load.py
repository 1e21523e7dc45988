"""A config file and its overrides to a `SweepConfig`: reading nothing but the file."""

from pathlib import Path

from sweeper.config import dump_config, load_config, validate_config
from trainables.settings import TrialSettings

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_overrides_reach_nested_keys_and_parse_values():
    config = load_config(
        CONFIGS / "smoke.yaml", ["training.steps=30", "search.objectives.beta_vae.beta=[2, 3]", "eval.metrics=[mig]"]
    )
    assert config.training.steps == 30
    assert config.search.objectives == {"beta_vae": {"beta": [2.0, 3.0]}}
    assert config.eval.metrics == ("mig",)


def test_a_dumped_config_loads_back_equal(tmp_path):
    config = load_config(CONFIGS / "optuna_beta_capacity.yaml", ["resources.cpu=2"])
    (tmp_path / "config.yaml").write_text(dump_config(config))
    assert load_config(tmp_path / "config.yaml") == config


def test_loading_reads_neither_the_dataset_file_nor_the_storage_nor_the_environment(tmp_path, monkeypatch):
    # A sweep folder copied from the cluster to a laptop: its resolved config must still load.
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("RAY_ADDRESS", "ray://admin:hunter2@head:10001")
    raw = {
        "name": "copied",
        **TrialSettings.model_validate({"data": {"name": "dsprites_file", "path": "/cluster/data/dsprites.npz"}})
        .model_dump(mode="json"),
        "search": {"beta": [1.0]},
        "storage": str(tmp_path / "afile"),
    }
    config = validate_config(raw, "config.yaml")
    assert (config.data.path, config.storage) == ("/cluster/data/dsprites.npz", str(tmp_path / "afile"))
