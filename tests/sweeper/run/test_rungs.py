"""Rung records saved with the sweep's state and restored by `resume`: a resumed scheduler decides a rung as
the one before the crash would have, not on the trials that reach the rung after it.

No Ray runs here. The schedulers get results of real Tune trials as the controller hands them over; the
records are written where Tune's save puts them and read back from the experiment folder, as Tune's copy
of its staging folder leaves them; the resumed scheduler and callback come out of one pickle of both, as
`tuner.pkl` holds them, written before the first result.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray import cloudpickle, tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweeper.errors import EnvironmentProblem
from sweeper.record import RUNG_RECORDS
from sweeper.run.pareto import ParetoHalving
from sweeper.run.rungs import RungRecords, load_records, write_records
from tests.sweeper.run.test_pareto import pack_result


def asha() -> ASHAScheduler:
    return ASHAScheduler(time_attr="step", metric="loss", mode="min", max_t=40, grace_period=10, reduction_factor=2)


def pareto() -> ParetoHalving:
    return ParetoHalving(["recon", "disent/mig"], ["min", "max"], max_t=40, grace_period=10, reduction_factor=2)


def tuner_state(scheduler: TrialScheduler, experiment: Path) -> bytes:
    """The scheduler and its callback pickled together, as tuner.pkl holds them."""
    callback = RungRecords(scheduler, str(experiment))
    state = {"tune_config": tune.TuneConfig(scheduler=scheduler), "run_config": tune.RunConfig(callbacks=[callback])}
    return cloudpickle.dumps(state)


def resumed(pickled: bytes) -> TrialScheduler:
    """The scheduler a resumed sweep runs with: out of tuner.pkl, its records restored by the callback's setup."""
    state = cloudpickle.loads(pickled)
    scheduler, (callback,) = state["tune_config"].scheduler, state["run_config"].callbacks
    assert callback.scheduler is scheduler  # the callback restores into the scheduler Tune uses
    callback.setup()
    return scheduler


def decide(scheduler: TrialScheduler, trial_id: str, result: dict, new: bool = True) -> str:
    trial = Trial("train", trial_id=trial_id, stub=True)
    if new:
        scheduler.on_trial_add(None, trial)
    return scheduler.on_trial_result(None, trial, result)


def test_a_resumed_asha_stops_a_trial_on_the_records_made_before_the_crash(tmp_path):
    scheduler = asha()
    pickled = tuner_state(scheduler, tmp_path)
    assert decide(scheduler, "a", {"step": 10, "loss": 1.0}) == TrialScheduler.CONTINUE
    assert decide(scheduler, "b", {"step": 10, "loss": 2.0}) == TrialScheduler.STOP  # below a, the median
    write_records(scheduler, tmp_path)  # a save; the driver dies after it

    restored = resumed(pickled)
    restored.on_trial_add(None, Trial("train", trial_id="a", stub=True))  # the controller re-adds restored trials
    # Rung 10 holds a (loss 1.0) and b (2.0): the cutoff is their median, 1.5, and c's 1.8 is worse.
    assert decide(restored, "c", {"step": 10, "loss": 1.8}) == TrialScheduler.STOP
    assert decide(restored, "a", {"step": 20, "loss": 0.5}, new=False) == TrialScheduler.CONTINUE
    # Without the records c would be the first at the rung, and go on.
    assert decide(asha(), "c", {"step": 10, "loss": 1.8}) == TrialScheduler.CONTINUE


def test_a_resumed_pareto_scheduler_stops_a_dominated_pack_and_keeps_the_stopped_ones(tmp_path):
    scheduler = pareto()
    pickled = tuner_state(scheduler, tmp_path)
    assert decide(scheduler, "a", pack_result(10, [1.0, 3.0], [0.5, 0.5])) == TrialScheduler.CONTINUE  # (2.0, 0.5)
    assert decide(scheduler, "b", pack_result(10, [0.5, 4.5], [0.6, 0.3])) == TrialScheduler.STOP  # (2.5, 0.45)
    write_records(scheduler, tmp_path)

    restored = resumed(pickled)
    assert restored.stopped == {"b": 10}
    # d's means (2.5, 0.4): b dominates it and a dominates both; of 3 packs the best ceil(3/2) = 2 go on.
    assert decide(restored, "d", pack_result(10, [2.0, 3.0], [0.4, 0.4])) == TrialScheduler.STOP
    assert restored.stopped == {"b": 10, "d": 10}
    assert decide(pareto(), "d", pack_result(10, [2.0, 3.0], [0.4, 0.4])) == TrialScheduler.CONTINUE


