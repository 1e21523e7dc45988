"""Trained models back from their checkpoints, and one shared set of observations to show them.

UDR compares the codes of different models on the same observations, and the
report's traversals and reconstructions should show every picked model the
same images, so both use `observation_set` with a fixed seed. Everything runs
on the CPU: a handful of models encoding a thousand images needs no GPU.
"""

from __future__ import annotations

import numpy as np
import torch

from sweeper import object_store
from trainables.checkpoint import WEIGHTS_FILE, load_weights
from trainables.data import ProceduralDSprites
from trainables.evaluate import encode_observations
from trainables.model import BetaVAE, model_sizes
from trainables.objectives.base import gaussian_kl_per_latent

OBSERVATIONS = 1000  # the UDR reference's shared set size
OBSERVATION_SEED = 0


class MissingCheckpoint(FileNotFoundError):
    """A picked or compared run has no checkpoint on this machine: reported, never fatal."""


def load_model(checkpoint: str | None) -> BetaVAE:
    """The trial's model from its checkpoint folder, in eval mode on the CPU.

    The latent size is read from the weights themselves, so a checkpoint loads
    whatever params its run recorded.
    """
    if not checkpoint:
        raise MissingCheckpoint("no checkpoint was recorded")
    with object_store.local_folder(checkpoint) as folder:
        if not (folder / WEIGHTS_FILE).is_file():
            raise MissingCheckpoint(f"no {WEIGHTS_FILE} in checkpoint {checkpoint!r}")
        weights = load_weights(folder)
    model = BetaVAE(**model_sizes(weights))
    model.load_state_dict(weights)
    return model.eval()


def observation_set(n: int = OBSERVATIONS, seed: int = OBSERVATION_SEED) -> torch.Tensor:
    """n procedural dSprites images (n, 1, 64, 64), the same for every call with the same seed."""
    dataset = ProceduralDSprites("cpu")
    return dataset.observations(dataset.sample_factors(n, np.random.default_rng(seed)))


def encode(model: BetaVAE, observations: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means (n, D) and the KL of each latent averaged over the observations (D,).

    Single-channel observations are given to a model of RGB images as white sprites.
    """
    channels = model.encoder.features[0].in_channels
    if observations.shape[1] == 1 and channels != 1:
        observations = observations.expand(-1, channels, -1, -1)
    mu, logvar = encode_observations(model, observations)
    return mu, gaussian_kl_per_latent(torch.from_numpy(mu), torch.from_numpy(logvar)).numpy()


def decode(model: BetaVAE, codes: np.ndarray) -> np.ndarray:
    """Pixel probabilities (n, 64, 64) of the images the codes decode to."""
    with torch.inference_mode():
        logits = model.decoder(torch.as_tensor(codes, dtype=torch.float32))
    return torch.sigmoid(logits)[:, 0].numpy()
