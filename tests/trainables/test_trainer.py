import math

import pytest
import torch

from trainables.settings import TrialSettings
from trainables.trainer import NonFiniteLossError, Trainer

SETTINGS = TrialSettings.model_validate(
    {"training": {"steps": 40, "batch_size": 16, "threads": 1}, "objective": {"capacity_steps": 20}}
)


def weights(trainer: Trainer) -> list[torch.Tensor]:
    return [t.clone() for t in trainer.model.state_dict().values()]


def test_report_carries_every_training_quantity():
    trainer = Trainer(SETTINGS, beta=4.0, capacity=10.0, seed=0)
    report = trainer.train(10)
    assert trainer.step == 10
    for key in ("loss", "recon", "kl", "capacity", "active_latents", "images_per_sec"):
        assert math.isfinite(report[key])
    assert [f"kl/{i}" for i in range(10)] == [k for k in report if k.startswith("kl/")]
    assert report["kl"] == pytest.approx(sum(report[f"kl/{i}"] for i in range(10)), rel=1e-4)
    assert report["capacity"] == pytest.approx(10.0 * 10 / 20)


def test_same_seed_same_training_different_seed_different_training():
    a, b, c = (Trainer(SETTINGS, 4.0, 0.0, seed) for seed in (1, 1, 2))
    for t in (a, b, c):
        t.train(5)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))
    assert not all(torch.equal(x, y) for x, y in zip(weights(a), weights(c)))


def test_resumed_trainer_continues_at_the_same_step_with_the_same_weights(tmp_path):
    straight = Trainer(SETTINGS, 4.0, 5.0, seed=3)
    straight.train(12)
    straight.save(tmp_path)
    straight.train(8)

    resumed = Trainer(SETTINGS, 4.0, 5.0, seed=3)
    resumed.load(tmp_path)
    assert resumed.step == 12
    resumed.train(8)
    assert resumed.step == straight.step == 20
    assert all(torch.equal(x, y) for x, y in zip(weights(straight), weights(resumed)))


def test_checkpoint_of_another_trial_is_refused(tmp_path):
    Trainer(SETTINGS, 4.0, 5.0, seed=3).save(tmp_path)
    with pytest.raises(ValueError, match="belongs to beta=4.0"):
        Trainer(SETTINGS, 8.0, 5.0, seed=3).load(tmp_path)


def test_non_finite_loss_ends_training_with_a_message():
    trainer = Trainer(SETTINGS, 4.0, 0.0, seed=0)
    with torch.no_grad():
        trainer.model.decoder.deconv[-1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 2"):
        trainer.train(2)