def test_records_are_plain_json_and_a_diverged_value_survives_them(tmp_path):
    scheduler = pareto()
    decide(scheduler, "a", pack_result(10, [1.0, 3.0], [0.5, 0.5]))
    decide(scheduler, "n", pack_result(10, [float("nan"), 1.0], [0.5, 0.5]))  # a seed diverged: recon mean NaN
    write_records(scheduler, tmp_path)
    saved = json.loads((tmp_path / RUNG_RECORDS).read_text())
    assert saved["rungs"][0]["step"] == 10 and saved["rungs"][0]["recorded"]["a"] == [2.0, 0.5]
    assert saved["stopped"] == {"n": 10}
    fresh = pareto()
    load_records(fresh, str(tmp_path))
    assert fresh.recorded[10]["a"] == (2.0, 0.5) and str(fresh.recorded[10]["n"][0]) == "nan"
    assert fresh.recorded[20] == {} and fresh.stopped == {"n": 10}


def write_saved(folder: Path, saved: dict) -> None:
    (folder / RUNG_RECORDS).write_text(json.dumps(saved))


def test_records_of_other_rungs_are_refused_naming_the_file_and_both_rungs(tmp_path):
    write_saved(tmp_path, {"rungs": [{"step": 5, "recorded": {}}, {"step": 20, "recorded": {}}]})
    with pytest.raises(EnvironmentProblem, match=r"rungs\.json: records of rungs at steps \[5, 20\], but the sweep's "
                       r"scheduler has \[10, 20, 40\]") as error:  # fmt: skip
        load_records(asha(), str(tmp_path))
    assert error.value.exit_code == 3


@pytest.mark.parametrize(
    ("value", "scheduler", "shape"),
    [(True, asha, "a number"), ("1.0", asha, "a number"), ([1.0], pareto, "a list of 2 numbers")],
)
def test_a_value_that_is_not_a_number_is_refused_naming_its_rung_and_trial(tmp_path, value, scheduler, shape):
    built = scheduler()
    rungs = [{"step": step, "recorded": {"t1": value} if step == 10 else {}} for step in (10, 20, 40)]
    extra = {"stopped": {}} if scheduler is pareto else {}
    write_saved(tmp_path, {"rungs": rungs[:2] if scheduler is pareto else rungs, **extra})  # pareto: no rung at max_t
    with pytest.raises(EnvironmentProblem, match=rf"rung 10, trial 't1': .* is not {shape}"):
        load_records(built, str(tmp_path))


def test_unreadable_records_are_refused(tmp_path):
    (tmp_path / RUNG_RECORDS).write_text("{not json")
    with pytest.raises(EnvironmentProblem, match=r"rungs\.json: not the JSON rung records a sweep writes"):
        load_records(asha(), str(tmp_path))


def test_an_asha_whose_rungs_are_not_one_bracket_is_refused_naming_the_ray_version(tmp_path):
    import ray

    several = ASHAScheduler(time_attr="step", metric="loss", mode="min", max_t=40, grace_period=10, brackets=2)
    with pytest.raises(EnvironmentProblem, match=rf"ray {ray.__version__}: its ASHAScheduler does not keep one bracket"):
        write_records(several, tmp_path)


def test_a_sweep_without_records_resumes_with_empty_rungs(tmp_path):
    scheduler = asha()
    load_records(scheduler, str(tmp_path))  # the driver stopped before its first save
    assert decide(scheduler, "a", {"step": 10, "loss": 9.0}) == TrialScheduler.CONTINUE
