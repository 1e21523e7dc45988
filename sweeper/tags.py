"""Every MLflow tag and param name the sweeps write and the later commands read.

The run stage writes them (`sweeper.tracking`), the analyse and export stages
search and read them (`sweeper.analyse.results`, `sweeper.export`): one
definition here, importing nothing, so a command that only reads never loads
Ray to learn a tag's name.
"""

from __future__ import annotations

# Tags of every run of a sweep.
SWEEP_TAG = "sweep_id"
ROLE_TAG = "sweeper.role"
ROLE_SWEEP, ROLE_TRIAL = "sweep", "trial"  # the values of ROLE_TAG: the parent run, one model's child run
PARENT_TAG = "mlflow.parentRunId"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # the MLflow UI opens such an experiment on its runs table
NOTE_TAG = "mlflow.note.content"

# Tags of a model's child run.
TRIAL_TAG = "ray_trial_id"  # the Ray Tune trial that trains it (a packed trial trains several models)
SEED_TAG = "seed"
CHECKPOINT_TAG = "checkpoint"  # its latest checkpoint folder or object-store URI
ERROR_TAG = "error"  # why it failed
STOPPED_EARLY_TAG = "stopped_early_at_step"  # the rung a scheduler stopped it at (its run ends KILLED)
PLACEMENT_TAGS = ("node_ip", "hostname", "ray_node_id", "gpu_ids")  # where it trained, from its reports

# A study across sweeps (`sweeper study`): its own run, in its own experiment.
ROLE_STUDY = "study"  # the value of ROLE_TAG on a study's run
STUDY_EXPERIMENT = "sweeper-studies"
STUDY_SWEEPS_TAG = "study.sweeps"  # the sweep ids it read, comma-joined
STUDY_ARTIFACTS = "study"  # the study folder, on its run

# Tags `sweeper select` writes.
SELECTED_TAG = "selected"  # on a picked run: the pick kinds it was chosen for
PICK_ROLE_TAG = "role"  # on a picked run: its roles in them
SELECTED_BY_TAG = "selected.by"  # on the parent run: the score the current picks were made by

# Params of a model's child run, besides every setting as a dotted name (`training.lr`): its objective's
# kind and each of that objective's weights under the study's name (`beta`, `gamma`, `c_max`, `lambda_od`).
OBJECTIVE_PARAM, SEED_PARAM = "objective", "seed"
LEGACY_BETA_PARAM, LEGACY_CAPACITY_PARAM = "beta", "capacity"  # what runs of earlier releases have instead
# Every objective's weights (`trainables.objectives.WEIGHTS`, pinned to it by a test), in one order that keeps
# each objective's own (AnnealedVAE's gamma before c_max): the readers need the names without loading torch.
WEIGHT_PARAMS = ("beta", "gamma", "c_max", "lambda_od")
TRIAL_INDEX_PARAM = "trial_index"
LATENT_DIM_PARAM = "model.latent_dim"
VERSION_PARAM_PREFIX = "version."  # library versions: `version.torch`, ...

# Params of a sweep's Optuna study (its journal in the sweep folder): the objective, when the search
# chooses among several, and each weight as `<objective>.<weight>`, its own parameter per objective.
OPTUNA_OBJECTIVE_PARAM = "objective"


def optuna_weight_param(objective: str, weight: str) -> str:
    return f"{objective}.{weight}"


# The score `select`, `report`, `export` and `study` compare models by unless told another.
DEFAULT_SCORE = "disent/mig"
# Where sweeps are kept unless a config (`storage`) or a command (`--storage`) says otherwise.
DEFAULT_STORAGE = "./sweeps"

# Artifacts.
CONFIG_ARTIFACT = "config.yaml"  # the sweep's resolved config, on the parent run
REPORT_ARTIFACTS = "report"  # the report folder, on the parent run
EXPORTED_MODEL_ARTIFACT = "exported_model"  # a registered model's files, on its trial's run
