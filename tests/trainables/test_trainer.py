import math

import pytest
import torch

from trainables.checkpoint import save_checkpoint
from trainables.model import BetaVAE
from trainables.objectives import STUDY_GRID
from trainables.report import TRAINING_METRICS, model_values
from trainables.settings import OBJECTIVE_TERMS, TrialSettings
from trainables.trainer import NonFiniteLossError, Trainer
from trainables.trial import Configuration

SETTINGS = TrialSettings.model_validate(
    {"training": {"steps": 40, "batch_size": 16, "threads": 1}, "objective": {"capacity_steps": 20}}
)


def weights(trainer: Trainer) -> list[torch.Tensor]:
    return [t.detach().clone() for t in trainer.stacked.parameters()]


def test_report_carries_every_training_quantity():
    trainer = Trainer(SETTINGS, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 10.0}), seeds=(0,))
    trial = trainer.train(10)
    report = trial.models[0]
    assert trainer.step == 10 and trial.images_per_sec > 0
    for key in ("loss", "recon", "kl", "capacity", "active_latents"):
        assert math.isfinite(report[key])
    assert [f"kl/{i}" for i in range(10)] == [k for k in report if k.startswith("kl/")]
    assert report["kl"] == pytest.approx(sum(report[f"kl/{i}"] for i in range(10)), rel=1e-4)
    assert report["capacity"] == pytest.approx(10.0 * 4.5 / 20)  # C(t) over steps 0..9, a window mean like the loss


def test_same_seed_same_training_different_seed_different_training():
    a, b, c = (Trainer(SETTINGS, Configuration.of("beta_vae", {"beta": 4.0}), (seed,)) for seed in (1, 1, 2))
    for t in (a, b, c):
        t.train(5)
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b)))
    assert not all(torch.equal(x, y) for x, y in zip(weights(a), weights(c)))


def test_resumed_trainer_continues_at_the_same_step_with_the_same_weights(tmp_path):
    straight = Trainer(SETTINGS, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=(3,))
    straight.train(12)
    straight.save(tmp_path)
    straight.train(8)

    resumed = Trainer(SETTINGS, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=(3,))
    resumed.load(tmp_path)
    assert resumed.step == 12
    resumed.train(8)
    assert resumed.step == straight.step == 20
    assert all(torch.equal(x, y) for x, y in zip(weights(straight), weights(resumed)))


def test_checkpoint_of_another_trial_is_refused(tmp_path):
    Trainer(SETTINGS, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=(3,)).save(tmp_path)
    with pytest.raises(ValueError, match="belongs to objective=annealed_vae, weights={.gamma.: 4.0, .c_max.: 5.0}"):
        Trainer(SETTINGS, Configuration.of("annealed_vae", {"gamma": 8.0, "c_max": 5.0}), seeds=(3,)).load(tmp_path)


def test_non_finite_loss_ends_training_with_a_message():
    trainer = Trainer(SETTINGS, Configuration.of("beta_vae", {"beta": 4.0}), seeds=(0,))
    with torch.no_grad():
        trainer.stacked.param("decoder.deconv.6.bias").fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 2"):
        trainer.train(2)


def test_a_one_model_checkpoint_of_the_earlier_layout_resumes(tmp_path):
    """Earlier releases trained one seed without a stack and saved its files at the checkpoint's root,
    with Adam's state shaped as the lone model's parameters: such a checkpoint, written here as they
    wrote it, resumes as a trial of that seed."""
    torch.manual_seed(3)
    model = BetaVAE(10)
    adam = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    x = (torch.rand(4, 1, 64, 64) > 0.5).float()
    logits, mu, logvar = model(x)
    (torch.nn.functional.binary_cross_entropy_with_logits(logits, x) + mu.square().mean()).backward()
    adam.step()
    rng = torch.Generator().manual_seed(3)
    state = {"step": 7, "beta": 4.0, "capacity_max": 5.0, "seed": 3, "optimizer": adam.state_dict(), "rng": rng.get_state()}
    save_checkpoint(tmp_path, model.state_dict(), state)

    trainer = Trainer(SETTINGS, Configuration.of("annealed_vae", {"gamma": 4.0, "c_max": 5.0}), seeds=(3,))
    trainer.load(tmp_path)
    assert trainer.step == 7
    for name, value in model.state_dict().items():
        assert torch.equal(trainer.stacked.model_state(0)[name], value), name
    moments = trainer.optimizer.state_dict()["state"]
    for i, p in enumerate(model.parameters()):
        assert torch.equal(moments[i]["exp_avg_sq"][0], adam.state[p]["exp_avg_sq"]), i
    trainer.train(3)  # and trains on
    assert trainer.step == 10


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a .functools.lru_cache")
def test_the_draws_cannot_enter_a_compiled_graph_with_their_generators():
    """Why `Trainer.draw` stays eager under `training.compile` (its docstring): Dynamo breaks the graph at a
    random op given a model's generator, and the eager draws keep each model's own stream."""
    from torch._dynamo.utils import counters

    settings = TrialSettings.model_validate({"training": {"batch_size": 4, "threads": 1}})
    compiled, plain = (Trainer(settings, Configuration.of("beta_vae", {"beta": 4.0}), (3, 7)) for _ in range(2))
    torch._dynamo.reset()
    breaks = sum(counters["graph_break"].values())
    x, eps = torch.compile(compiled.draw, backend="eager")()
    assert sum(counters["graph_break"].values()) > breaks
    assert any("Generator" in reason for reason in counters["graph_break"])
    expected_x, expected_eps = plain.draw()
    assert torch.equal(x, expected_x) and torch.equal(eps, expected_eps)
    torch._dynamo.reset()


@pytest.mark.parametrize("kind", sorted(STUDY_GRID))
def test_each_objective_reports_the_values_its_plan_counts(kind):
    """The plan's write rate counts a report's values from the objective's declared terms: the trainer's
    report holds exactly those, the training metrics and one KL per latent."""
    weights = {name: values[0] for name, values in STUDY_GRID[kind].items()}
    report = Trainer(SETTINGS, Configuration.of(kind, weights), seeds=(0,)).train(1).models[0]
    own = set(report) - set(TRAINING_METRICS) - {f"kl/{i}" for i in range(SETTINGS.model.latent_dim)}
    assert own == set(OBJECTIVE_TERMS[kind])
    assert len(report) == model_values(kind, SETTINGS.model.latent_dim) == 4 + len(own) + 10
