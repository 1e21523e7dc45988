"""Exported models: a folder of plain files that loads back into a beta-VAE, checked file by file.

An exported model is a folder:

- `model.safetensors`: the weights, nothing else (no pickled objects);
- `config.json`: the architecture and latent size, the objective (its kind
  and weights; folders of earlier releases name beta and C_max instead), the
  seed, the data and the library versions it was trained with;
- `metrics.json`, `MODEL_CARD.md`, `traversal.png`: what `sweeper export` adds;
- `manifest.json`: the size and sha256 of every other file.

`load_exported` verifies every file against the manifest, reads the weights
with safetensors and checks them against the config before building the
model, so a corrupted, truncated or mismatched file is an `ExportError` that
names the file. A folder may come from anyone: every size is bounded and
checked before a file is read or a model allocated, and no name (in the
manifest or index.json) nor symlink may lead outside the folder.

Only torch, numpy, safetensors and the standard library are
imported here: code that uses an exported model needs neither Ray nor MLflow.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from trainables.model import BetaVAE, model_sizes
from trainables.objectives.registry import WEIGHTS
from trainables.trial import Configuration

FORMAT = "beta-sweeper-export"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "MODEL_CARD.md"
TRAVERSAL_FILE = "traversal.png"
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.json"  # in an export folder of several models: their folder names
REQUIRED_FILES = (WEIGHTS_FILE, CONFIG_FILE)
MAX_JSON_BYTES = 16 << 20  # config, metrics, manifest, index: a few kilobytes when written here
MAX_FILE_BYTES = 4 << 30  # weights of the largest model the settings allow are far below
MAX_LATENT_DIM = 1024  # as trainables.settings allows
MAX_CHANNELS = 4
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class ExportError(ValueError):
    """An exported model that cannot be written or loaded as it is; the message names the file."""


# -- writing ------------------------------------------------------------------------------


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | Path, value: Any) -> Path:
    path = Path(path)
    path.write_text(json.dumps(value, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_manifest(folder: str | Path) -> Path:
    """manifest.json listing every other file of the folder (recursively) with its size and sha256."""
    folder = Path(folder)
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE):
        name = path.relative_to(folder).as_posix()
        files[name] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
    return write_json(folder / MANIFEST_FILE, {"format": FORMAT, "format_version": FORMAT_VERSION, "files": files})


def model_config(weights: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The architecture's sizes as the weights give them: latent size and image channels."""
    try:
        return model_sizes(weights)
    except KeyError as exc:
        raise ExportError(f"{WEIGHTS_FILE}: not beta-VAE weights (no tensor {exc.args[0]!r})") from None


