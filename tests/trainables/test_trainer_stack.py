"""The trainer's contract: S models stacked are S trainers of one seed each (same weights, batches,
noise, losses, gradients, evaluations and checkpoints); a model that fails stops alone; checkpoints of
earlier releases' one-model trials resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainables.evaluate import evaluate
from trainables.settings import TrialSettings
from trainables.trainer import NonFiniteLossError, Trainer
from trainables.trial import Configuration, model_folder

SEEDS = (3, 7, 11)


def settings(batch: int = 8, **data) -> TrialSettings:
    return TrialSettings.model_validate(
        {
            "data": data,
            "training": {"steps": 400, "batch_size": batch, "threads": 1},
            "objective": {"capacity_steps": 50},
            "eval": {"preset": "fast", "metrics": ["mig", "sap"], "overrides": {"mig": {"num_train": 300}}},
        }
    )


def pack_and_singles(s: TrialSettings, beta: float = 4.0, capacity: float = 5.0) -> tuple[Trainer, list[Trainer]]:
    configuration = Configuration.from_beta_and_capacity(beta, capacity)
    return Trainer(s, configuration, SEEDS), [Trainer(s, configuration, (seed,)) for seed in SEEDS]


def slice_weights(pack: Trainer, seed: int) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in pack.stacked.model_state(pack.seeds.index(seed)).items()}


def single_weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    (seed,) = trainer.seeds
    return slice_weights(trainer, seed)


def assert_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], **tolerance) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], equal_nan=True, msg=key, **tolerance)


@pytest.mark.parametrize("data", [{}, {"variant": "noisy"}], ids=["deterministic", "noisy"])
def test_models_start_from_the_single_trials_weights_and_see_their_batches(data):
    pack, singles = pack_and_singles(settings(**data))
    seen_by_pack: list[torch.Tensor] = []
    pack.stacked.register_forward_pre_hook(lambda module, args: seen_by_pack.append(args[0].clone()))
    seen_by_single: list[list[torch.Tensor]] = [[] for _ in SEEDS]
    for i, trainer in enumerate(singles):
        assert_weights(slice_weights(pack, trainer.seeds[0]), single_weights(trainer), rtol=0, atol=0)
        trainer.stacked.register_forward_pre_hook(lambda module, args, i=i: seen_by_single[i].append(args[0][:, 0]))
        trainer.train(2)
    pack.train(2)
    for step in range(2):
        for i in range(len(SEEDS)):
            assert torch.equal(seen_by_pack[step][:, i], seen_by_single[i][step])
    for generator, trainer in zip(pack.generators, singles):  # the noise too: as many draws, same stream
        assert torch.equal(generator.get_state(), trainer.generators[0].get_state())


def gradients_before_step(optimizer: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
    grads: list[list[torch.Tensor]] = []
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: grads.append([p.grad.clone() for p in opt.param_groups[0]["params"]])
    )
    return grads


def test_first_step_losses_and_gradients_are_the_single_models():
    pack, singles = pack_and_singles(settings(batch=16))
    pack_grads = gradients_before_step(pack.optimizer)
    report = pack.train(1)
    for i, trainer in enumerate(singles):
        grads = gradients_before_step(trainer.optimizer)
        single = trainer.train(1).models[trainer.seeds[0]]
        for key in ("loss", "recon", "kl", "kl/0", "kl/9"):
            assert report.models[trainer.seeds[0]][key] == pytest.approx(single[key], rel=1e-5), key
        for stacked, own in zip(pack_grads[0], grads[0]):
            torch.testing.assert_close(stacked[i], own[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("configuration", "steps"),
    [
        (Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), 200),
        # the objectives with machinery of their own: a discriminator, a covariance, a minibatch estimate
        (Configuration.of("factor_vae", {"gamma": 10.0}), 100),
        (Configuration.of("dip_vae_ii", {"lambda_od": 5.0}), 100),
        (Configuration.of("beta_tcvae", {"beta": 6.0}), 100),
    ],
    ids=lambda c: c.objective if isinstance(c, Configuration) else str(c),
)
def test_a_pack_and_its_single_trials_stay_close_over_hundreds_of_steps(configuration, steps):
    s = settings()
    seeds = SEEDS[:2]  # two models already share every stacked layer; the rest of the file stacks three
    pack, singles = Trainer(s, configuration, seeds), [Trainer(s, configuration, (seed,)) for seed in seeds]
    start = [single_weights(t) for t in singles]
    report = pack.train(steps)
    for before, trainer in zip(start, singles):
        single = trainer.train(steps).models[trainer.seeds[0]]
        after, packed = single_weights(trainer), slice_weights(pack, trainer.seeds[0])
        assert report.models[trainer.seeds[0]]["loss"] == pytest.approx(single["loss"], rel=1e-4)
        for key in after:
            # Rounding differs (grouped against plain convolutions) and Adam amplifies it where a
            # gradient is near zero, so the weights drift apart a little: far less than they moved.
            moved = (after[key] - before[key]).norm()
            assert (packed[key] - after[key]).norm() < 0.2 * moved, key
            assert moved > 1e-3, key


def scores(evaluation: dict[str, float]) -> dict[str, float]:
    """An evaluation without its timing."""
    return {k: v for k, v in evaluation.items() if k != "eval/seconds"}


def test_a_packs_evaluation_of_a_model_is_the_single_evaluation_of_its_weights():
    s = settings()
    pack = Trainer(s, Configuration.of("beta_vae", {"beta": 4.0}), SEEDS)
    pack.train(20)
    seed = SEEDS[1]
    single = Trainer(s, Configuration.of("beta_vae", {"beta": 4.0}), (seed,))
    single.stacked.load_model(0, slice_weights(pack, seed))
    single.step = pack.step
    expected = scores(evaluate(pack.model(seed), pack.dataset, s.eval, np.random.default_rng([seed, pack.step])))
    assert scores(single.evaluate(seed)) == expected
    assert scores(pack.evaluate(seed)) == expected
    assert scores(pack.evaluate(SEEDS[0])) != expected  # another model of the pack scores otherwise


def poison(pack: Trainer, seed: int) -> None:
    with torch.no_grad():
        pack.stacked.param("decoder.deconv.6.bias")[pack.seeds.index(seed)].fill_(float("nan"))


def test_a_model_whose_loss_goes_non_finite_fails_alone():
    pack = Trainer(settings(), Configuration.of("beta_vae", {"beta": 4.0}), SEEDS)
    pack.train(2)
    poison(pack, SEEDS[1])
    report = pack.train(2)
    assert list(report.failed) == [SEEDS[1]]
    assert report.failed[SEEDS[1]].startswith("non-finite loss at step 4 (beta_vae beta=4 seed=7)")
    assert sorted(report.models) == [SEEDS[0], SEEDS[2]]
    assert all(math.isfinite(v) for m in report.models.values() for v in m.values())
    assert pack.alive() == [SEEDS[0], SEEDS[2]]
    before = {seed: slice_weights(pack, seed) for seed in SEEDS}
    report = pack.train(3)
    assert list(report.failed) == [SEEDS[1]] and sorted(report.models) == [SEEDS[0], SEEDS[2]]
    assert_weights(slice_weights(pack, SEEDS[1]), before[SEEDS[1]], rtol=0, atol=0)  # frozen
    for seed in (SEEDS[0], SEEDS[2]):
        after = slice_weights(pack, seed)
        assert all(torch.isfinite(w).all() for w in after.values())
        assert any(not torch.equal(after[k], before[seed][k]) for k in after)  # trains on
    for seed in (SEEDS[0], SEEDS[2]):
        poison(pack, seed)
    with pytest.raises(NonFiniteLossError, match="every model of the trial failed: non-finite loss at step 4"):
        pack.train(1)


def test_a_resumed_pack_continues_exactly_and_keeps_a_failed_model_frozen(tmp_path):
    s = settings()
    straight = Trainer(s, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), SEEDS)
    straight.train(4)
    poison(straight, SEEDS[0])
    straight.train(2)
    straight.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(model_folder(seed) for seed in SEEDS)
    straight.train(5)

    resumed = Trainer(s, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), SEEDS)
    resumed.load(tmp_path)
    assert resumed.step == 6 and resumed.failed == straight.failed
    resumed.train(5)
    assert resumed.step == straight.step == 11
    for seed in SEEDS:
        assert_weights(slice_weights(resumed, seed), slice_weights(straight, seed), rtol=0, atol=0)
    for a, b in zip(resumed.generators, straight.generators):
        assert torch.equal(a.get_state(), b.get_state())


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    s = settings()
    Trainer(s, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), SEEDS).save(tmp_path)
    with pytest.raises(ValueError, match="belongs to objective=annealed_vae, weights={.gamma.: 4.0, .c_max.: 5.0}"):
        Trainer(s, Configuration.of("annealed_vae", {"gamma": 8.0, "c_max": 5.0}), SEEDS).load(tmp_path)
    with pytest.raises(ValueError, match=r"holds the models \['seed=11', 'seed=3', 'seed=7'\], not this trial's"):
        Trainer(s, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), SEEDS[:2]).load(tmp_path)


def test_a_models_folder_is_a_single_trial_checkpoint(tmp_path):
    s = settings()
    pack = Trainer(s, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), SEEDS)
    pack.train(5)
    pack.save(tmp_path)
    seed = SEEDS[2]
    single = Trainer(s, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), (seed,))
    single.load(tmp_path / model_folder(seed))
    assert single.step == 5
    assert_weights(single_weights(single), slice_weights(pack, seed), rtol=0, atol=0)
    pack.train(5)
    single.train(5)  # its Adam moments and generator went with it: it continues as the pack's model
    assert_weights(single_weights(single), slice_weights(pack, seed), rtol=1e-4, atol=1e-5)


STUDY_OBJECTIVES = [
    Configuration.of("beta_vae", {"beta": 4.0}),
    Configuration.of("annealed_vae", {"gamma": 1000.0, "c_max": 5.0}),
    Configuration.of("factor_vae", {"gamma": 10.0}),
    Configuration.of("dip_vae_i", {"lambda_od": 5.0}),
    Configuration.of("dip_vae_ii", {"lambda_od": 5.0}),
    Configuration.of("beta_tcvae", {"beta": 6.0}),
]


@pytest.mark.parametrize("configuration", STUDY_OBJECTIVES, ids=lambda c: c.objective)
def test_every_objective_stacks_as_its_trials_of_one_model_and_a_failed_model_stops_alone(configuration):
    s = settings(batch=8)
    pack = Trainer(s, configuration, SEEDS)
    singles = [Trainer(s, configuration, (seed,)) for seed in SEEDS]
    pack_grads = gradients_before_step(pack.optimizer)
    report = pack.train(1)
    for i, trainer in enumerate(singles):
        grads = gradients_before_step(trainer.optimizer)
        single = trainer.train(1).models[trainer.seeds[0]]
        assert report.models[trainer.seeds[0]].keys() == single.keys()
        for key, value in single.items():
            assert report.models[trainer.seeds[0]][key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
        for stacked, own in zip(pack_grads[0], grads[0]):
            torch.testing.assert_close(stacked[i], own[0], rtol=1e-3, atol=1e-5)
    poison(pack, SEEDS[0])
    report = pack.train(2)
    assert list(report.failed) == [SEEDS[0]] and sorted(report.models) == sorted(SEEDS[1:])
    for trainer in singles[1:]:
        trainer.train(2)
        assert_weights(slice_weights(pack, trainer.seeds[0]), single_weights(trainer), rtol=1e-3, atol=1e-5)


def test_a_factor_vae_trial_resumes_with_its_discriminators(tmp_path):
    s = settings(batch=8)
    configuration = Configuration.of("factor_vae", {"gamma": 10.0})
    straight = Trainer(s, configuration, SEEDS)
    straight.train(3)
    straight.save(tmp_path)
    straight.train(3)
    resumed = Trainer(s, configuration, SEEDS)
    resumed.load(tmp_path)
    resumed.train(3)
    for seed in SEEDS:
        assert_weights(slice_weights(resumed, seed), slice_weights(straight, seed), rtol=0, atol=0)
    for a, b in zip(resumed.objective.discriminator.parameters(), straight.objective.discriminator.parameters()):
        assert torch.equal(a, b)
