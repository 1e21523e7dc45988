import pytest

from trainables.report import TrialReport
from trainables.trial import model_key, split_model_key


def test_a_pack_reports_each_model_and_the_means_of_those_that_train_on():
    report = TrialReport(
        models={3: {"loss": 10.0, "disent/mig": 0.2}, 7: {"loss": 20.0, "disent/mig": 0.4}},
        failed={5: "non-finite loss at step 40"},
        images_per_sec=900.0,
    )
    metrics = report.tune_metrics()
    assert metrics[model_key(3, "loss")] == 10.0 and metrics[model_key(7, "disent/mig")] == 0.4
    assert metrics["loss"] == 15.0 and metrics["disent/mig"] == pytest.approx(0.3)
    assert metrics[model_key(5, "error")] == "non-finite loss at step 40"
    assert not any(split_model_key(k) == (5, "loss") for k in metrics)  # a failed model's numbers stop
    assert metrics["models_failed"] == 1.0 and metrics["images_per_sec"] == 900.0
