"""Ground-truth datasets: procedural dSprites, the study's published files, your own files, and the variants.

One module per source (`procedural`, `dsprites_file`, `byo`, `shapes3d`,
`mpi3d`, `smallnorb`, `cars3d`), the packed storage they share (`stored`),
the variants and the ground-truth switch (`variants`); `base` has the
interface. `make_dataset` builds what a trial's `DataSettings` name,
`load_stored` reads the file a setting points at, `stored_bytes` says from
its headers alone what a node will hold of it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from trainables.data import byo, cars3d, dsprites_file, mpi3d, shapes3d, smallnorb
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
from trainables.data.stored import Headers, StoredDataset, StoredImages
from trainables.data.variants import GroundTruth, read_background, with_variant
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
    "stored_bytes",
    "unsupported_metrics",
]

# The reader of each file-backed dataset: a module with `check_headers` and `load`.
_READERS = {
    "dsprites_file": dsprites_file,
    "npz": byo,
    "shapes3d": shapes3d,
    "mpi3d": mpi3d,
    "smallnorb": smallnorb,
    "cars3d": cars3d,
}


def _reader_arguments(settings: DataSettings) -> tuple[Path] | tuple[Path, str]:
    """The path, and for MPI3D the subset, whose grid its files (which carry no labels) are read with."""
    return (Path(settings.path), settings.subset) if settings.name == "mpi3d" else (Path(settings.path),)


def _read_headers(settings: DataSettings) -> Headers | None:
    """What the headers of the file a setting names say, checked; None for procedural dSprites (no file)."""
    if settings.name not in _READERS:
        return None
    return _READERS[settings.name].check_headers(*_reader_arguments(settings))


def check_settings(settings: DataSettings) -> None:
    """What can be checked before reading any image: the file's keys, shapes and dtypes (headers only),
    the ground-truth names against its factors, a variant against its channels, and the scream
    variant's background image. Raises DataError."""
    headers = _read_headers(settings)
    if headers is None:
        names, channels, where = FACTOR_NAMES, 1, "procedural dSprites"
    else:
        names, channels, where = headers.factor_names, headers.image_shape[0], str(settings.path)
    unknown = [n for n in settings.ground_truth or () if n not in names]
    if unknown:
        raise DataError(f"{where}: ground_truth names {', '.join(map(repr, unknown))}, not among its factors {list(names)}")
    if settings.variant != "none" and channels != 1:
        raise DataError(f"{where}: the {settings.variant} variant needs single-channel images, these have {channels}")
    if settings.background is not None:
        read_background(settings.background)


def stored_bytes(settings: DataSettings) -> int:
    """The bytes of images a node holds for this dataset (once, in Ray's object store), from the headers alone.

    0 for procedural dSprites. The factor tables add a few bytes per image;
    for your own uint8 images that turn out to be binary the node holds an
    eighth of this figure (bit-packed), which is known only once they are read.
    """
    headers = _read_headers(settings)
    return 0 if headers is None else headers.nbytes


def load_stored(settings: DataSettings) -> StoredImages | None:
    """The file a setting names, read and checked; None for the procedural dataset, which needs no file."""
    if settings.name not in _READERS:
        return None
    return _READERS[settings.name].load(*_reader_arguments(settings))


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
    return with_variant(dataset, settings.variant, settings.background)