def save_exported(folder: str | Path, weights: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> Path:
    """Write the weights and config.json into `folder` (created), then check they fit each other.

    The caller adds its other files and finishes with `write_manifest`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
    read_configuration(config)
    check_fits(config, tensors)
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    os.chmod(folder / WEIGHTS_FILE, 0o644)  # readable like the other files, whatever safetensors chose
    write_json(folder / CONFIG_FILE, config)
    return folder


# -- checking -----------------------------------------------------------------------------


def inside(folder: Path, name: str, what: Path) -> Path:
    """`folder / name`, refused unless it stays in `folder`: no absolute name, no '..', no symlink
    anywhere on the way. `what` is the file that gave the name, for the message."""
    path = folder / name
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts or "\\" in name:
        raise ExportError(f"{what}: names a file outside the folder: {name!r}")
    for step in (folder.joinpath(*parts[: i + 1]) for i in range(len(parts))):
        if step.is_symlink():
            raise ExportError(f"{what}: {name!r} is a symlink ({step}); an exported folder holds plain files")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ExportError(f"{what}: names a file outside the folder: {name!r}")
    return path


def read_json(path: Path) -> Any:
    """A JSON file of at most MAX_JSON_BYTES (checked before reading), not a symlink; NaN and Infinity refused."""
    if path.is_symlink():
        raise ExportError(f"{path}: a symlink; an exported folder holds plain files")
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ExportError(f"{path}: {size} bytes, more than the {MAX_JSON_BYTES} such a file may have")
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise ExportError(f"{path}: not valid JSON ({exc})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _manifest_entries(manifest_path: Path, manifest: Any) -> dict[str, tuple[str, int]]:
    """name -> (sha256, bytes) of the manifest, every value checked for its type and range."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ExportError(f"{manifest_path}: not a valid manifest (no object 'files')")
    entries = {}
    for name, entry in files.items():
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("bytes") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ExportError(f"{manifest_path}: files.{name}.sha256 = {digest!r} is not a sha256 hex digest")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
            raise ExportError(
                f"{manifest_path}: files.{name}.bytes = {size!r} is not a size from 0 to {MAX_FILE_BYTES}"
            )
        entries[name] = (digest, size)
    return entries


def verify_manifest(folder: str | Path) -> dict[str, Any]:
    """Every file the manifest lists exists inside the folder with its size and sha256; the required
    files are listed. Sizes are compared before any file is read."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ExportError(f"{manifest_path}: missing; {folder} is not an exported model")
    manifest = read_json(manifest_path)
    entries = _manifest_entries(manifest_path, manifest)
    for name in REQUIRED_FILES:
        if name not in entries:
            raise ExportError(f"{manifest_path}: does not list {name}")
    for name, (expected, size) in entries.items():
        path = inside(folder, name, manifest_path)
        if not path.is_file():
            raise ExportError(f"{path}: missing, though {MANIFEST_FILE} lists it")
        actual_size = path.stat().st_size
        if actual_size != size:
            raise ExportError(f"{path}: {actual_size} bytes, {MANIFEST_FILE} says {size}; the file is corrupted")
        actual = sha256_of(path)
        if actual != expected:
            raise ExportError(
                f"{path}: sha256 {actual} does not match {MANIFEST_FILE} ({expected}); the file is corrupted"
            )
    return manifest


def check_fits(config: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> BetaVAE:
    """A BetaVAE built from the config, refusing weights whose names or shapes it does not have."""
    spec = config.get("model")
    if not isinstance(spec, Mapping):
        raise ExportError(f"{CONFIG_FILE}: no object 'model'")
    latent_dim = _size(spec, "latent_dim", None, MAX_LATENT_DIM)
    channels = _size(spec, "channels", 1, MAX_CHANNELS)
    model = BetaVAE(latent_dim, channels)  # small: both sizes are bounded
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in weights.items()}
    missing, extra = sorted(expected.keys() - actual.keys()), sorted(actual.keys() - expected.keys())
    wrong = [
        f"{k}: {actual[k]} in {WEIGHTS_FILE}, {expected[k]} for the config"
        for k in expected
        if actual.get(k, expected[k]) != expected[k]
    ]
    if missing or extra or wrong:
        details = (
            ([f"missing tensors {missing}"] if missing else [])
            + ([f"unexpected tensors {extra}"] if extra else [])
            + wrong[:3]
        )
        raise ExportError(
            f"{CONFIG_FILE} (latent_dim={latent_dim}, channels={channels}) does not fit {WEIGHTS_FILE}: "
            + "; ".join(details)
        )
    bad = [k for k, v in weights.items() if not v.is_floating_point() or not torch.isfinite(v).all()]
    if bad:
        raise ExportError(f"{WEIGHTS_FILE}: tensors not finite floats: {bad[:3]}")
    return model


def _size(spec: Mapping[str, Any], key: str, default: int | None, most: int) -> int:
    """model.<key> of config.json: an integer from 1 to `most` (a bool or float is not one)."""
    value = spec.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise ExportError(f"{CONFIG_FILE}: model.{key} = {repr(value)[:40]} must be an integer from 1 to {most}")
    return value


def read_configuration(config: Mapping[str, Any]) -> Configuration:
    """The objective and weights config.json names: `objective.kind` and `objective.weights`, or, in a
    folder of an earlier release, `objective.beta` and `objective.capacity_max`."""
    spec = config.get("objective")
    if not isinstance(spec, Mapping):
        raise ExportError(f"{CONFIG_FILE}: no object 'objective'")
    if "kind" not in spec:
        legacy = {key: spec.get(key) for key in ("beta", "capacity_max")}
        for key, value in legacy.items():
            _number(f"objective.{key}", value)
        return Configuration.from_beta_and_capacity(legacy["beta"], legacy["capacity_max"])
    kind, weights = spec["kind"], spec.get("weights")
    if kind not in WEIGHTS:
        raise ExportError(f"{CONFIG_FILE}: objective.kind = {repr(kind)[:40]} is none of {sorted(WEIGHTS)}")
    if not isinstance(weights, Mapping) or sorted(weights) != sorted(WEIGHTS[kind]):
        shown = sorted(weights) if isinstance(weights, Mapping) else repr(weights)[:40]
        raise ExportError(f"{CONFIG_FILE}: objective.weights = {shown}; {kind} takes {list(WEIGHTS[kind])}")
    for name in WEIGHTS[kind]:
        _number(f"objective.weights.{name}", weights[name])
    return Configuration.of(kind, {name: weights[name] for name in WEIGHTS[kind]})


def _number(key: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
        raise ExportError(f"{CONFIG_FILE}: {key} = {repr(value)[:40]} must be a finite number")


# -- loading ------------------------------------------------------------------------------


class ExportedModel:
    """A loaded exported model: a BetaVAE in eval mode on the CPU with its config, metrics and the
    objective it was trained with.

    Images are float tensors (n, C, 64, 64) in [0, 1]; codes are posterior means (n, D).
    Everything is in memory once loaded: `path` is where it was read from, which
    may be a temporary folder that is gone by now.
    """

    def __init__(
        self,
        model: BetaVAE,
        config: dict[str, Any],
        metrics: dict[str, Any] | None,
        path: Path,
        configuration: Configuration,
    ) -> None:
        self.model = model.eval()
        self.config = config
        self.metrics = metrics
        self.path = path
        self.configuration = configuration

    @property
    def objective(self) -> str:
        """The objective's kind: beta_vae, annealed_vae, factor_vae, dip_vae_i, dip_vae_ii or beta_tcvae."""
        return self.configuration.objective

    @property
    def weights(self) -> dict[str, float]:
        """The objective's weights by the study's names (beta, gamma, c_max, lambda_od)."""
        return dict(self.configuration.weights)

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    def _images(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or tuple(x.shape[2:]) != (64, 64):
            raise ValueError(f"images must have shape (n, C, 64, 64), got {tuple(x.shape)}")
        return x

    def posterior(self, x: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x)."""
        with torch.inference_mode():
            return self.model.encoder(self._images(x))

    def encode(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The posterior means (n, D): the codes the metrics score."""
        return self.posterior(x)[0]

    def decode_logits(self, z: torch.Tensor | np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self.model.decoder(torch.as_tensor(z, dtype=torch.float32).reshape(-1, self.latent_dim))

    def decode(self, z: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Pixel probabilities (n, C, 64, 64) of the images the codes decode to."""
        return torch.sigmoid(self.decode_logits(z))

    def reconstruct(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Decoded posterior means: pixel probabilities (n, C, 64, 64)."""
        return self.decode(self.encode(x))

    def traverse(self, x: torch.Tensor | np.ndarray, latent: int, values: Sequence[float]) -> torch.Tensor:
        """Each image's code with `latent` set to each of `values`, decoded: (n, len(values), C, 64, 64)."""
        if not 0 <= latent < self.latent_dim:
            raise ValueError(f"latent {latent} out of range: the model has {self.latent_dim} latents")
        codes = self.encode(x)
        values = torch.as_tensor(list(values), dtype=codes.dtype)
        swept = codes[:, None, :].repeat(1, len(values), 1)
        swept[:, :, latent] = values
        images = self.decode(swept.reshape(-1, self.latent_dim))
        return images.reshape(codes.shape[0], len(values), *images.shape[1:])


def model_folder(path: str | Path) -> Path:
    """The model folder of `path`: itself, or the only model of an export folder of several."""
    path = Path(path)
    if (path / MANIFEST_FILE).is_file() or not (path / INDEX_FILE).is_file():
        return path
    index_path = path / INDEX_FILE
    try:
        names = [m["folder"] for m in read_json(index_path)["models"]]
        if not all(isinstance(n, str) for n in names):
            raise TypeError("a folder name is not a string")
    except (KeyError, TypeError) as exc:
        raise ExportError(f"{index_path}: not a valid index ({type(exc).__name__}: {exc})") from None
    if len(names) != 1:
        raise ExportError(f"{path} holds {len(names)} models ({', '.join(names[:10])}); load one of its folders")
    if Path(names[0]).name != names[0]:
        raise ExportError(f"{index_path}: models.0.folder = {names[0]!r} is not a folder of {path}")
    return inside(path, names[0], index_path)


def _read_json(path: Path) -> dict[str, Any]:
    value = read_json(path)
    if not isinstance(value, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return value


def load_exported(path: str | Path) -> ExportedModel:
    """The exported model at `path` (a model folder, or an export folder holding one model), verified.

    Raises ExportError naming the file when a file is missing, does not match
    its manifest, is not readable, or when the config does not fit the weights.
    """
    folder = model_folder(path)
    manifest = verify_manifest(folder)
    config = _read_json(folder / CONFIG_FILE)
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{folder / CONFIG_FILE}: format {config.get('format')!r} version {config.get('format_version')!r}; "
            f"expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    try:
        configuration = read_configuration(config)
    except ExportError as exc:
        raise ExportError(f"{folder}: {exc}") from None
    try:
        weights = load_file(str(folder / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ExportError(f"{folder / WEIGHTS_FILE}: not a readable safetensors file ({exc})") from None
    try:
        model = check_fits(config, weights)
    except ExportError as exc:
        raise ExportError(f"{folder}: {exc}") from None
    model.load_state_dict(weights)
    metrics = _read_json(folder / METRICS_FILE) if METRICS_FILE in manifest["files"] else None
    return ExportedModel(model, config, metrics, folder, configuration)


def replace_folder(staging: Path, target: Path, force: bool) -> None:
    """Move a finished `staging` folder to `target`; an existing target is replaced only with `force`,
    and only once the new folder is complete."""
    if target.exists() and not force:
        raise ExportError(f"{target} exists; choose another folder or replace it with --force")
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
