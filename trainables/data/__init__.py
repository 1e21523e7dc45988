"""Ground-truth datasets: procedural dSprites, dSprites files, your own files, and the study's variants.

One module per source (`procedural`, `dsprites_file`, `byo`), the packed
storage they share (`stored`), the variants and the ground-truth switch
(`variants`); `base` has the interface. `make_dataset` builds what a trial's
`DataSettings` name, `load_stored` reads the file a setting points at.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from trainables.data import byo, dsprites_file, npz
from trainables.data.base import FULL_GRID_METRICS, DataError, GroundTruthData, unsupported_metrics
from trainables.data.procedural import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    IMAGE_SIZE,
    ORIENTATIONS,
    POSITIONS,
    SCALES,
    ProceduralDSprites,
    base_sprites,
)
from trainables.data.stored import StoredDataset, StoredImages
from trainables.data.variants import GroundTruth, with_variant
from trainables.settings import DataSettings

__all__ = [
    "FACTOR_NAMES",
    "FACTOR_SIZES",
    "FULL_GRID_METRICS",
    "IMAGE_SIZE",
    "ORIENTATIONS",
    "POSITIONS",
    "SCALES",
    "DataError",
    "GroundTruthData",
    "ProceduralDSprites",
    "StoredImages",
    "base_sprites",
    "check_settings",
    "load_stored",
    "make_dataset",
    "unsupported_metrics",
]

_READERS = {"dsprites_file": dsprites_file, "npz": byo}


def check_settings(settings: DataSettings) -> None:
    """What can be checked before reading any image: the file's keys, shapes and dtypes (headers only),
    the ground-truth names against its factors, and a variant against its channels. Raises DataError."""
    if settings.name == "dsprites":
        names, channels, where = FACTOR_NAMES, 1, "procedural dSprites"
    elif settings.name == "dsprites_file":
        dsprites_file.check_headers(settings.path)
        names, channels, where = FACTOR_NAMES, 1, str(settings.path)
    else:
        _, channels = byo.check_headers(settings.path)
        names, where = tuple(str(s) for s in npz.read_small(settings.path, "factor_names")), str(settings.path)
    unknown = [n for n in settings.ground_truth or () if n not in names]
    if unknown:
        raise DataError(f"{where}: ground_truth names {', '.join(map(repr, unknown))}, not among its factors {list(names)}")
    if settings.variant != "none" and channels != 1:
        raise DataError(f"{where}: the {settings.variant} variant needs single-channel images, these have {channels}")


def load_stored(settings: DataSettings) -> StoredImages | None:
    """The file a setting names, read and checked; None for the procedural dataset, which needs no file."""
    if settings.name not in _READERS:
        return None
    return _READERS[settings.name].load(Path(settings.path))


@lru_cache(maxsize=2)
def _read_once(settings: DataSettings) -> StoredImages | None:
    return load_stored(settings)


def make_dataset(
    settings: DataSettings | str = "dsprites", device: torch.device | str = "cpu", stored: StoredImages | None = None
) -> GroundTruthData:
    """The dataset `settings` describe on `device`, with its variant and ground-truth factors.

    A file-backed dataset uses `stored` (for instance from Ray's object store)
    when given, else reads the file (once per process).
    """
    if isinstance(settings, str):
        settings = DataSettings(name=settings)
    if settings.name == "dsprites":
        dataset: GroundTruthData = ProceduralDSprites(device)
    else:
        dataset = StoredDataset(stored if stored is not None else _read_once(settings), device)
    if settings.ground_truth is not None:
        dataset = GroundTruth(dataset, settings.ground_truth)
    return with_variant(dataset, settings.variant)
